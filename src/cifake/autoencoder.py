"""Real photographs redrawn through a generator's body: fakes whose content is real and whose pixels are not.

A detector trained on fakes that look worse than photographs learns to spot bad images, not generated ones
(issue 40: our own 8-epoch GANs taught that and nothing carried over). AutoGAN (Zhang, Karaman and Chang,
"Detecting and Simulating Artifacts in GAN Fake Images", WIFS 2019) takes the generator's quality out of the
question: an autoencoder whose decoder is a GAN generator's body (:func:`cifake.gan.decode`) learns to redraw
real images, so a reconstruction shows the same scene as its photograph and differs only by what the decoder's
upsampling leaves behind. A detector trained on the pair can only learn those traces.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifake.gan import GanShape, decode
from cifake.generators import fit_resumably, float32_copy, training_precision, uint8_pixels, unit_pixels


def build_autoencoder(shape: GanShape) -> keras.Model:
    """32x32 image in [-1, 1] -> the same image redrawn: strided convolutions down to the 4x4 map a generator
    starts from, then the generator's body."""
    image = keras.Input((32, 32, 3), name="image")
    x = image
    for width in reversed(shape.widths):  # no bias: TF's remapper logs an error fusing conv + bias + LeakyReLU
        x = keras.layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.LeakyReLU(0.2)(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(shape.widths[0], 1)(x)
    return keras.Model(image, decode(x, shape), name=f"autoencoder_{shape.upsample}")


class Autoencoder(keras.Model):
    """Trains ``network`` to redraw uint8 images (mean absolute error in [-1, 1])."""

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.loss_tracker = keras.metrics.Mean(name="l1")
        self.built = True  # the network is built; keras.callbacks.BackupAndRestore asks before fit

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        images = unit_pixels(data)
        with tf.GradientTape() as tape:
            redrawn = tf.cast(self.network(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.abs(redrawn - images))
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.network.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_weights, strict=True))
        self.loss_tracker.update_state(loss)
        return {"l1": self.loss_tracker.result()}


def train_autoencoder(
    real: np.ndarray,
    shape: GanShape,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    precision: str,
    seed: int,
    backup_dir: str | Path,
    on_epoch: Callable[[dict], None] | None = None,
) -> keras.Model:
    """Train on uint8 real images with ``Model.fit`` (Adam); return the network in float32. A killed run resumes
    after its last finished epoch; ``on_epoch`` gets ``{"epoch": n, "l1": ...}`` after each epoch."""
    with training_precision(precision, seed):
        network = build_autoencoder(shape)
        model = Autoencoder(network)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        fit_resumably(model, real, epochs, batch_size, seed, backup_dir, on_epoch)
    return float32_copy(build_autoencoder(shape), network)


def redraw(network: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 images redrawn by a trained autoencoder, as uint8."""
    out = np.empty_like(images, dtype=np.uint8)
    for lo in range(0, len(images), batch_size):  # called, not Model.predict: its tf.data graph logs an E0000 line
        out[lo : lo + batch_size] = uint8_pixels(network(unit_pixels(images[lo : lo + batch_size]), training=False))
    return out
