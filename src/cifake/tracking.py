"""MLflow tracking: where runs go, what every run records, and test figures on registered versions.

The default tracking URI is ``sqlite:///mlflow.db`` in the project root (the
file store is rejected by recent MLflow); ``MLFLOW_TRACKING_URI`` overrides it.
A remote server is checked before any long work starts. Calls made while
training use a short HTTP policy (:data:`QUICK`, :func:`http_policy`): MLflow's
default retries would block a call to a server that went away for about five
minutes. What could not be sent waits in a :class:`cifake.outbox.Outbox`. Registering
versions is :mod:`cifake.registry`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cifake.errors import CifakeError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# HTTP policies (retries, seconds per request): per-epoch calls must never stall training;
# the end of a stage and `cifake sync-tracking` can afford a couple of retries and a slow upload
QUICK = (0, 5.0)
PATIENT = (2, 60.0)


class TrackingError(CifakeError, RuntimeError):
    """The tracking server cannot be used; the message says what to do."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_tracking_server(uri: str | None = None, timeout: float = 5.0) -> None:
    """Fail fast, with a clear message, if an HTTP tracking server does not answer."""
    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http/https only)
            if response.status != 200:
                raise TrackingError(f"MLflow server at {uri} answered {response.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)}). "
            "Start it, fix MLFLOW_TRACKING_URI, or unset it to track into ./mlflow.db."
        ) from None


@contextlib.contextmanager
def http_policy(policy: tuple[int, float]) -> Iterator[None]:
    """MLflow's HTTP retries and timeout (``policy``, e.g. :data:`QUICK`) for the calls made inside.

    MLflow reads these environment variables on every request, so they hold for exactly this block.
    """
    retries, timeout = policy
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout)),
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, params: dict, dataset: dict) -> Iterator:
    """Start an MLflow run for one pipeline stage, with params and tags set (see :func:`open_run`);
    it is the active run inside the block and ends with it."""
    import mlflow

    with mlflow.start_run(run_id=open_run(stage, experiment, params, dataset)) as run:
        yield run


def open_run(stage: str, experiment: str, params: dict, dataset: dict) -> str:
    """Create an MLflow run for one pipeline stage, with params and tags set; return its id.

    ``params`` is a (nested) dict of the stage's settings; ``dataset`` is what the
    preprocess stage recorded (``data/processed/meta.json``): at least ``dataset``
    (the source: sample, archive, ...) and ``dataset_sha256``. The run is not made
    the active one, so nothing but the caller ever waits on the server for it.
    """
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking.context import registry

    check_tracking_server()
    mlflow.set_tracking_uri(tracking_uri())
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    # MLflow 3 opens an experiment without this tag on its GenAI overview; this one holds training runs
    mlflow.set_experiment_tag(EXPERIMENT_KIND_TAG, "custom_model_development")
    commit = git_commit()
    tags = {
        "stage": stage,
        "git_commit": commit,
        "dataset.source": dataset.get("dataset", "unknown"),
        "dataset.sha256": dataset.get("dataset_sha256", "unknown"),
    }
    experiment_name = os.environ.get("DVC_EXP_NAME")  # set by `dvc exp run`
    if experiment_name:
        tags["dvc_experiment"] = experiment_name
    # e.g. "train-archive-sworn-bump" under `dvc exp run`, "train-sample-1cb9ad6" under `dvc repro`
    name = f"{stage}-{dataset.get('dataset', 'data')}-{experiment_name or commit[:7]}"
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, tags=registry.resolve_tags(tags), run_name=name)
    flat = {k: str(v)[:500] for k, v in _flatten("", params, {}).items()}
    items = sorted(flat.items())
    for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in items[i : i + 100]])
    return run.info.run_id


def reopen_run(run_id: str) -> bool:
    """Mark a stage's earlier run (killed, now resumed) as running again; a changed commit is tagged
    ``git_commit_resumed`` (``git_commit`` stays the one it began with). False when the server does not
    hold the run (another tracking URI, or deleted run): the caller then opens a new one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False
    if run.info.lifecycle_stage != "active":
        return False
    client.update_run(run_id, status="RUNNING")
    commit = git_commit()
    if run.data.tags.get("git_commit") != commit:
        client.set_tag(run_id, "git_commit_resumed", commit)
    return True


def log_epoch(row: dict) -> None:
    """Log one epoch's metrics (as produced by :func:`cifake.training.fit`)."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))


def log_metrics(metrics: dict, prefix: str = "") -> None:
    """Log the numeric leaves of a nested metrics dict, keys joined by dots."""
    import mlflow

    flat = _flatten(prefix, metrics, {})
    mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in flat.items() if _is_number(v)})


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def log_artifacts(*paths: str | Path) -> None:
    import mlflow

    for path in paths:
        path = Path(path)
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=path.name)
        elif path.is_file():
            mlflow.log_artifact(str(path))


def describe_versions(registered_name: str, summaries: dict[str, str]) -> list[int]:
    """Add evaluation results to the descriptions of registered versions.

    ``summaries`` maps a model file's sha256 to the text to add; the versions are
    found by their ``model_sha256`` tag (set when they were registered), so the
    figures land on exactly the versions that were evaluated. Returns the versions
    updated; a model that was never registered is skipped with a warning.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    updated = []
    for sha, summary in summaries.items():
        found = client.search_model_versions(f"name = '{registered_name}' and tags.model_sha256 = '{sha}'")
        if not found:
            log.warning(
                "no registered version of %s has model_sha256=%s; description not updated", registered_name, sha
            )
        for v in found:
            client.update_model_version(
                registered_name, v.version, description=f"{v.tags.get('training', '')}\n{summary}"
            )
            updated.append(int(v.version))
    return sorted(updated)
