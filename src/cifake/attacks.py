"""White-box L-inf attacks: FGSM (optionally with a random start, or from a given one), N-FGSM and PGD.

Attacks work on the 0-1 pixel scale: ``eps = 4/255`` moves each pixel by at most
4 grey levels. The model sees ``x * 255`` (its contract is [0, 255] input).
The loss is binary cross-entropy on the model's pre-sigmoid logit when the model
exposes one, so gradients do not vanish when the sigmoid saturates (a source of
false robustness). FGSM takes another per-image loss for other tasks (a classifier's
softmax cross-entropy). The loss and the input gradient are float32 even when the
model computes in bfloat16.

:func:`fgsm`, :func:`n_fgsm` and :func:`pgd` are the one implementation of each attack: the
adversarial ``train_step`` calls them inside its graph, and :class:`Attacker`
wraps them in compiled functions for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifake.attack_cache import BatchCache
from cifake.model import logit_model
from cifake.progress import progress

LogitFn = Callable[..., tf.Tensor]  # (x01, training=False) -> logits, shape (N,)
LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels, logits) -> per-image loss


def binary_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-image binary cross-entropy on pre-sigmoid ``logits`` (Real 0, Fake 1): the detector's loss."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def logit_fn(model: keras.Model) -> LogitFn:
    """Pre-sigmoid float32 output of ``model`` for images on the 0-1 scale, shape (N,).

    Uses the model's ``logits`` layer; a foreign model without one gets the
    logit of its clipped probability.
    """
    logits = logit_model(model)
    if logits is None:  # a foreign model with no logit layer: invert the clipped probability

        def forward(x01, training=False):
            return _prob_to_logit(model(x01 * 255.0, training=training))
    else:

        def forward(x01, training=False):
            return tf.cast(logits(x01 * 255.0, training=training), tf.float32)

    return lambda x01, training=False: tf.reshape(forward(x01, training=training), [-1])


def loss_gradient(
    logits: LogitFn, x01: tf.Tensor, y: tf.Tensor, training: bool = False, loss: LossFn = binary_loss
) -> tf.Tensor:
    """Gradient of the summed per-image ``loss`` (by default the logit's binary cross-entropy) with respect to the
    input."""
    with tf.GradientTape() as tape:
        tape.watch(x01)
        total = tf.reduce_sum(loss(y, logits(x01, training=training)))
    return tape.gradient(total, x01)


def fgsm(
    logits: LogitFn, x01, y, eps, step, random_start: bool, seed=None, training: bool = False,
    loss: LossFn = binary_loss,
) -> tf.Tensor:  # fmt: skip
    """One signed-gradient step of ``step``, projected to the ``eps``-ball and [0, 1].

    With ``random_start`` it begins at a uniform point of the ball: the "fast"
    adversarial training of Wong et al. (2020), who use ``step = 1.25 * eps``.
    ``seed`` is a ``keras.random.SeedGenerator`` (or None for TensorFlow's global RNG);
    ``training`` runs the model as in training (batch statistics), as adversarial training does; ``loss`` is
    the per-image loss the step ascends (:func:`loss_gradient`).
    """
    noise = _uniform(tf.shape(x01), eps, seed) if random_start else tf.zeros_like(x01)
    return fgsm_from(logits, x01, y, noise, eps, step, training, loss)


def fgsm_from(
    logits: LogitFn, x01, y, start, eps, step, training: bool = False, loss: LossFn = binary_loss
) -> tf.Tensor:
    """One signed-gradient step of ``step`` from ``x01 + start``, projected to the ``eps``-ball and [0, 1].

    :func:`fgsm` starts from noise (or nothing); ATTA (:mod:`cifake.carry`) from the image's last perturbation.
    """
    begin = tf.clip_by_value(x01 + start, 0.0, 1.0)
    delta = tf.clip_by_value(begin - x01 + step * tf.sign(loss_gradient(logits, begin, y, training, loss)), -eps, eps)
    return tf.clip_by_value(x01 + delta, 0.0, 1.0)


def n_fgsm(logits: LogitFn, x01, y, eps, step, seed=None, training: bool = False) -> tf.Tensor:
    """N-FGSM (de Jorge et al. 2022): uniform noise of ``2 * eps``, one signed step of ``step``, no projection.

    The perturbation can reach ``2 * eps + step`` (clipped only to [0, 1]); the paper uses
    ``step = eps``. It costs one gradient, as :func:`fgsm` with a random start does.
    """
    start = tf.clip_by_value(x01 + _uniform(tf.shape(x01), 2.0 * eps, seed), 0.0, 1.0)
    return tf.clip_by_value(start + step * tf.sign(loss_gradient(logits, start, y, training)), 0.0, 1.0)


def pgd(logits: LogitFn, x01, y, eps, step, steps, seed=None) -> tf.Tensor:
    """PGD with a uniform random start in the ``eps``-ball and ``steps`` signed-gradient steps."""
    x = tf.clip_by_value(x01 + _uniform(tf.shape(x01), eps, seed), 0.0, 1.0)
    for _ in tf.range(steps):
        x = x + step * tf.sign(loss_gradient(logits, x, y))
        x = tf.clip_by_value(tf.clip_by_value(x, x01 - eps, x01 + eps), 0.0, 1.0)
    return x


def _uniform(shape, eps, seed):
    if seed is None:
        return tf.random.uniform(shape, -eps, eps)
    return keras.random.uniform(shape, -eps, eps, seed=seed)


class Attacker:
    """FGSM and PGD against one model, each a compiled TensorFlow function."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.logits = logit_fn(model)
        spec = [
            tf.TensorSpec([None, 32, 32, 3], tf.float32),
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.float32),
        ]
        self._fgsm = tf.function(
            lambda x, y, eps, step, rs: tf.cond(
                rs,
                lambda: fgsm(self.logits, x, y, eps, step, random_start=True),
                lambda: fgsm(self.logits, x, y, eps, step, random_start=False),
            ),
            input_signature=spec + [tf.TensorSpec([], tf.bool)],
        )
        self._pgd = tf.function(
            lambda x, y, eps, step, steps: pgd(self.logits, x, y, eps, step, steps),
            input_signature=spec + [tf.TensorSpec([], tf.int32)],
        )

    def fgsm(self, x01, y, eps: float, step: float | None = None, random_start: bool = False) -> tf.Tensor:
        """FGSM; ``step`` defaults to ``eps`` (plain FGSM). See :func:`fgsm`."""
        step = eps if step is None else step
        return self._fgsm(*_args(x01, y, eps, step), tf.constant(random_start))

    def pgd(self, x01, y, eps: float, steps: int, step: float) -> tf.Tensor:
        """PGD; see :func:`pgd`."""
        return self._pgd(*_args(x01, y, eps, step), tf.constant(steps, tf.int32))


def _args(x01, y, eps, step):
    return (
        tf.convert_to_tensor(x01, tf.float32),
        tf.reshape(tf.cast(y, tf.float32), [-1]),
        tf.constant(eps, tf.float32),
        tf.constant(step, tf.float32),
    )


def _prob_to_logit(p):
    p = tf.clip_by_value(tf.cast(p, tf.float32), 1e-7, 1.0 - 1e-7)
    return tf.math.log(p) - tf.math.log1p(-p)


def attack_images(
    attacker: Attacker,
    x: np.ndarray,
    y: np.ndarray,
    *,
    method: str,
    eps: float,
    steps: int = 20,
    step_fraction: float = 0.25,
    batch_size: int = 256,
    cache: str | Path | None = None,
) -> np.ndarray:
    """Attack uint8/float images in [0, 255]; return float32 adversarial images in [0, 255].

    ``method`` is ``"fgsm"`` (plain, step = eps) or ``"pgd"`` (random start,
    ``steps`` steps of ``step_fraction * eps``). With a ``cache`` folder, finished batches
    are kept there and a rerun attacks only the batches it lacks (:mod:`cifake.attack_cache`).
    """
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"unknown attack {method!r}; use 'fgsm' or 'pgd'")
    out = np.empty(x.shape, dtype=np.float32)
    desc = f"{method} eps={eps * 255:.3g}/255" + (f" x{steps}" if method == "pgd" else "")
    settings = {"method": method, "eps": eps, "steps": steps, "step_fraction": step_fraction, "batch_size": batch_size}
    kept = None if cache is None else BatchCache(cache, attacker.model, x, y, **settings)
    with progress(desc, total=len(x), summary=False) as bar:  # callers report the result
        for start in range(0, len(x), batch_size):
            yb = y[start : start + batch_size]
            adv = kept.load(start, len(yb)) if kept else None
            if adv is None:
                xb = np.asarray(x[start : start + batch_size], dtype=np.float32) / 255.0
                if method == "fgsm":
                    adv = attacker.fgsm(xb, yb, eps).numpy() * 255.0
                else:
                    adv = attacker.pgd(xb, yb, eps, steps=steps, step=step_fraction * eps).numpy() * 255.0
                if kept:
                    kept.save(start, adv)
            out[start : start + batch_size] = adv
            bar.update(len(yb))
    return out
