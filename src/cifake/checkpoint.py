"""Resumable training: the whole training state, saved at the end of every epoch.

:class:`EpochCheckpoint` is a Keras callback. After each epoch it writes, into a
fresh folder that is renamed into place only when complete, the trainer's
weights (network, optimizer moments, learning-rate step), the states of its
random-number generators, the early-stopping state with its best weights, and
the history so far, with a ``SHA256SUMS`` of those files. A run killed at any
moment therefore finds its last finished epoch intact.

Checkpoints verify themselves: the last two are kept, and on resume one whose
files do not match their sums (or do not load) is reported in one line, set
aside as ``epoch-NNNN.damaged``, and the one before is used; with none left,
training starts from epoch 0. A full disk or a read-only folder while saving
is one :class:`CheckpointError`; the earlier checkpoints stay as they were.

A checkpoint is tied to a ``fingerprint`` (a hash of the settings and inputs
of the run): one made by different params or data is never resumed, but
deleted. :meth:`EpochCheckpoint.clear` removes it when the stage completes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cifake.fileio import OutputError, sha256_file, writing

log = logging.getLogger(__name__)

STATE = "state.json"
WEIGHTS = "trainer.weights.h5"
BEST = "best_weights.npz"
SUMS = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` checks a checkpoint by hand
KEEP = 2  # checkpoints kept: the latest, and the one to fall back to if it is damaged
EARLY_STOPPING_FIELDS = ("wait", "best", "best_epoch", "stopped_epoch")


class CheckpointError(OutputError):
    """A checkpoint could not be written (full disk, read-only folder)."""


class DamagedCheckpoint(Exception):
    """A checkpoint's file does not match its sum or does not load; the message names the file."""


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

    def _complete(self) -> list[Path]:
        """The finished checkpoints, oldest first (not ``.partial`` ones being written, nor ``.damaged`` ones)."""
        return sorted(self.directory.glob("epoch-*[0-9]")) if self.directory.is_dir() else []

    def restore(self, trainer: keras.Model) -> Resumed | None:
        """Load the latest good, matching checkpoint into ``trainer``; None if there is none.

        A checkpoint with another fingerprint (other params or inputs) is deleted. A damaged
        one is reported in one line and set aside, and the one before it is tried; if none
        is good, ``trainer`` is left as it was (training starts from epoch 0).
        """
        candidates = self._complete()[::-1]
        if not candidates:
            return None
        before = _snapshot(trainer)
        for folder in candidates:
            try:
                state = verify(folder)
                if state["fingerprint"] != self.fingerprint:
                    log.warning("checkpoint %s was made with other params or data: ignored and removed", folder)
                    self.clear()
                    break
                return self._load(folder, state, trainer)
            except DamagedCheckpoint as exc:
                aside = folder.with_name(folder.name + ".damaged")
                shutil.rmtree(aside, ignore_errors=True)
                folder.rename(aside)
                log.warning("checkpoint after epoch %d is damaged (%s): set aside as %s", _epoch(folder), exc, aside)
        else:
            log.warning("no usable checkpoint in %s: training starts from epoch 0", self.directory)
        _restore_snapshot(trainer, before)
        return None

    def _load(self, folder: Path, state: dict, trainer: keras.Model) -> Resumed:
        """Load a verified checkpoint into ``trainer``; a file that still fails to load is damaged."""
        with _blame(WEIGHTS):
            trainer.load_weights(folder / WEIGHTS)
        with _blame(STATE):
            for generator, value in zip(seed_generators(trainer), state.get("seed_states", []), strict=False):
                generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
            es, history, epoch = dict(state["early_stopping"]), list(state["history"]), int(state["epoch"])
        if (folder / BEST).is_file():
            with _blame(BEST), np.load(folder / BEST) as best:
                es["best_weights"] = [best[f"w{i}"] for i in range(len(best.files))]
        self._pending = es  # applied after EarlyStopping resets itself in on_train_begin
        self.history = history
        return Resumed(epoch=epoch, history=list(history), stopped=bool(es.get("stopped_epoch")))

    def on_train_begin(self, logs=None):
        if self._pending is not None:
            for key, value in self._pending.items():
                setattr(self.early_stopping, key, value)
            self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        target = self.directory / f"epoch-{epoch + 1:04d}"
        tmp = target.with_name(target.name + ".partial")
        try:
            with writing(target, kept="the earlier checkpoints are kept"):
                self.directory.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                self._write(tmp, epoch)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
        except OutputError as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # no debris: the next run finds only whole checkpoints
            raise CheckpointError(exc.errno, f"checkpoint after epoch {epoch + 1}: {exc.strerror}") from None
        self._prune()
        log.info("checkpoint after epoch %d saved in %s", epoch + 1, self.directory)

    def _write(self, tmp: Path, epoch: int) -> None:
        """Write the state after ``epoch`` (0-based) into the folder ``tmp``, then the sums of its files."""
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
            "sums": SUMS,  # this checkpoint has them: without them it is damaged
        }
        (tmp / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        sums = "".join(f"{sha256_file(f)}  {f.name}\n" for f in sorted(tmp.iterdir()))
        (tmp / SUMS).write_text(sums, encoding="utf-8")

    def _prune(self) -> None:
        """Keep the last :data:`KEEP` checkpoints; remove older ones and any stray ``.partial`` folder."""
        for old in self._complete()[:-KEEP] + sorted(self.directory.glob("epoch-*.partial")):
            shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        """Remove every checkpoint of this run."""
        remove_checkpoints(self.directory)


def seed_generators(model: keras.Model) -> list:
    """The random-number generators of ``model`` and its layers (attack starts, dropout).

    Keras' weight files leave their states out, so a checkpoint saves them itself:
    a resumed run then draws what the uninterrupted run would have drawn.
    """
    return [g for layer in model._flatten_layers(include_self=True) for g in getattr(layer, "_seed_generators", [])]


def verify(folder: Path) -> dict:
    """The state of checkpoint ``folder`` once every file matches ``SHA256SUMS``; else :class:`DamagedCheckpoint`.

    A checkpoint written before checkpoints had sums (its state says nothing of them) is accepted
    unchecked, so that a run started with older code still resumes; loading it is still guarded.
    """
    if not (folder / SUMS).exists():
        with _blame(STATE):
            state = json.loads((folder / STATE).read_text(encoding="utf-8"))
        if state.get("sums") != SUMS:
            log.info("checkpoint %s predates %s: resumed without checking its files", folder, SUMS)
            return state
    try:
        lines = (folder / SUMS).read_text(encoding="utf-8").splitlines()
        pairs = [line.split("  ", 1) for line in lines if line]
        listed = {name: digest for digest, name in pairs}
    except (OSError, UnicodeDecodeError, ValueError):
        raise DamagedCheckpoint(f"{SUMS} missing or unreadable") from None
    for name in (STATE, WEIGHTS, *sorted(set(listed) - {STATE, WEIGHTS})):
        if name not in listed:
            raise DamagedCheckpoint(f"{name} is not listed in {SUMS}")
        if not (folder / name).is_file() or sha256_file(folder / name) != listed[name]:
            raise DamagedCheckpoint(f"{name} does not match its sha256 in {SUMS}")
    with _blame(STATE):
        return json.loads((folder / STATE).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _blame(name: str) -> Iterator[None]:
    """Turn any error while reading checkpoint file ``name`` into :class:`DamagedCheckpoint`."""
    try:
        yield
    except DamagedCheckpoint:
        raise
    except Exception as exc:
        raise DamagedCheckpoint(
            f"{name} does not load: {str(exc).splitlines()[0][:200] if str(exc) else exc!r}"
        ) from None


def _epoch(folder: Path) -> int:
    return int(folder.name.split("-")[1].split(".")[0])


def _snapshot(trainer: keras.Model) -> list:
    """The values of every variable a checkpoint restores (network, optimizer, generators)."""
    variables = {id(v): v for v in [*trainer.variables, *trainer.optimizer.variables]}
    variables.update({id(g.state): g.state for g in seed_generators(trainer)})
    return [(v, np.array(v.numpy())) for v in variables.values()]


def _restore_snapshot(trainer: keras.Model, snapshot: list) -> None:
    """Undo a failed load: put back the values :func:`_snapshot` took."""
    for variable, value in snapshot:
        variable.assign(value)


def remove_checkpoints(directory: str | Path) -> None:
    """Delete a stage's checkpoints (once it has written its outputs, or when they are stale)."""
    shutil.rmtree(directory, ignore_errors=True)


def _plain(value):
    """JSON-ready scalars (EarlyStopping keeps numpy floats and None)."""
    if value is None or isinstance(value, (int, str)):
        return value
    return float(value)
