"""Everyday image changes: JPEG re-encoding, blur, resizing, brightness, contrast, noise.

One implementation of each, used twice: ``evaluate`` scores the models under a
fixed suite of them (``params.yaml``), and training draws random ones as
augmentation (:func:`random_everyday`), so the detector learns not to depend on
details that a re-upload or a thumbnail destroys.

Every function takes and returns uint8 images ``(N, 32, 32, 3)``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

SIZE = 32


def jpeg(x: np.ndarray, quality: float, rng=None) -> np.ndarray:
    """Re-encode each image as JPEG at ``quality`` (1-95) and decode it again."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(round(quality)))
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def blur(x: np.ndarray, sigma: float, rng=None) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (edges reflected)."""
    blurred = gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=3.0)
    return _to_uint8(blurred)


def resize(x: np.ndarray, size: float, rng=None) -> np.ndarray:
    """Resize to ``size`` x ``size`` pixels and back to 32 x 32 (bicubic, antialiased)."""
    side = int(round(size))
    out = np.empty_like(x)
    for i, img in enumerate(x):
        scaled = Image.fromarray(img).resize((side, side), Image.Resampling.BICUBIC)
        out[i] = np.asarray(scaled.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    return out


def brightness(x: np.ndarray, delta: float, rng=None) -> np.ndarray:
    """Add ``delta`` grey levels to every pixel (clipped to 0-255)."""
    return _to_uint8(x.astype(np.float32) + delta)


def contrast(x: np.ndarray, factor: float, rng=None) -> np.ndarray:
    """Scale each image's deviation from its mean grey level by ``factor``."""
    xf = x.astype(np.float32)
    mean = xf.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8(mean + (xf - mean) * factor)


def noise(x: np.ndarray, sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Add Gaussian noise of ``sigma`` grey levels (seeded by ``rng``; seed 0 without one)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return _to_uint8(x.astype(np.float32) + rng.normal(0.0, sigma, x.shape).astype(np.float32))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


CORRUPTIONS: dict[str, Callable[..., np.ndarray]] = {
    "jpeg": jpeg,
    "blur": blur,
    "resize": resize,
    "brightness": brightness,
    "contrast": contrast,
    "noise": noise,
}


def corrupt(x: np.ndarray, kind: str, value: float, seed: int = 0) -> np.ndarray:
    """Apply the corruption ``kind`` at strength ``value`` to a batch (deterministic for a seed)."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; use one of {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[kind](np.asarray(x, dtype=np.uint8), value, rng=np.random.default_rng(seed))


# Strength ranges drawn from in training: wider than the evaluation suite, so that
# the model learns the kind of change, not a list of settings.
TRAINING_RANGES: dict[str, tuple[float, float]] = {
    "jpeg": (30.0, 95.0),
    "blur": (0.3, 1.5),
    "resize": (14.0, 30.0),
    "brightness": (-40.0, 40.0),
    "contrast": (0.6, 1.4),
    "noise": (1.0, 12.0),
}


def training_ranges(overrides: Mapping[str, Sequence[float]] | None = None) -> dict[str, tuple[float, float]]:
    """:data:`TRAINING_RANGES` with the strength range of the kinds in ``overrides`` replaced."""
    unknown = set(overrides or {}) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(f"unknown corruption {sorted(unknown)}; use any of {sorted(CORRUPTIONS)}")
    return {**TRAINING_RANGES, **{kind: (float(low), float(high)) for kind, (low, high) in (overrides or {}).items()}}


def random_everyday(
    x: np.ndarray, rng: np.random.Generator, probability: float, ranges: Mapping[str, Sequence[float]] = TRAINING_RANGES
) -> np.ndarray:
    """Give each image, with ``probability``, one random change of random strength.

    The kind is drawn uniformly from ``ranges`` (kind -> (low, high); by default :data:`TRAINING_RANGES`)
    and its strength uniformly in that range. ``resize`` also upscales (to 40-128 pixels and back) a
    third of the times it is drawn.
    """
    out = x.copy()
    kinds = sorted(ranges)
    for i in np.flatnonzero(rng.random(len(x)) < probability):
        kind = kinds[rng.integers(len(kinds))]
        low, high = ranges[kind]
        value = rng.uniform(low, high)
        if kind == "resize" and rng.random() < 1 / 3:
            value = rng.uniform(40.0, 128.0)
        out[i : i + 1] = CORRUPTIONS[kind](x[i : i + 1], value, rng=rng)
    return out
