"""Resumable training: the whole training state, saved at the end of every epoch.

:class:`EpochCheckpoint` is a Keras callback. After each epoch it writes, into a
fresh folder that is renamed into place only when complete, the trainer's
weights (network, optimizer moments, learning-rate step), the states of its
random-number generators, the early-stopping state with its best weights, and
the history so far. A run
killed at any moment therefore finds its last finished epoch intact.

A checkpoint is tied to a ``fingerprint`` (a hash of the settings and inputs
of the run): one made by different params or data is never resumed, but
deleted. :meth:`EpochCheckpoint.clear` removes it when the stage completes.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)

STATE = "state.json"
WEIGHTS = "trainer.weights.h5"
BEST = "best_weights.npz"
EARLY_STOPPING_FIELDS = ("wait", "best", "best_epoch", "stopped_epoch")


@dataclass
class Resumed:
    """What a checkpoint restored: the next epoch to run (0-based), the history so far,
    and whether early stopping had already ended the run (nothing is left to train)."""

    epoch: int
    history: list[dict]
    stopped: bool = False


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the training state every epoch into ``directory``; restore it with :meth:`restore`.

    ``early_stopping`` is the run's ``EarlyStopping`` callback, whose counters and
    best weights are saved too. List this callback after it, so that it saves
    the state as of the end of the epoch.
    """

    def __init__(self, directory: str | Path, fingerprint: str, early_stopping: keras.callbacks.EarlyStopping):
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.early_stopping = early_stopping
        self.history: list[dict] = []
        self._pending: dict | None = None

    def _latest(self) -> Path | None:
        done = sorted(self.directory.glob("epoch-*[0-9]")) if self.directory.is_dir() else []
        return done[-1] if done else None

    def restore(self, trainer: keras.Model) -> Resumed | None:
        """Load the latest matching checkpoint into ``trainer``; None if there is none.

        A checkpoint with another fingerprint (other params or inputs) is deleted.
        """
        latest = self._latest()
        if latest is None:
            return None
        state = json.loads((latest / STATE).read_text(encoding="utf-8"))
        if state["fingerprint"] != self.fingerprint:
            log.warning("checkpoint %s was made with other params or data: ignored and removed", latest)
            self.clear()
            return None
        trainer.load_weights(latest / WEIGHTS)
        for generator, value in zip(seed_generators(trainer), state.get("seed_states", [])):
            generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
        es = dict(state["early_stopping"])
        if (latest / BEST).is_file():
            with np.load(latest / BEST) as best:
                es["best_weights"] = [best[f"w{i}"] for i in range(len(best.files))]
        self._pending = es  # applied after EarlyStopping resets itself in on_train_begin
        self.history = state["history"]
        stopped = bool(es.get("stopped_epoch"))
        return Resumed(epoch=state["epoch"], history=list(self.history), stopped=stopped)

    def on_train_begin(self, logs=None):
        if self._pending is not None:
            for key, value in self._pending.items():
                setattr(self.early_stopping, key, value)
            self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"epoch-{epoch + 1:04d}"
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.model.save_weights(tmp / WEIGHTS)
        es = self.early_stopping
        if es.best_weights is not None:
            np.savez(tmp / BEST, **{f"w{i}": w for i, w in enumerate(es.best_weights)})
        state = {
            "fingerprint": self.fingerprint,
            "epoch": epoch + 1,
            "history": self.history,
            "early_stopping": {k: _plain(getattr(es, k)) for k in EARLY_STOPPING_FIELDS},
            "seed_states": [g.state.numpy().tolist() for g in seed_generators(self.model)],
        }
        (tmp / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        for old in self.directory.glob("epoch-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint after epoch %d saved in %s", epoch + 1, self.directory)

    def clear(self) -> None:
        """Remove every checkpoint of this run."""
        remove_checkpoints(self.directory)


def seed_generators(model: keras.Model) -> list:
    """The random-number generators of ``model`` and its layers (attack starts, dropout).

    Keras' weight files leave their states out, so a checkpoint saves them itself:
    a resumed run then draws what the uninterrupted run would have drawn.
    """
    return [g for layer in model._flatten_layers(include_self=True) for g in getattr(layer, "_seed_generators", [])]


def remove_checkpoints(directory: str | Path) -> None:
    """Delete a stage's checkpoints (once it has written its outputs, or when they are stale)."""
    shutil.rmtree(directory, ignore_errors=True)


def _plain(value):
    """JSON-ready scalars (EarlyStopping keeps numpy floats and None)."""
    if value is None or isinstance(value, (int, str)):
        return value
    return float(value)
