"""Keras callbacks of the training loop: weight averaging, PGD validation and the per-epoch log line.

(The resumable checkpoint is :mod:`cifake.checkpoint`; early stopping is Keras' own.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import keras
import numpy as np

from cifake.attacks import Attacker, attack_images
from cifake.dataset import Split
from cifake.metrics import correct
from cifake.model import predict_proba
from cifake.progress import progress


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """Judge, keep and save the optimizer's moving average of the weights (``use_ema=True``).

    Keras' ``SwapEMAWeights(swap_on_epoch=True)``: the averaged weights are in the
    model from the end of each epoch (validation, PGD validation, early stopping,
    the checkpoint and the returned model see them) to the start of the next,
    when the training weights come back. List it first. A checkpoint is therefore
    saved with the average in the model: after restoring one, call :meth:`resumed`
    so that the training weights are swapped back before the next epoch.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=True)

    def resumed(self) -> None:
        """The model holds the averaged weights (restored from a checkpoint)."""
        self._ema_weights_in_model = True


class PGDValidation(keras.callbacks.Callback):
    """Adds ``val_pgd_accuracy``: accuracy under PGD on a fixed, seeded validation subset.

    ``adversarial`` supplies ``epsilon``, ``val_pgd_steps`` and ``val_subset``. List
    it before the callbacks that read the value (early stopping, logging).
    """

    def __init__(self, val: Split, adversarial, seed: int):
        super().__init__()
        pick = np.random.default_rng(seed).choice(
            len(val.y), size=min(adversarial.val_subset, len(val.y)), replace=False
        )
        self.x, self.y = val.x[np.sort(pick)], val.y[np.sort(pick)]
        self.eps, self.steps = adversarial.epsilon, adversarial.val_pgd_steps
        self._attacker: Attacker | None = None

    def on_epoch_end(self, epoch, logs=None):
        detector = self.model.validated  # the detector, or the flip-averaged model made from it
        if self._attacker is None:
            self._attacker = Attacker(detector)
        x_adv = attack_images(self._attacker, self.x, self.y, method="pgd", eps=self.eps, steps=self.steps)
        logs["val_pgd_accuracy"] = float(np.mean(correct(self.y, predict_proba(detector, x_adv))))


class EpochLog(keras.callbacks.Callback):
    """A progress bar per epoch (on a terminal), then one line of metrics; hands the row to ``on_epoch``.

    Adds ``seconds`` and ``images_per_second`` (training only) to the epoch's logs.
    """

    def __init__(self, epochs: int, images: int, batch_size: int, on_epoch: Callable[[dict], None] | None = None):
        super().__init__()
        self.epochs, self.images, self.batch_size, self.on_epoch = epochs, images, batch_size, on_epoch
        self._stack = ExitStack()

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_seconds = time.perf_counter(), None
        self._bar = self._stack.enter_context(
            progress(f"epoch {epoch + 1}/{self.epochs}", total=self.images, summary=False)
        )

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(
            min(self.batch_size, self.images - self._bar.done), accuracy=f"{float(logs.get('accuracy', 0)):.4f}"
        )

    def on_test_begin(self, logs=None):  # validation: training time of this epoch ends here
        self._train_seconds = time.perf_counter() - self._start
        self._stack.close()

    def on_epoch_end(self, epoch, logs=None):
        self._stack.close()
        seconds = time.perf_counter() - self._start
        logs["seconds"] = seconds
        logs["images_per_second"] = self.images / (self._train_seconds or seconds)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        print(
            f"epoch {epoch + 1}/{self.epochs}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"),
            file=sys.stderr,
            flush=True,
        )
        if self.on_epoch is not None:
            self.on_epoch(row)
