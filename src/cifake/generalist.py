"""A generalist detector in one Keras file: a detector joined with a CIFAR-10 classifier's doubt (issue 40).

The detector catches the fakes it was trained on (Stable Diffusion v1.4); a classifier trained on photographs
only is unsure of the objects other generators draw (its doubt, 1 - its largest class probability). Each score
becomes its *strangeness*: the share of real photographs (a reference set that neither model trained on) that
score lower, a smoothed empirical CDF. An image is as strange as its stranger score (the smaller p-value), and
the output crosses 0.5 where that strangeness called ``real_share`` of a second set of such photographs Real.

The output is a monotone score with the project's contract (float32 pixels in [0, 255] in, float32 in [0, 1]
out, a ``logits`` layer before the sigmoid), not a calibrated probability: only its 0.5 crossing is fitted.
Only built-in Keras layers are used, so the file loads with ``safe_mode=True``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from cifake.model import INPUT_SHAPE, LOGITS_LAYER

EDGE_LOGIT = 4.0  # the logit at strangeness 0 (minus this) and 1 (plus this): P(Fake) from 0.018 to 0.982


def joined_detector(
    detector: keras.Model,
    classifier: keras.Model,
    reference: np.ndarray,
    threshold_images: np.ndarray,
    real_share: float = 0.95,
    quantiles: int = 256,
) -> keras.Model:
    """``detector`` (pixels -> P(Fake)) and ``classifier`` (pixels -> class logits) joined into one model.

    ``reference`` and ``threshold_images`` are two sets of real photographs that neither model trained on: the
    first gives each score's CDF (``quantiles`` points), the second where the joined score calls ``real_share``
    of them Real.
    """
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    scores = _scores(pixels, detector, classifier)
    observed = keras.Model(pixels, scores, name="scores").predict(reference, batch_size=500, verbose=0)
    parts = zip(scores, observed, ("detector", "doubt"), strict=True)
    strangeness = layers.Maximum(name="strangeness")([_cdf(s, np.asarray(v), quantiles, name) for s, v, name in parts])
    joined = keras.Model(pixels, strangeness)
    threshold = float(np.quantile(joined.predict(threshold_images, batch_size=500, verbose=0), real_share))
    logits = _logit(strangeness, float(np.clip(threshold, 1.0e-3, 1 - 1.0e-3)))
    return keras.Model(pixels, layers.Activation("sigmoid", name="p_fake", dtype="float32")(logits), name="generalist")


def _scores(pixels, detector: keras.Model, classifier: keras.Model) -> list:
    """The two strangeness scores, each (N, 1), higher = stranger: P(Fake), and minus the largest class
    probability (the doubt, shifted by 1)."""
    probabilities = layers.Softmax(dtype="float32")(classifier(pixels))
    largest = layers.GlobalMaxPooling1D(dtype="float32")(layers.Reshape((-1, 1))(probabilities))
    return [detector(pixels), _fixed_dense(largest, np.array([[-1.0]]), np.zeros(1), "minus_largest")]


def _cdf(score, values: np.ndarray, quantiles: int, name: str):
    """The share of ``values`` below ``score`` (N, 1), smoothed: the mean of ``quantiles`` sigmoid steps, one at
    each quantile of ``values``, each as wide as the gap between its neighbours."""
    points = np.quantile(values.reshape(-1), (np.arange(quantiles) + 0.5) / quantiles)
    gaps = np.gradient(points)
    width = np.maximum(gaps, 1.0e-3 * max(float(np.ptp(points)), 1.0e-6))
    steps = _fixed_dense(score, (1 / width)[None, :], -points / width, f"{name}_steps", "sigmoid")
    return _fixed_dense(steps, np.full((quantiles, 1), 1 / quantiles), np.zeros(1), f"{name}_cdf")


def _logit(strangeness, threshold: float):
    """Piecewise-linear in the strangeness: -EDGE_LOGIT at 0, 0 at ``threshold``, +EDGE_LOGIT at 1."""
    below = _fixed_dense(strangeness, np.array([[EDGE_LOGIT / threshold]]), np.array([-EDGE_LOGIT]), "below")
    excess = _fixed_dense(strangeness, np.ones((1, 1)), np.array([-threshold]), "excess", "relu")
    bend = EDGE_LOGIT / (1 - threshold) - EDGE_LOGIT / threshold
    above = _fixed_dense(excess, np.array([[bend]]), np.zeros(1), "above")
    return layers.Add(name=LOGITS_LAYER, dtype="float32")([below, above])


def _fixed_dense(x, kernel: np.ndarray, bias: np.ndarray, name: str, activation: str | None = None):
    """``x`` through a frozen float32 Dense layer with the given weights."""
    dense = layers.Dense(kernel.shape[1], activation=activation, trainable=False, name=name, dtype="float32")
    out = dense(x)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return out
