"""Shared fixtures: tiny images, folders and models made on the fly (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_image(path: Path, size=(32, 32), mode="RGB", fmt=None, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}.get(mode, 3)
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr.squeeze() if channels == 1 else arr, mode if mode in ("RGB", "RGBA", "L") else "RGB")
    if mode not in ("RGB", "RGBA", "L"):
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None:
        fmt = "PNG" if mode == "RGBA" else "JPEG"
    img.save(path, format=fmt)
    return path


def make_layout(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """A tiny raw CIFAKE layout: train|test/REAL|FAKE with random JPEGs."""
    for s, split in enumerate(("train", "test")):
        for c, cls in enumerate(("REAL", "FAKE")):
            for i in range(per_class):
                write_image(root / split / cls / f"{i} ({s}{c}).jpg", seed=seed * 1000 + s * 100 + c * 10 + i)
    return root


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained seed CNN (weights seeded): enough to check contracts, not accuracy."""
    import keras

    from cifake.config import ModelParams
    from cifake.model import build_model

    keras.utils.set_random_seed(0)
    return build_model(ModelParams(architecture="seed_cnn", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0))


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model, tmp_path_factory) -> Path:
    from cifake.model import save_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(tiny_model, path)
    return path
