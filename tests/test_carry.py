"""ATTA's store: perturbations kept in a frame that flips and shifts do not move, and found again after them."""

import numpy as np
import pytest
import tensorflow as tf

from cifake.batches import PAD, draw_flip_and_shift, shifted
from cifake.carry import CarriedPerturbations, Geometry, placed, view

pytestmark = pytest.mark.model

SIDE = 32 + 2 * PAD


def _where(n, seed, index=None):
    flip, dy, dx = draw_flip_and_shift(n, np.random.default_rng(seed), PAD)
    index = np.arange(n) if index is None else np.asarray(index)
    return Geometry(*(tf.constant(a, tf.int32) for a in (index, flip.astype(np.int32), dy, dx)))


def test_view_shows_the_part_of_the_padded_frame_that_the_augmented_image_shows():
    """For a frame that is the reflect-padded image itself, view() is the batches' flip-and-shift of the image."""
    x = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    where = _where(16, 1)
    frames = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    flip, dy, dx = (w.numpy() for w in where[1:])
    assert np.array_equal(view(tf.constant(frames), where).numpy(), shifted(x, flip.astype(bool), dy, dx, PAD))


def test_placed_writes_the_crop_back_and_keeps_what_it_did_not_cover():
    rng = np.random.default_rng(0)
    frames = tf.constant(rng.uniform(-1, 1, (16, SIDE, SIDE, 3)).astype(np.float32))
    delta = tf.constant(rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32))
    where = _where(16, 2)
    out = placed(frames, delta, where)
    assert np.array_equal(view(out, where).numpy(), delta.numpy())  # found again where it was put
    changed = (out.numpy() != frames.numpy()).any(axis=-1).sum(axis=(1, 2))
    assert changed.max() == 32 * 32  # one image's worth of pixels per frame, no more
    unshifted = Geometry(where.index, where.flip, tf.fill([16], PAD), tf.fill([16], PAD))
    border = placed(frames, delta, unshifted).numpy()
    assert np.array_equal(border[:, :PAD], frames.numpy()[:, :PAD])  # a centre crop leaves the border alone


def test_the_store_starts_unseen_images_from_noise_and_seen_ones_from_their_last_perturbation():
    store = CarriedPerturbations(8)
    eps = 4 / 255
    first = _where(4, 3, index=[1, 3, 5, 7])
    start = store.start(first, eps, seed=0).numpy()
    assert 0 < np.abs(start).max() <= eps and len(np.unique(start)) > 100  # uniform noise in the ball
    delta = tf.constant(np.sign(np.random.default_rng(4).normal(size=(4, 32, 32, 3))).astype(np.float32) * 2 * eps)
    store.keep(first, delta)
    again = _where(4, 5, index=[7, 5, 3, 1])  # the same images, flipped and shifted otherwise, in another order
    kept = tf.gather(placed(tf.zeros((4, SIDE, SIDE, 3)), delta, first), [3, 2, 1, 0])  # in again's order
    got = store.start(again, eps, seed=0).numpy()
    np.testing.assert_allclose(got, np.clip(view(kept, again).numpy(), -eps, eps), atol=1e-5)  # carried, clipped
    assert store.seen.numpy().tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
