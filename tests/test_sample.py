"""The offline sample: deterministic, in the CIFAKE layout, and genuinely two kinds of image."""

import hashlib

import numpy as np
import pytest

from cifake.dataset import Split, preprocess
from cifake.sample import generate_sample
from cifake.sources import list_raw

pytestmark = pytest.mark.data


def _digest(root) -> str:
    h = hashlib.sha256()
    for split, cls, path in list_raw(root):
        h.update(f"{split}/{cls}/{path.name}".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_sample_is_deterministic_and_in_layout(tmp_path):
    a = generate_sample(tmp_path / "a", train_per_class=30, test_per_class=10, seed=3)
    generate_sample(tmp_path / "b", train_per_class=30, test_per_class=10, seed=3)
    assert a["files"] == {"train/REAL": 30, "train/FAKE": 30, "test/REAL": 10, "test/FAKE": 10}
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate_sample(tmp_path / "c", train_per_class=30, test_per_class=10, seed=4)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_fakes_differ_from_reals_statistically(tmp_path):
    generate_sample(tmp_path / "raw", train_per_class=200, test_per_class=10, seed=0)
    preprocess(tmp_path / "raw", tmp_path / "p", tmp_path / "t", val_fraction=0.2, seed=0)
    train = Split.load(tmp_path / "p" / "train.npz")
    x = train.x.astype(np.float64)
    # high-frequency energy: the PCA+GMM generator keeps only smooth components
    hf = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
    assert hf[train.y == 1].mean() < hf[train.y == 0].mean()
