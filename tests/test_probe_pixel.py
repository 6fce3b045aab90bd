"""The generalisation probe's PixelCNN (benchmarks/probe/pixel.py, issue 40): a code length is only a
likelihood if no sub-pixel's prediction sees that sub-pixel or any after it."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def pixel():
    load_benchmark("generalisation_probe")  # its folder on the path: its steps live in benchmarks/probe
    return importlib.import_module("probe.pixel")


@pytest.mark.parametrize(("row", "col", "channel"), [(0, 0, 0), (10, 12, 1), (31, 31, 2)])
def test_a_changed_sub_pixel_moves_only_later_predictions(pixel, row, col, channel):
    model = pixel.pixel_net(width=8, blocks=2, hidden=8)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    changed = images.copy()
    changed[:, row, col, channel] = 255 - changed[:, row, col, channel]
    moved = np.abs(np.asarray(model(changed)) - np.asarray(model(images))).max(axis=(0, 4)) > 1e-6  # (32, 32, 6)
    earlier = np.zeros((32, 32, 6), bool)
    earlier[:row] = True
    earlier[row, :col] = True
    earlier[row, col, : 2 * channel + 1] = True  # up to and with the changed value's high nibble
    assert not moved[earlier].any()
    assert moved[row, col, 2 * channel + 1]  # the low nibble's head sees the flipped high nibble


def test_code_lengths_are_bits_per_sub_pixel(pixel):
    model = pixel.pixel_net(width=8, blocks=1, hidden=8)
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    nll, entropy = pixel.coding_costs(model, images, batch=2)
    assert nll.shape == entropy.shape == (3,)
    # an untrained model is near uniform over each 4-bit symbol: about 8 bits per sub-pixel, never above 8 expected
    assert np.all(np.abs(nll - 8) < 1.0) and np.all(entropy <= 8 + 1e-6)
    assert np.array_equal(pixel.nibbles(np.array([[[[0xAB, 0x01, 0xF0]]]], np.uint8))[0, 0, 0], [10, 11, 0, 1, 15, 0])
