"""Heatmaps that can fail: evidence placed in one region is found there, and randomised weights change them.

The localisation test trains a tiny detector (seconds) on a task whose evidence is known: a "fake" is a
smooth image with a patch of fine noise pasted somewhere, as a generated patch pasted into a real photo.
"""

import csv

import numpy as np
import pytest
from PIL import Image

from cifake.cli import EXIT_OK, EXIT_PARTIAL, main
from cifake.explain import METHODS, heatmap, overlay
from cifake.model import load_model, predict_proba

from .conftest import ROOT, write_image

pytestmark = pytest.mark.model

PATCH = 10
ROBUST = ROOT / "models" / "pretrained" / "cifake-robust.keras"


def _smooth(rng, n):
    """Smooth colour images: 4x4 random colours, upscaled bicubically to 32x32."""
    small = rng.integers(30, 225, (n, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((32, 32), Image.Resampling.BICUBIC)) for s in small])


def _paste(rng, images, corners):
    """Add a PATCH x PATCH square of fine noise at each (row, col) corner."""
    out = images.astype(np.float32)
    for img, (r, c) in zip(out, corners, strict=True):
        img[r : r + PATCH, c : c + PATCH] += rng.choice([-45.0, 45.0], (PATCH, PATCH, 3))
    return np.clip(out, 0, 255)


@pytest.fixture(scope="module")
def patch_detector():
    """A small CNN trained to call images with a pasted noise patch Fake (about 97 % or better)."""
    import keras

    from cifake.config import ModelParams
    from cifake.model import build_model

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    n = 1200
    real = _smooth(rng, n).astype(np.float32)
    corners = rng.integers(0, 32 - PATCH, (n, 2))
    fake = _paste(rng, _smooth(rng, n), corners)
    x, y = np.concatenate([real, fake]), np.concatenate([np.zeros(n), np.ones(n)])
    model = build_model(
        ModelParams(architecture="seed_cnn", widths=(16, 32), blocks_per_stage=1, dense_units=32, dropout=0.0)
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, shuffle=True, verbose=0)
    return model


# Mass inside the patch (one pixel of margin; 14 % of the image): integrated gradients measured 0.93-0.97,
# Grad-CAM (8x8 maps here) 0.46-0.53, spilling over its cells' edges (docs/demo.md). With ten views (flip x
# four 1-pixel shifts), each view's map must be moved back onto the image, or the mass lands mirrored or shifted.
@pytest.mark.parametrize("shift", [None, 1])
@pytest.mark.parametrize(("method", "least"), [("integrated-gradients", 0.8), ("grad-cam", 0.35)])
def test_most_of_the_heatmap_lies_on_the_pasted_patch(patch_detector, method, least, shift):
    from cifake.model import with_flip_average

    model = patch_detector if shift is None else with_flip_average(patch_detector, shift)
    rng = np.random.default_rng(7)
    corners = np.array([[2, 3], [18, 20], [5, 19], [20, 4], [11, 11], [0, 22]])
    x = _paste(rng, _smooth(rng, len(corners)), corners)
    assert np.all(predict_proba(model, x) > 0.9), "the detector did not learn the patch"
    heat = heatmap(model, x, method)
    assert heat.shape == (len(x), 32, 32) and np.allclose(heat.sum(axis=(1, 2)), 1.0)
    for h, (r, c) in zip(heat, corners, strict=True):
        inside = h[max(r - 1, 0) : r + PATCH + 1, max(c - 1, 0) : c + PATCH + 1].sum()
        assert inside > least, f"{method}: only {inside:.2f} of the mass on the patch at {(r, c)} (area 14 %)"


@pytest.mark.parametrize("method", METHODS)
def test_heatmap_changes_when_the_weights_are_randomised(method):
    """Adebayo et al. 2018: a map that survives randomising the model explains the image, not the model."""
    import keras

    from cifake.sample import generate_sample

    model = load_model(ROBUST)
    random = keras.models.clone_model(model)  # same architecture, freshly initialised weights
    keras.utils.set_random_seed(3)
    random.set_weights([np.random.default_rng(i).normal(0, 0.05, w.shape) for i, w in enumerate(model.get_weights())])
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in _sample_files(generate_sample)]).astype(np.float32)
    trained, randomised = heatmap(model, x, method), heatmap(random, x, method)
    rank = [_spearman(a, b) for a, b in zip(trained, randomised, strict=True)]
    assert np.mean(rank) < 0.5, f"{method}: the maps hardly change with random weights (rank correlation {rank})"
    assert np.mean([_spearman(a, a) for a in trained]) > 0.99  # the measure itself can say "the same"


def _sample_files(generate_sample, tmp=None):
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp())
    generate_sample(root / "raw", train_per_class=2, test_per_class=4, seed=5)
    return sorted((root / "raw" / "test").rglob("*.jpg"))


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a.ravel())), np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_grad_cam_sees_the_views_the_model_averages(patch_detector, shift):
    """The views Grad-CAM averages are the model's own: their mean logit is the model's logit."""
    from cifake.explain import _as_seen, _views
    from cifake.model import SINGLE_VIEW, logit_model, with_flip_average

    model = with_flip_average(patch_detector, shift)
    x = _smooth(np.random.default_rng(2), 3).astype(np.float32)
    net, views = model.get_layer(SINGLE_VIEW), _views(model)
    mean = np.mean([net(_as_seen(x, *view)).numpy() for view in views], axis=0)
    assert len(views) == (10 if shift else 2) and len(set(views)) == len(views)
    np.testing.assert_allclose(mean, logit_model(model)(x).numpy(), rtol=1e-4, atol=1e-4)


def test_a_view_map_moves_back_onto_the_image():
    from cifake.explain import _as_seen, _moved_back

    heat = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    for view in [(False, 1, -1), (True, -2, 2), (True, 0, 0)]:
        back = _moved_back(_as_seen(heat, *view), *view).numpy()
        inner = slice(2, 30)  # reflected edges are not invertible
        np.testing.assert_array_equal(back[:, inner, inner], heat[:, inner, inner])


def test_overlay_is_an_enlarged_rgb_picture():
    image = np.zeros((32, 32, 3), np.uint8)
    heat = np.zeros((32, 32), np.float32)
    heat[:4, :4] = 1.0
    out = overlay(image, heat)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert out[:16, :16].mean() > 100 and out[200:, 200:].max() < 10  # colour only where the evidence is


def test_explain_folder_writes_one_png_per_image_and_reports_bad_files(tmp_path, tiny_model_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.jpg")
    write_image(src / "nested" / "b.png", size=(300, 200), fmt="PNG")
    (src / "broken.jpg").write_bytes(b"not an image")
    code = main(["explain", str(src), "-o", str(out), "--model", str(tiny_model_path)])
    assert code == EXIT_PARTIAL
    assert Image.open(out / "a.jpg.heatmap.png").size == (256, 256)
    assert Image.open(out / "nested" / "b.png.heatmap.png").size == (256, 256)
    with open(out / "errors.csv", newline="") as fh:
        assert [r["Image Name"] for r in csv.DictReader(fh)] == ["broken.jpg"]
    with open(out / "heatmaps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Image Name"] for r in rows] == ["a.jpg", "nested/b.png"]
    assert "skipped: broken.jpg" in capsys.readouterr().err
    (src / "broken.jpg").unlink()
    assert main(["explain", str(src), "-o", str(out), "--model", str(tiny_model_path)]) == EXIT_OK
