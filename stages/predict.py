"""DVC stage `predict`: write results/Test_N_results.csv for each configured test folder.

It classifies the folders as they are and never re-attacks them. Where a labels
file lies beside a folder (``<folder>_labels.csv``), the CSV is scored against it.
"""

from pathlib import Path

from cifake.config import load_params
from cifake.dataset import labels_path
from cifake.errors import run_stage
from cifake.fileio import write_json
from cifake.model import load_model
from cifake.predict import predict_folder, read_labels, score_csv

OUT = Path("results")


def main() -> None:
    params = load_params().predict
    model = load_model(params.model)
    OUT.mkdir(exist_ok=True)
    metrics = {}
    for folder, csv_path in params.datasets.items():
        summary = predict_folder(model, folder, csv_path, threshold=params.threshold, batch_size=params.batch_size)
        print(f"predict: {folder}: {summary.describe()}")
        entry = {"classified": summary.classified, "skipped": len(summary.failed)}
        if labels_path(folder).is_file():
            entry.update(score_csv(csv_path, read_labels(labels_path(folder))))
        metrics[Path(folder).name] = entry
    write_json("metrics/predict.json", metrics)


if __name__ == "__main__":
    run_stage(main)
