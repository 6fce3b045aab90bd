"""White-box L-inf attacks: FGSM (optionally with a random start) and PGD.

Attacks work on the 0-1 pixel scale: ``eps = 4/255`` moves each pixel by at most
4 grey levels. The model sees ``x * 255`` (its contract is [0, 255] input).
The loss is binary cross-entropy on the model's pre-sigmoid logit when the model
exposes one, so gradients do not vanish when the sigmoid saturates (a source of
false robustness).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cifake.model import logit_model
from cifake.progress import progress


class Attacker:
    """FGSM and PGD against one model; each call is a compiled TensorFlow function."""

    def __init__(self, model: keras.Model):
        logits = logit_model(model)
        if logits is not None:
            self._logits = logits
        else:  # a foreign model with no logit layer: invert the clipped probability
            self._logits = lambda x, training=False: _prob_to_logit(model(x, training=training))
        spec = [
            tf.TensorSpec([None, 32, 32, 3], tf.float32),
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.float32),
        ]
        self._fgsm = tf.function(self._fgsm_impl, input_signature=spec + [tf.TensorSpec([], tf.bool)])
        self._pgd = tf.function(self._pgd_impl, input_signature=spec + [tf.TensorSpec([], tf.int32)])

    def logits(self, x01: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Pre-sigmoid output for images on the 0-1 scale, shape (N,)."""
        return tf.reshape(self._logits(x01 * 255.0, training=training), [-1])

    def _grad(self, x01, y):
        with tf.GradientTape() as tape:
            tape.watch(x01)
            loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=self.logits(x01)))
        return tape.gradient(loss, x01)

    def _fgsm_impl(self, x01, y, eps, step, random_start):
        delta = tf.cond(
            random_start,
            lambda: tf.random.uniform(tf.shape(x01), -eps, eps),
            lambda: tf.zeros_like(x01),
        )
        start = tf.clip_by_value(x01 + delta, 0.0, 1.0)
        delta = tf.clip_by_value(start - x01 + step * tf.sign(self._grad(start, y)), -eps, eps)
        return tf.clip_by_value(x01 + delta, 0.0, 1.0)

    def _pgd_impl(self, x01, y, eps, step, steps):
        x = tf.clip_by_value(x01 + tf.random.uniform(tf.shape(x01), -eps, eps), 0.0, 1.0)
        for _ in tf.range(steps):
            x = x + step * tf.sign(self._grad(x, y))
            x = tf.clip_by_value(tf.clip_by_value(x, x01 - eps, x01 + eps), 0.0, 1.0)
        return x

    def fgsm(self, x01, y, eps: float, step: float | None = None, random_start: bool = False) -> tf.Tensor:
        """FGSM; with ``random_start`` it is the 'fast' variant of Wong et al. (2020).

        ``step`` defaults to ``eps`` (plain FGSM); Wong et al. use ``1.25 * eps`` with a random start.
        """
        step = eps if step is None else step
        return self._fgsm(*_args(x01, y, eps, step), tf.constant(random_start))

    def pgd(self, x01, y, eps: float, steps: int, step: float) -> tf.Tensor:
        """PGD with a uniform random start in the eps-ball and ``steps`` signed-gradient steps."""
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
) -> np.ndarray:
    """Attack uint8/float images in [0, 255]; return float32 adversarial images in [0, 255].

    ``method`` is ``"fgsm"`` (plain, step = eps) or ``"pgd"`` (random start,
    ``steps`` steps of ``step_fraction * eps``).
    """
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"unknown attack {method!r}; use 'fgsm' or 'pgd'")
    out = np.empty(x.shape, dtype=np.float32)
    desc = f"{method} eps={eps * 255:.3g}/255" + (f" x{steps}" if method == "pgd" else "")
    with progress(desc, total=len(x), summary=False) as bar:  # callers report the result
        for start in range(0, len(x), batch_size):
            xb = np.asarray(x[start : start + batch_size], dtype=np.float32) / 255.0
            yb = y[start : start + batch_size]
            if method == "fgsm":
                adv = attacker.fgsm(xb, yb, eps)
            else:
                adv = attacker.pgd(xb, yb, eps, steps=steps, step=step_fraction * eps)
            out[start : start + batch_size] = adv.numpy() * 255.0
            bar.update(len(xb))
    return out
