"""What a training run has for MLflow, kept on disk until the tracking server takes it.

A training stage hands every record of its MLflow run to an :class:`Outbox`: each
epoch's metrics, the final metrics, the files to attach, the model to register (with
its alias) and the run's end. The outbox writes the record into its folder first,
then sends whatever is waiting, with a short HTTP policy while training
(:data:`cifake.tracking.QUICK`), so a server that went away costs an epoch a few
seconds at most and no figure is lost: what is still waiting goes with the next
send (the next epoch, the end of the stage, the next run of a tracked stage, or
``cifake sync-tracking``). A folder whose records are all sent is removed.

Sending twice never duplicates anything: a metric keeps the timestamp it was
recorded with (the tracking store drops an identical row), a file overwrites
itself, and a run's model is registered only if the run has no version yet.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from cifake import tracking
from cifake.fileio import read_json, write_json

log = logging.getLogger(__name__)

RECORD = "outbox.json"
FILES = "files"
MODEL = "model.keras"
BATCH = 1000  # metrics per request (the REST API's limit)


class Outbox:
    """The unsent records of one MLflow run, in ``folder`` (``<outbox root>/<run id>/``)."""

    def __init__(self, folder: Path, record: dict):
        self.folder = folder
        self.record = record
        self.problem = ""  # why the last send stopped (empty if it did not)
        self.version: int | None = None  # the registered version, once sent

    @classmethod
    def create(cls, root: str | Path, uri: str, run_id: str, stage: str) -> Outbox:
        """A new, empty outbox for the run ``run_id`` on the server ``uri``."""
        record = {"tracking_uri": uri, "run_id": run_id, "stage": stage, "metrics": [], "files": []}
        outbox = cls(Path(root) / run_id, {**record, "model": None, "status": None})
        outbox._save()
        return outbox

    @classmethod
    def load(cls, folder: Path) -> Outbox:
        return cls(folder, read_json(folder / RECORD))

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    def _save(self) -> None:
        write_json(self.folder / RECORD, self.record)

    def add_metrics(self, metrics: dict, step: int = 0) -> None:
        """Keep ``metrics`` (name -> number) for ``step``, stamped with the time they were recorded."""
        stamp = int(time.time() * 1000)
        self.record["metrics"] += [[k, float(v), stamp, int(step)] for k, v in metrics.items()]
        self._save()

    def add_files(self, *paths: Path) -> None:
        """Keep copies of ``paths`` to attach to the run (the originals may change before they are sent)."""
        (self.folder / FILES).mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy2(path, self.folder / FILES / Path(path).name)
            self.record["files"].append(Path(path).name)
        self._save()

    def add_model(self, model_file: Path, name: str, description: str, alias: str | None, tags: dict) -> None:
        """Keep a copy of the saved model, to register as a version of ``name`` (moving ``alias`` to it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_file, self.folder / MODEL)
        self.record["model"] = {"name": name, "description": description, "alias": alias, "tags": tags}
        self._save()

    def end(self, status: str) -> None:
        """Record the run's end (``FINISHED`` or ``FAILED``); it is sent after everything else."""
        self.record["status"] = status
        self._save()

    def waiting(self) -> str:
        """What is still to be sent, in words (empty if nothing)."""
        parts = []
        steps = sorted({m[3] for m in self.record["metrics"] if m[3] > 0})
        if steps:
            parts.append(f"the metrics of epoch{'s' * (len(steps) > 1)} {', '.join(map(str, steps))}")
        if any(m[3] == 0 for m in self.record["metrics"]):
            parts.append("the final metrics")
        if self.record["files"]:
            parts.append(", ".join(self.record["files"]))
        model = self.record["model"]
        if model:
            alias = f" with the alias {model['alias']}" if model["alias"] else ""
            parts.append(f"the model version of {model['name']}{alias}")
        if self.record["status"]:
            parts.append("the run's end")
        return "; ".join(parts)

    def send(self, policy: tuple[int, float] = tracking.PATIENT) -> bool:
        """Send what is waiting, oldest kind first; True once everything is sent (the folder is then removed).

        Stops at the first call that fails (the server is down or answers with an error), keeping the
        rest, and says why in :attr:`problem`.
        """
        try:
            with tracking.http_policy(policy):
                self._send()
        except Exception as exc:  # any failure of the server or the network: keep the records, retry later
            self.problem = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            return False
        self.problem = ""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last outbox out removes the (then empty) root folder
            self.folder.parent.rmdir()
        return True

    def _send(self) -> None:
        import mlflow
        from mlflow.entities import Metric

        mlflow.set_tracking_uri(self.record["tracking_uri"])
        client = mlflow.MlflowClient(self.record["tracking_uri"])
        while self.record["metrics"]:
            batch = self.record["metrics"][:BATCH]
            client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, step) for k, v, stamp, step in batch])
            del self.record["metrics"][:BATCH]
            self._save()
        while self.record["files"]:
            client.log_artifact(self.run_id, str(self.folder / FILES / self.record["files"][0]))
            self.record["files"].pop(0)
            self._save()
        if self.record["model"]:
            self._register()
        if self.record["status"]:
            client.set_terminated(self.run_id, self.record["status"])
            self.record["status"] = None
            self._save()

    def _register(self) -> None:
        from cifake.registry import register_run_model

        spec = self.record["model"]
        self.version = register_run_model(
            self.folder / MODEL, self.run_id, spec["name"], spec["description"], alias=spec["alias"], tags=spec["tags"]
        )
        self.record["model"] = None
        self.record["registered"] = {"name": spec["name"], "version": self.version, "alias": spec["alias"]}
        self._save()


def waiting_outboxes(root: str | Path) -> list[Outbox]:
    """The outboxes under ``root`` that still hold records, oldest first."""
    folders = sorted(Path(root).glob(f"*/{RECORD}"), key=lambda p: p.stat().st_mtime) if Path(root).is_dir() else []
    return [Outbox.load(record.parent) for record in folders]


def send_waiting(root: str | Path, policy: tuple[int, float] = tracking.PATIENT) -> tuple[list[Outbox], list[Outbox]]:
    """Send every outbox under ``root``: returns (those now fully sent, those still waiting)."""
    sent, left = [], []
    for outbox in waiting_outboxes(root):
        what = outbox.waiting()
        if outbox.send(policy):
            sent.append(outbox)
            log.info("MLflow: sent what run %s (%s) had waiting: %s", outbox.run_id, outbox.record["stage"], what)
        else:
            left.append(outbox)
    return sent, left
