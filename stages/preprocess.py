"""DVC stage `preprocess`: decode and validate, report duplicates/leakage, split, write arrays."""

from pathlib import Path

from cifake.config import load_params
from cifake.dataset import preprocess
from cifake.errors import run_stage
from cifake.fileio import read_json, write_json


def main() -> None:
    params = load_params()
    source = read_json(Path("data/raw/SOURCE.json"))["source"]
    report = preprocess(
        "data/raw",
        "data/processed",
        "data/test_dataset_1",
        val_fraction=params.preprocess.val_fraction,
        seed=params.seed,
    )
    report = {"dataset": source, **report}
    write_json("data/processed/meta.json", report)
    write_json("metrics/data.json", report)
    print(
        f"preprocess: {report['images']}, unreadable {report['unreadable']}, "
        f"duplicate groups {report['duplicate_groups']}, test images also in train {report['test_in_train']}"
    )


if __name__ == "__main__":
    run_stage(main)
