"""Perturbations carried across epochs (ATTA, Zheng et al. 2020): each image's last perturbation starts its next attack.

Fast adversarial training starts every FGSM step from fresh noise. ATTA instead keeps, per training image, the
perturbation its last attack found and starts the next epoch's FGSM step from it (clipped to the epsilon of the
moment), so one gradient per image per epoch accumulates into a multi-step attack across epochs, at FGSM's cost.
An image not attacked before starts from uniform noise, as random-start FGSM does.

Training images are flipped and shifted (:mod:`cifake.batches`), so a perturbation is stored in one frame that
does not move: the image's unflipped, padded frame (``32 + 2 * PAD`` pixels a side). :func:`view` cuts an augmented
image's perturbation out of it and :func:`placed` puts one back; positions the crop did not cover keep theirs.
The store is float16 (a perturbation of a few 1/255 loses nothing that matters in 11 bits) and part of the
trainer's weights, so a checkpoint saves it and a resumed run carries on from it.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from cifake.batches import PAD

SIZE = 32


class Geometry(NamedTuple):
    """Where each image of a batch came from: its index in the training set, whether it was mirrored, and the
    top-left corner (``dy``, ``dx``) of its crop of the padded image (``PAD``, ``PAD``: not shifted)."""

    index: tf.Tensor
    flip: tf.Tensor
    dy: tf.Tensor
    dx: tf.Tensor

    def head(self, n) -> Geometry:
        """The geometry of the first ``n`` images."""
        return Geometry(*(t[:n] for t in self))


def _flip_where(frames, flip):
    return tf.where(tf.reshape(tf.cast(flip, tf.bool), [-1, 1, 1, 1]), tf.reverse(frames, axis=[2]), frames)


def view(frames, where: Geometry):
    """The part of each padded frame that its augmented image shows: mirrored if flipped, cropped at (dy, dx)."""
    mirrored = _flip_where(frames, where.flip)
    rows = tf.gather(mirrored, where.dy[:, None] + tf.range(SIZE), axis=1, batch_dims=1)
    return tf.gather(rows, where.dx[:, None] + tf.range(SIZE), axis=2, batch_dims=1)


def placed(frames, delta, where: Geometry):
    """``frames`` with each augmented image's ``delta`` written back where :func:`view` cut it out."""
    side = SIZE + 2 * PAD
    r, c = tf.range(side)[None, :] - where.dy[:, None], tf.range(side)[None, :] - where.dx[:, None]
    inside = ((r >= 0) & (r < SIZE))[:, :, None] & ((c >= 0) & (c < SIZE))[:, None, :]
    rows = tf.gather(delta, tf.clip_by_value(r, 0, SIZE - 1), axis=1, batch_dims=1)
    spread = tf.gather(rows, tf.clip_by_value(c, 0, SIZE - 1), axis=2, batch_dims=1)
    mirrored = tf.where(inside[..., None], spread, _flip_where(frames, where.flip))
    return _flip_where(mirrored, where.flip)


class CarriedPerturbations(keras.layers.Layer):
    """The last perturbation of each of ``images`` training images, and whether it has one yet."""

    def __init__(self, images: int, **kwargs):
        super().__init__(name="carried_perturbations", **kwargs)
        side = SIZE + 2 * PAD
        self.frames = self.add_weight(
            shape=(images, side, side, 3), initializer="zeros", dtype="float16", trainable=False, name="frames"
        )
        self.seen = self.add_weight(shape=(images,), initializer="zeros", dtype="float32", trainable=False, name="seen")
        self.built = True

    def start(self, where: Geometry, eps, seed) -> tf.Tensor:
        """Each image's starting perturbation: its carried one clipped to ``eps``, else uniform noise in the ball."""
        carried = view(tf.cast(tf.gather(self.frames, where.index), tf.float32), where)
        noise = keras.random.uniform(tf.shape(carried), -eps, eps, seed=seed)
        seen = tf.reshape(tf.gather(self.seen, where.index) > 0, [-1, 1, 1, 1])
        return tf.where(seen, tf.clip_by_value(carried, -eps, eps), noise)

    def keep(self, where: Geometry, delta) -> None:
        """Store each image's new perturbation ``delta`` (augmented frame, 0-1 scale) for its next attack."""
        frames = tf.cast(tf.gather(self.frames, where.index), tf.float32)
        self.frames.value.scatter_update(
            tf.IndexedSlices(tf.cast(placed(frames, delta, where), tf.float16), where.index)
        )
        self.seen.value.scatter_update(tf.IndexedSlices(tf.ones_like(where.index, tf.float32), where.index))
