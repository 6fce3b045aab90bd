"""DVC stage `fetch`: put raw images in data/raw/ in the CIFAKE layout (train|test/REAL|FAKE)."""

from pathlib import Path

from cifake.config import load_params
from cifake.errors import run_stage
from cifake.fileio import write_json
from cifake.sample import generate_sample
from cifake.sources import copy_directory, download_kaggle, extract_archive

OUT = Path("data/raw")


def main() -> None:
    params = load_params()
    data = params.data
    if data.source == "sample":
        info = generate_sample(
            OUT,
            train_per_class=data.sample.train_per_class,
            test_per_class=data.sample.test_per_class,
            seed=params.seed,
        )
    elif data.source == "archive":
        info = extract_archive(data.archive, OUT)
    elif data.source == "directory":
        info = copy_directory(data.directory, OUT)
    else:
        info = download_kaggle(data.kaggle_dataset, OUT)
    write_json(OUT / "SOURCE.json", {"source": data.source, **info})
    print(f"fetch: {data.source} -> {OUT}: {info['files']}")


if __name__ == "__main__":
    run_stage(main)
