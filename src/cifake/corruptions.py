"""Everyday image changes: JPEG re-encoding, blur, resizing, brightness, contrast, noise, and more.

One implementation of each, used twice: ``evaluate`` scores the models under a
fixed suite of them (``params.yaml``), and training draws random ones as
augmentation (:func:`random_everyday`), so the detector learns not to depend on
details that a re-upload or a thumbnail destroys. Training draws only the kinds
of :data:`TRAINING_RANGES` (unless ``everyday_ranges`` names more); the others
(gamma, saturation, sharpening, rotation, zoom, WebP) measure changes a model
never saw.

Every function takes and returns uint8 images ``(N, 32, 32, 3)``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy.ndimage import gaussian_filter
from scipy.ndimage import rotate as nd_rotate

SIZE = 32


def jpeg(x: np.ndarray, quality: float, rng=None) -> np.ndarray:
    """Re-encode each image as JPEG at ``quality`` (1-95) and decode it again."""
    return _reencode(x, "JPEG", quality)


def blur(x: np.ndarray, sigma: float, rng=None) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (edges reflected)."""
    blurred = gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=3.0)
    return _to_uint8(blurred)


def resize(x: np.ndarray, size: float, rng=None) -> np.ndarray:
    """Resize to ``size`` x ``size`` pixels and back to 32 x 32 (bicubic, antialiased)."""
    side, bicubic = int(round(size)), Image.Resampling.BICUBIC
    return _each(x, lambda img: img.resize((side, side), bicubic).resize((SIZE, SIZE), bicubic))


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


def gamma(x: np.ndarray, exponent: float, rng=None) -> np.ndarray:
    """Gamma curve: each level ``v`` becomes ``255 * (v / 255) ** exponent`` (< 1 brightens the shadows)."""
    return _to_uint8(255.0 * (x.astype(np.float32) / 255.0) ** exponent)


def saturation(x: np.ndarray, factor: float, rng=None) -> np.ndarray:
    """Scale colour saturation by ``factor`` (0: greyscale, 1: unchanged; PIL's ``ImageEnhance.Color``)."""
    return _each(x, lambda img: ImageEnhance.Color(img).enhance(factor))


def sharpen(x: np.ndarray, percent: float, rng=None) -> np.ndarray:
    """Unsharp mask of radius 1 px and strength ``percent`` (PIL's ``ImageFilter.UnsharpMask``)."""
    return _each(x, lambda img: img.filter(ImageFilter.UnsharpMask(radius=1, percent=int(round(percent)), threshold=0)))


def rotate(x: np.ndarray, degrees: float, rng=None) -> np.ndarray:
    """Rotate by ``degrees`` about the centre (bilinear; edges reflected, so no black corners)."""
    turned = nd_rotate(x.astype(np.float32), degrees, axes=(2, 1), reshape=False, order=1, mode="reflect")
    return _to_uint8(turned)


def zoom(x: np.ndarray, side: float, rng=None) -> np.ndarray:
    """Crop the central ``side`` x ``side`` pixels and scale them back to 32 x 32 (bicubic)."""
    side = int(round(side))
    lo = (SIZE - side) // 2
    box = (lo, lo, lo + side, lo + side)
    return _each(x, lambda img: img.resize((SIZE, SIZE), Image.Resampling.BICUBIC, box=box))


def webp(x: np.ndarray, quality: float, rng=None) -> np.ndarray:
    """Re-encode each image as lossy WebP at ``quality`` (0-100) and decode it again."""
    return _reencode(x, "WEBP", quality)


def _reencode(x: np.ndarray, image_format: str, quality: float) -> np.ndarray:
    def encode(img):
        buf = io.BytesIO()
        img.save(buf, format=image_format, quality=int(round(quality)))
        return Image.open(buf).convert("RGB")

    return _each(x, encode)


def _each(x: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.empty_like(x)
    for i, img in enumerate(x):
        out[i] = np.asarray(change(Image.fromarray(img)))
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


CORRUPTIONS: dict[str, Callable[..., np.ndarray]] = {
    "jpeg": jpeg,
    "blur": blur,
    "resize": resize,
    "brightness": brightness,
    "contrast": contrast,
    "noise": noise,
    "gamma": gamma,
    "saturation": saturation,
    "sharpen": sharpen,
    "rotate": rotate,
    "zoom": zoom,
    "webp": webp,
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
    """:data:`TRAINING_RANGES` with the strength range of the kinds in ``overrides`` replaced (or added)."""
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
