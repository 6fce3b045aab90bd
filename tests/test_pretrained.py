"""The shipped weights: intact, safely loadable, and used by `cifake predict` by default."""

import csv

import numpy as np
import pytest

from cifake.cli import DEFAULT_MODEL, EXIT_OK, main
from cifake.fileio import sha256_file
from cifake.images import load_image
from cifake.model import load_model
from cifake.sample import generate_sample

from .conftest import ROOT

pytestmark = pytest.mark.model

PRETRAINED = ROOT / "models" / "pretrained"


def _checksums(folder) -> dict[str, str]:
    """File name -> sha256 as listed in ``folder``'s SHA256SUMS."""
    lines = (folder / "SHA256SUMS").read_text().split("\n")
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_every_shipped_model_is_listed_and_intact():
    """Each shipped file has its checksum in SHA256SUMS, and it matches; nothing listed is missing."""
    listed = _checksums(PRETRAINED)
    assert {p.name for p in PRETRAINED.glob("*.keras")} == set(listed), "SHA256SUMS and the .keras files differ"
    for name, digest in listed.items():
        assert sha256_file(PRETRAINED / name) == digest, name


def test_only_the_models_a_user_picks_from_are_in_the_tree():
    """At most four model files (three CIFAKE detectors and the generalist), none in subfolders: candidates live
    in git history, DVC and MLflow."""
    assert len(list(PRETRAINED.glob("*.keras"))) <= 4
    assert list(PRETRAINED.rglob("*/*.keras")) == []


def test_default_model_is_the_shipped_robust_one(tmp_path):
    """`cifake predict` without --model classifies exactly as with the shipped robust file."""
    generate_sample(tmp_path / "raw", train_per_class=10, test_per_class=30, seed=3)
    outputs = []
    for extra in (
        [],
        ["--model", str(PRETRAINED / "cifake-robust.keras")],
        ["--model", str(PRETRAINED / "cifake-clean.keras")],
    ):
        out = tmp_path / f"out{len(outputs)}.csv"
        assert main(["predict", str(tmp_path / "raw" / "test"), "-o", str(out), "--scores", *extra]) == EXIT_OK
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]  # the two shipped models differ, so the comparison can fail
    model = load_model(DEFAULT_MODEL)  # safe_mode=True inside
    p = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32)))
    assert p.shape == (2, 1) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))


def test_predict_generated_images_with_the_shipped_model(tmp_path):
    generate_sample(tmp_path / "raw", train_per_class=10, test_per_class=10, seed=7)
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "raw" / "test"), "-o", str(out)]) == EXIT_OK
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    model = load_model(DEFAULT_MODEL)
    paths = [tmp_path / "raw" / "test" / r["Image Name"] for r in rows]
    p = np.reshape(model(np.stack([load_image(q) for q in paths]).astype(np.float32)), [-1])
    assert [r["Predicted Label"] for r in rows] == ["Fake" if v >= 0.5 else "Real" for v in p]


def test_every_shipped_file_has_its_measured_generalisation():
    """generalisation.json holds figures for each shipped file as it is now (same sha256), so `cifake predict`
    and the demo quote measured figures, never none or a stale file's."""
    from cifake.generalisation import figures_for

    for path in sorted(PRETRAINED.glob("*.keras")):
        assert figures_for(path) is not None, f"{path.name}: no figures for this file in generalisation.json"


def test_generalist_file_is_a_plain_deterministic_detector():
    """The generalist (the robust detector joined with a classifier's doubt) loads safely, keeps the contract,
    and gives the same output on every call: no random layer augments when it is called without training=False."""
    model = load_model(PRETRAINED / "cifake-generalist.keras")  # safe_mode=True inside
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    first, second = np.asarray(model(images)), np.asarray(model(images))
    assert first.shape == (8, 1) and first.dtype == np.float32 and np.all((first >= 0) & (first <= 1))
    np.testing.assert_array_equal(first, second)
