"""A tracked training run: fit (resumably), save, write the stage's metrics, log and register in MLflow.

The ``train`` and ``fgsm_finetune`` stages differ only in their settings and
files, so both call :func:`train_and_register`. Outputs are written before
anything goes to MLflow, so a tracking server that fails mid-run never costs a
trained model. The stage scripts pass every path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from cifake import tracking
from cifake.checkpoint import remove_checkpoints
from cifake.dataset import Split, describe_dataset
from cifake.fileio import sha256_file, write_json, write_rows
from cifake.model import save_model, with_flip_average
from cifake.training import FitConfig, FitResult, fit, is_chief, monitored_metric

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    """Where a training stage writes: the model, its metrics, its history, and its checkpoints."""

    model: Path
    metrics: Path
    history: Path
    checkpoints: Path


def fingerprint(*parts: object) -> str:
    """A hash of a run's settings and input hashes: a checkpoint resumes only the run it belongs to."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _safe_log_epoch(row: dict) -> None:
    try:
        tracking.log_epoch(row)
    except Exception as exc:  # never lose training to a tracking hiccup
        log.warning("MLflow: could not log epoch %s (%s); training goes on", row.get("epoch"), exc)


def stage_metrics(result: FitResult, config: FitConfig, meta: dict) -> dict:
    """The stage's metrics file: the best epoch's validation figures and what produced them."""
    best = max(result.history, key=lambda r: r[monitored_metric(config)])
    return {
        "dataset": describe_dataset(meta["dataset"]),
        "architecture": result.model.name,
        "parameters": int(result.model.count_params()),
        "epochs_run": len(result.history),
        "best_epoch": int(best["epoch"]),
        **{k: v for k, v in best.items() if k.startswith("val_")},
    }


def train_and_register(
    model: keras.Model, train: Split, val: Split, config: FitConfig, *, stage: str, stage_params: dict,
    meta: dict, files: RunFiles, experiment: str, registered_model: str, alias: str | None, strategy, key: str,
    flip_average: bool = False,
) -> dict | None:
    """Train ``model`` (resuming a checkpoint of the same ``key``), save it, then log and register it.

    With ``flip_average`` the saved and registered model averages the trained network's logit over each
    image and its mirror image (:func:`cifake.model.with_flip_average`); training and its validation
    figures are those of the network itself.

    Returns the stage metrics; None on a ``multi_worker`` helper, which trains its share and leaves
    saving and logging to the chief.
    """
    if not is_chief(strategy):
        fit(model, train, val, config, strategy=strategy)
        print(f"{stage}: this worker's part of the training is done; the chief saves the model and logs it")
        return None
    with tracking.stage_run(stage, experiment, stage_params, meta):
        start = time.perf_counter()
        result = fit(model, train, val, config, on_epoch=_safe_log_epoch, strategy=strategy,
                     checkpoint_dir=files.checkpoints, fingerprint=key)
        seconds = time.perf_counter() - start
        shipped = with_flip_average(result.model) if flip_average else result.model
        save_model(shipped, files.model)
        write_rows(files.history, result.history)
        metrics = stage_metrics(result, config, meta)
        write_json(files.metrics, metrics)
        # wall time goes to MLflow only, so that metrics files are identical across reruns
        tracking.log_metrics({"train_seconds": seconds, "resumed_at_epoch": result.resumed_at_epoch})
        tracking.log_metrics({k: v for k, v in metrics.items() if k.startswith("val_")}, prefix="best")
        tracking.log_artifacts(files.history, files.metrics)
        version = tracking.register_model(
            shipped, registered_model, _description(stage, meta, metrics), alias=alias,
            tags={"stage": stage, "model_sha256": sha256_file(files.model)},
        )
        print(f"{stage}: saved {files.model}; registered {registered_model} v{version}")
    remove_checkpoints(files.checkpoints)  # outputs are written: the checkpoint has served
    return metrics


def _description(stage: str, meta: dict, metrics: dict) -> str:
    return (
        f"{stage} on {meta['dataset']} data; {metrics['architecture']}, {metrics['parameters']:,} params; "
        + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
    )

