"""Everyday changes: each really changes the image, is deterministic under a seed, keeps shape and dtype."""

import numpy as np
import pytest

from cifake.corruptions import CORRUPTIONS, TRAINING_RANGES, corrupt, random_everyday, training_ranges

pytestmark = pytest.mark.data

SUITE = [
    ("jpeg", 50),
    ("jpeg", 75),
    ("noise", 8),
    ("blur", 0.5),
    ("blur", 1.0),
    ("resize", 24),
    ("resize", 128),
    ("brightness", 20),
    ("brightness", -20),
    ("contrast", 1.3),
    ("gamma", 0.6),
    ("saturation", 0.3),
    ("sharpen", 150),
    ("rotate", 5),
    ("zoom", 26),
    ("webp", 50),
]


def test_the_suite_above_covers_every_kind():
    assert {kind for kind, _ in SUITE} == set(CORRUPTIONS)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    smooth = np.linspace(40, 215, 32, dtype=np.float32)[None, :, None, None] * np.ones((8, 32, 32, 3), np.float32)
    return np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("kind", "value"), SUITE)
def test_each_change_changes_the_image_and_keeps_its_form(images, kind, value):
    out = corrupt(images, kind, value, seed=1)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - images.astype(int)).mean() > 0.5, f"{kind}={value} left the images as they were"
    assert np.array_equal(out, corrupt(images, kind, value, seed=1))  # deterministic under a seed


def test_stronger_means_further(images):
    for kind, weak, strong in (("blur", 0.5, 1.5), ("jpeg", 90, 20), ("resize", 28, 12), ("noise", 2, 16)):
        dist = [np.abs(corrupt(images, kind, v).astype(int) - images.astype(int)).mean() for v in (weak, strong)]
        assert dist[1] > dist[0], kind


def test_blur_is_a_gaussian_of_the_given_sigma():
    impulse = np.zeros((1, 32, 32, 3), np.uint8)
    impulse[0, 16, 16] = 255
    out = corrupt(impulse, "blur", 1.0)[0, :, :, 0].astype(float)
    assert out.argmax() == 16 * 32 + 16
    assert out[16, 17] / out[16, 16] == pytest.approx(np.exp(-0.5), abs=0.05)  # one sigma away


def test_brightness_adds_levels_and_clips():
    x = np.array([[[[0, 100, 250]]]], np.uint8).repeat(2, axis=1)
    assert corrupt(x, "brightness", 20)[0, 0, 0].tolist() == [20, 120, 255]


def test_noise_depends_on_the_seed(images):
    assert not np.array_equal(corrupt(images, "noise", 8, seed=1), corrupt(images, "noise", 8, seed=2))


def test_unknown_kind_is_refused(images):
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "posterize", 4)


def test_random_everyday_changes_about_the_given_share(images):
    x = np.repeat(images, 25, axis=0)  # 200 images
    out = random_everyday(x, np.random.default_rng(0), probability=0.5)
    changed = np.any(out != x, axis=(1, 2, 3)).mean()
    assert 0.35 < changed < 0.6  # a few drawn changes (e.g. mild brightness on a clipped pixel) may be no-ops
    assert np.array_equal(out, random_everyday(x, np.random.default_rng(0), probability=0.5))
    assert np.array_equal(random_everyday(x, np.random.default_rng(0), probability=0.0), x)
    assert set(TRAINING_RANGES) <= set(CORRUPTIONS)  # training draws from a subset of the kinds


def test_random_everyday_draws_kind_and_strength_from_the_given_ranges(images):
    out = random_everyday(images, np.random.default_rng(0), probability=1.0, ranges={"brightness": (30.0, 30.0)})
    assert np.array_equal(out, corrupt(images, "brightness", 30))
    wide = random_everyday(images, np.random.default_rng(0), probability=1.0, ranges={"contrast": (0.2, 0.3)})
    assert wide.std(axis=(1, 2, 3)).max() < 0.35 * images.std(axis=(1, 2, 3)).min()


def test_training_ranges_replace_only_the_kinds_named():
    assert training_ranges(None) == TRAINING_RANGES
    wide = training_ranges({"contrast": [0.4, 1.6]})
    assert wide["contrast"] == (0.4, 1.6) and {k: v for k, v in wide.items() if k != "contrast"} == {
        k: v for k, v in TRAINING_RANGES.items() if k != "contrast"
    }
    with pytest.raises(ValueError, match="unknown corruption"):
        training_ranges({"posterize": (2.0, 6.0)})
    assert training_ranges({"gamma": (0.7, 1.4)}) == {**TRAINING_RANGES, "gamma": (0.7, 1.4)}  # a kind training adds


def test_neutral_strengths_leave_the_image_alone(images):
    for kind, neutral in (("gamma", 1.0), ("saturation", 1.0), ("sharpen", 0), ("zoom", 32), ("rotate", 0)):
        assert np.array_equal(corrupt(images, kind, neutral), images), kind


def test_gamma_saturation_rotate_and_zoom_do_what_they_say(images):
    level = np.full((1, 2, 2, 3), 64, np.uint8)
    assert corrupt(level, "gamma", 0.5)[0, 0, 0, 0] == 128  # 255 * (64 / 255) ** 0.5 = 127.7
    grey = corrupt(images, "saturation", 0.0)
    assert np.all(np.ptp(grey.astype(int), axis=3) <= 1)  # no colour left
    assert np.array_equal(corrupt(images, "rotate", 90), np.rot90(images, 1, axes=(1, 2)))  # counter-clockwise
    framed = np.zeros((1, 32, 32, 3), np.uint8)
    framed[:, 4:28, 4:28] = 200  # a dark 4-pixel frame around a bright centre
    assert np.all(corrupt(framed, "zoom", 16) == 200)  # the central 16 x 16 pixels fill the image: no frame left
    assert corrupt(framed, "zoom", 30).min() < 100  # a 30-pixel crop keeps some of the frame
