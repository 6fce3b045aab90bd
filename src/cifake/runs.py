"""A tracked training run: fit (resumably), save, write the stage's metrics, log and register in MLflow.

The ``train`` and ``fgsm_finetune`` stages differ only in their settings and
files, so both call :func:`train_and_register`. Outputs are written before
anything goes to MLflow, so a tracking server that fails mid-run never costs a
trained model; and every MLflow record goes through an :class:`~cifake.outbox.Outbox`,
so such a server costs no time and loses no figure either (what it missed is sent
when it answers again). The stage scripts pass every path.
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
from cifake.distribute import is_chief
from cifake.fileio import read_json, sha256_file, write_json, write_rows
from cifake.fitconfig import FitConfig, monitored_metric
from cifake.model import save_model, with_flip_average
from cifake.outbox import Outbox, send_waiting
from cifake.training import FitResult, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    """Where a training stage writes: the model, its metrics, its history, its checkpoints, and the
    outbox of MLflow records not sent yet (a folder shared by the stages, outside DVC and git)."""

    model: Path
    metrics: Path
    history: Path
    checkpoints: Path
    outbox: Path


def fingerprint(*parts: object) -> str:
    """A hash of a run's settings and input hashes: a checkpoint resumes only the run it belongs to."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _epoch_logger(outbox: Outbox):
    """Keep each epoch's metrics in ``outbox`` and send them at once, with the short HTTP policy."""

    def log_epoch(row: dict) -> None:
        outbox.add_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        if not outbox.send(tracking.QUICK):
            log.warning(
                "MLflow: epoch %s not sent (%s); kept in %s and sent when the server answers",
                row["epoch"],
                outbox.problem,
                outbox.folder,
            )

    return log_epoch


def stage_metrics(result: FitResult, config: FitConfig, meta: dict) -> dict:
    """The stage's metrics file: the best epoch's validation figures and what produced them."""
    best = max(result.history, key=lambda r: r[monitored_metric(config)])
    return {
        "dataset": describe_dataset(meta["dataset"]),
        "architecture": result.model.name,
        "parameters": int(result.model.count_params()),
        "precision": config.precision,  # what ran: params.yaml's "auto" resolved on this CPU
        "epochs_run": len(result.history),
        "best_epoch": int(best["epoch"]),
        **{k: v for k, v in best.items() if k.startswith("val_")},
    }


def train_and_register(
    model: keras.Model,
    train: Split,
    val: Split,
    config: FitConfig,
    *,
    stage: str,
    stage_params: dict,
    meta: dict,
    files: RunFiles,
    experiment: str,
    registered_model: str,
    alias: str | None,
    strategy,
    key: str,
    flip_average: bool = False,
    soft_targets=None,
) -> dict | None:
    """Train ``model`` (resuming a checkpoint of the same ``key``), save it, then log and register it.

    With ``flip_average`` the saved model averages the logit over each image and its mirror image, and
    with ``config.view_shift`` over shifts of both too (:func:`cifake.model.with_flip_average`); validation
    figures are the network's own unless ``config.validate_flip_average``. ``soft_targets`` are a
    teacher's, for distillation (see :func:`cifake.training.fit`). Returns the stage metrics; None on a
    ``multi_worker`` helper, which leaves saving and logging to the chief.
    """
    if not is_chief(strategy):
        fit(model, train, val, config, strategy=strategy, soft_targets=soft_targets)
        print(f"{stage}: this worker's part of the training is done; the chief saves the model and logs it")
        return None
    tracking.check_tracking_server()  # the server must answer to start
    send_waiting(files.outbox)  # what earlier runs could not send
    run_id = _stage_run(files, key, lambda: tracking.open_run(stage, experiment, stage_params, meta))
    shipped = (lambda net: with_flip_average(net, config.view_shift)) if flip_average else (lambda net: net)
    outbox = Outbox.create(files.outbox, tracking.tracking_uri(), run_id, stage)
    try:
        metrics = _train_and_save(model, train, val, config, strategy, outbox, meta, files, key, soft_targets, shipped)
        outbox.add_model(
            files.model,
            registered_model,
            _description(stage, meta, metrics),
            alias,
            tags={"stage": stage, "model_sha256": sha256_file(files.model)},
        )
        outbox.end("FINISHED")
    except BaseException:
        _end_failed(outbox)
        raise
    if outbox.send(tracking.PATIENT):
        print(f"{stage}: saved {files.model}; registered {registered_model} v{outbox.version}")
    else:
        print(
            f"{stage}: saved {files.model}, but the MLflow server did not answer ({outbox.problem}); still to send: "
            f"{outbox.waiting()} (kept in {outbox.folder}; `cifake sync-tracking` sends them once it is back)"
        )
    remove_checkpoints(files.checkpoints)  # outputs are written: the checkpoint has served
    _run_record(files).unlink(missing_ok=True)
    return metrics


def _run_record(files: RunFiles) -> Path:
    """Where a stage keeps the id of its MLflow run until it completes: beside its checkpoints."""
    return files.checkpoints.with_name(files.checkpoints.name + ".mlflow-run.json")


def _stage_run(files: RunFiles, key: str, open_new) -> str:
    """The stage's MLflow run: the one a killed run of the same ``key`` left (a resumed run stays
    one run), else a new one from ``open_new()``."""
    record = _run_record(files)
    if record.is_file():
        kept = read_json(record)
        if kept.get("fingerprint") == key and tracking.reopen_run(kept["run_id"]):
            print(f"MLflow: continuing run {kept['run_id']}, which the interrupted run of this stage opened")
            return kept["run_id"]
    run_id = open_new()
    write_json(record, {"fingerprint": key, "run_id": run_id})
    return run_id


def _train_and_save(
    model, train, val, config, strategy, outbox: Outbox, meta, files: RunFiles, key, soft_targets, shipped
):
    """Fit (logging every epoch to ``outbox``), write ``shipped(trained network)``, the history and metrics
    files; keep the final metrics and the files in ``outbox``. Returns the stage metrics."""
    start = time.perf_counter()
    result = fit(
        model,
        train,
        val,
        config,
        on_epoch=_epoch_logger(outbox),
        strategy=strategy,
        checkpoint_dir=files.checkpoints,
        fingerprint=key,
        soft_targets=soft_targets,
    )
    seconds = time.perf_counter() - start
    save_model(shipped(result.model), files.model)
    write_rows(files.history, result.history)
    metrics = stage_metrics(result, config, meta)
    write_json(files.metrics, metrics)
    # wall time goes to MLflow only, so that metrics files are identical across reruns
    best = {f"best.{k}": v for k, v in metrics.items() if k.startswith("val_")}
    outbox.add_metrics({"train_seconds": seconds, "resumed_at_epoch": result.resumed_at_epoch, **best})
    outbox.add_files(files.history, files.metrics)
    return metrics


def _end_failed(outbox: Outbox) -> None:
    """The stage failed: tell MLflow so if it answers at once; otherwise the outbox keeps it."""
    try:
        outbox.end("FAILED")
        outbox.send(tracking.QUICK)
    except Exception as exc:  # e.g. the disk is full: the stage's own error matters more
        log.warning("MLflow: could not record the failed run (%s)", exc)


def _description(stage: str, meta: dict, metrics: dict) -> str:
    return (
        f"{stage} on {meta['dataset']} data; {metrics['architecture']}, {metrics['parameters']:,} params; "
        + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
    )
