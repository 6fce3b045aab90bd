"""Stage-level steps shared by the DVC stage scripts: train/record, evaluate.

Each function writes its DVC outputs first, then records the run in MLflow, so a
tracking server that fails mid-run never costs a trained model.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from cifake import tracking
from cifake.config import Params
from cifake.data import Split
from cifake.fileio import atomic_path, read_json, write_json
from cifake.training import FitConfig

log = logging.getLogger(__name__)

PROCESSED = Path("data/processed")
SAMPLE_NOTE = "sample: generated offline by the project, not CIFAKE; says nothing about real detection"


def dataset_info() -> dict:
    """What preprocess recorded about the data (source, hash), for metrics and tags."""
    meta = read_json(PROCESSED / "meta.json")
    return {"source": meta["dataset"], "dataset_sha256": meta["dataset_sha256"]}


def dataset_label(info: dict) -> str:
    """The ``dataset`` value every metrics file carries; says plainly when it is the sample."""
    return SAMPLE_NOTE if info["source"] == "sample" else f"cifake ({info['source']})"


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write a list of dicts as CSV (header from the first row), whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
            writer.writeheader()
            writer.writerows(rows)


def _safe_log_epoch(row: dict) -> None:
    try:
        tracking.log_epoch(row)
    except Exception as exc:  # never lose training to a tracking hiccup
        log.warning("MLflow: could not log epoch %s (%s); training goes on", row.get("epoch"), exc)


def train_and_record(
    params: Params,
    *,
    stage: str,
    config: FitConfig,
    stage_params: dict,
    init_model: str | None,
    out_model: str,
    out_metrics: str,
    out_history: str,
    alias: str | None,
) -> dict:
    """Train (from scratch or from ``init_model``), save, then log and register in MLflow."""
    from cifake.model import build_model, load_model, save_model
    from cifake.training import fit, set_determinism

    set_determinism(params.seed)
    info = dataset_info()
    train, val = Split.load(PROCESSED / "train.npz"), Split.load(PROCESSED / "val.npz")
    model = load_model(init_model) if init_model else build_model(params.model)
    with tracking.stage_run(stage, params.tracking.experiment, stage_params, info):
        start = time.perf_counter()
        history = fit(model, train, val, config, on_epoch=_safe_log_epoch)
        seconds = time.perf_counter() - start
        save_model(model, out_model)
        write_rows(out_history, history)
        monitor = "val_pgd_accuracy" if config.adversarial else "val_accuracy"
        best = max(history, key=lambda r: r[monitor])
        metrics = {
            "dataset": dataset_label(info),
            "architecture": model.name,
            "parameters": int(model.count_params()),
            "epochs_run": len(history),
            "best_epoch": int(best["epoch"]),
            "train_seconds": round(seconds, 1),
            **{k: v for k, v in best.items() if k.startswith("val_")},
        }
        write_json(out_metrics, metrics)
        tracking.log_metrics({k: v for k, v in metrics.items() if k.startswith("val_")}, prefix="best")
        tracking.log_artifacts(out_history, out_metrics)
        description = (
            f"{stage} on {info['source']} data; {model.name}, {metrics['parameters']:,} params; "
            + ", ".join(f"{k}={v:.4f}" for k, v in best.items() if k.startswith("val_"))
        )
        version = tracking.register_model(model, params.tracking.registered_model, description, alias=alias)
        print(f"{stage}: saved {out_model}; registered {params.tracking.registered_model} v{version}")
    return metrics
