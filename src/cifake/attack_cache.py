"""Finished batches of an attack kept on disk, so that a killed ``perturb`` or ``evaluate`` resumes.

Attacking thousands of images through a ten-view model takes hours on a CPU. With a cache folder, each
finished batch of adversarial images is saved under a key made of everything that decides it (the
model's weights, the images, the labels and the attack's settings); a rerun loads the batches that are
there and attacks only the rest. A changed model, image set or setting gets a new key, so nothing stale
is reused. The batches attacked after a resume draw fresh random starts, so a resumed run's PGD figures
can differ from an uninterrupted run's by the noise of one random start per image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np

from cifake.fileio import atomic_path


class BatchCache:
    """The saved batches of one attack of one model on one image set (a folder under ``root``)."""

    def __init__(self, root: str | Path, model: keras.Model, x: np.ndarray, y: np.ndarray, **attack: object):
        key = hashlib.sha256(json.dumps(attack, sort_keys=True).encode())
        for array in [np.asarray(x), np.asarray(y)] + [np.asarray(w) for w in model.weights]:
            key.update(str((array.shape, array.dtype)).encode())
            key.update(np.ascontiguousarray(array).tobytes())
        self.folder = Path(root) / key.hexdigest()[:20]

    def load(self, start: int, size: int) -> np.ndarray | None:
        """The saved batch that begins at image ``start`` (``size`` images), or None if it is not there."""
        try:
            batch = np.load(self._path(start), allow_pickle=False)
        except (OSError, ValueError):  # not saved yet, or unreadable: attack it again
            return None
        return batch if len(batch) == size else None

    def save(self, start: int, batch: np.ndarray) -> None:
        """Keep a finished batch (written whole or not at all)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(start)) as tmp:
            np.save(tmp, batch, allow_pickle=False)

    def _path(self, start: int) -> Path:
        return self.folder / f"{start:07d}.npy"
