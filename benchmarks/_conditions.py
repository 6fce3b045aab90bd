"""Shared by the benchmark scripts: the card's "unseen" everyday changes and the ``--condition`` parser."""

from __future__ import annotations

# Harsher settings than params.yaml's suite, and a kind (contrast) it does not list; three (JPEG 15, blur 2,
# noise 16) lie outside the training ranges. The model card's "unseen" tables score exactly these.
UNSEEN = {
    "jpeg_q30": ("jpeg", 30.0),
    "jpeg_q15": ("jpeg", 15.0),
    "blur_1.5": ("blur", 1.5),
    "blur_2.0": ("blur", 2.0),
    "resize_20": ("resize", 20.0),
    "resize_16": ("resize", 16.0),
    "noise_16": ("noise", 16.0),
    "contrast_0.6": ("contrast", 0.6),
    "brightness_up40": ("brightness", 40.0),
    "brightness_down40": ("brightness", -40.0),
}

# Kinds no model was trained on (none is in cifake.corruptions.TRAINING_RANGES), at moderate strengths: the
# model card's "novel" table. A detector that only learnt its training list would fall on these.
NOVEL = {
    "gamma_0.6": ("gamma", 0.6),
    "gamma_1.6": ("gamma", 1.6),
    "saturation_0.3": ("saturation", 0.3),
    "saturation_1.8": ("saturation", 1.8),
    "sharpen_150": ("sharpen", 150.0),
    "rotate_5": ("rotate", 5.0),
    "zoom_26": ("zoom", 26.0),
    "webp_q50": ("webp", 50.0),
}


def parse_conditions(items: list[str]) -> dict[str, tuple[str, float]]:
    """``["blur_1.5=blur:1.5", ...]`` → ``{"blur_1.5": ("blur", 1.5), ...}``; ValueError names a malformed item."""
    suite = {}
    for item in items:
        name, _, spec = item.partition("=")
        kind, _, value = spec.partition(":")
        try:
            suite[name] = (kind, float(value))
        except ValueError:
            raise ValueError(f"--condition {item!r}: expected NAME=KIND:VALUE, e.g. blur_1.5=blur:1.5") from None
    return suite
