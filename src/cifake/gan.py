"""Small GANs that the project trains itself, to make training fakes of another family than diffusion (issue 40).

Nine of the ten generators in the validation set are GANs; a detector that saw only diffusion fakes does not
catch them. A GAN's generator leaves its own traces: its upsampling (``transpose`` convolutions as in DCGAN, or a
``nearest`` / ``bilinear`` resize then a convolution) and what its loss rewards. ``GanShape.loss`` picks the
classic non-saturating loss (``ns``, DCGAN, Radford et al. 2016) or the hinge loss with a spectrally normalised
discriminator (``hinge``, SNGAN, Miyato et al. 2018). keras-io's "DCGAN to generate face images" example is
the training loop's shape: one ``Model`` whose ``train_step`` takes a discriminator and a generator step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifake.generators import fit_resumably, float32_copy, training_precision, uint8_pixels, unit_pixels, upsample


@dataclass(frozen=True)
class GanShape:
    """Generator ``widths`` at 4, 8 and 16 px (the discriminator mirrors them), its ``upsample``, the ``loss``
    and the ``latent`` size."""

    widths: Sequence[int] = (256, 128, 64)
    upsample: str = "transpose"
    loss: str = "ns"
    latent: int = 128


def build_generator(shape: GanShape) -> keras.Model:
    """Latent vector -> 32x32 image in [-1, 1]: a dense 4x4 map, then :func:`decode`."""
    z = keras.Input((shape.latent,), name="latent")
    x = keras.layers.Dense(4 * 4 * shape.widths[0], use_bias=False)(z)
    x = keras.layers.Reshape((4, 4, shape.widths[0]))(x)
    return keras.Model(z, decode(x, shape), name=f"generator_{shape.upsample}")


def decode(x, shape: GanShape):
    """A generator's body: its 4x4 map ``x`` -> 32x32 image in [-1, 1], one upsampling per doubling (the last
    one makes the three colour channels, as in DCGAN)."""
    if shape.upsample not in ("nearest", "bilinear", "transpose"):
        raise ValueError(f"unknown upsampling {shape.upsample!r}: nearest, bilinear or transpose")
    for width in (*shape.widths[1:], 3):
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = upsample(x, width, shape.upsample)
    return keras.layers.Activation("tanh", dtype="float32")(x)


def build_discriminator(shape: GanShape) -> keras.Model:
    """32x32 image in [-1, 1] -> one logit; strided 4x4 convolutions, spectrally normalised for ``hinge``."""
    if shape.loss not in ("ns", "hinge"):
        raise ValueError(f"unknown GAN loss {shape.loss!r}: ns or hinge")

    def layer(inner: keras.layers.Layer) -> keras.layers.Layer:
        return keras.layers.SpectralNormalization(inner) if shape.loss == "hinge" else inner

    image = keras.Input((32, 32, 3), name="image")
    x = image
    for width in reversed(shape.widths):  # no bias: TF's remapper logs an error fusing conv + bias + LeakyReLU
        x = layer(keras.layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False))(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    logit = layer(keras.layers.Dense(1, dtype="float32"))(keras.layers.Flatten()(x))
    return keras.Model(image, logit, name=f"discriminator_{shape.loss}")


class Gan(keras.Model):
    """Trains a generator against a discriminator: each step updates the discriminator, then the generator."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, loss: str, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.loss_kind = loss
        self.seed = keras.random.SeedGenerator(seed)
        self.d_tracker = keras.metrics.Mean(name="d_loss")
        self.g_tracker = keras.metrics.Mean(name="g_loss")
        self.built = True  # both networks are built; keras.callbacks.BackupAndRestore asks before fit

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer):
        super().compile(optimizer=d_optimizer)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        d_optimizer.build(self.discriminator.trainable_variables)  # built now, a resumed run restores their state
        g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_tracker, self.g_tracker]

    def _loss_pair(self, real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(discriminator loss, generator loss) from the discriminator's logits on real and generated images; the
        generator's depends on ``fake_logits`` only."""
        if self.loss_kind == "hinge":
            d_loss = tf.reduce_mean(tf.nn.relu(1.0 - real_logits)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
            return d_loss, -tf.reduce_mean(fake_logits)
        d_loss = tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))
        return d_loss, tf.reduce_mean(tf.nn.softplus(-fake_logits))

    def _latents(self, n: tf.Tensor) -> tf.Tensor:
        return keras.random.normal((n, self.generator.input_shape[-1]), seed=self.seed)

    def train_step(self, data):
        real = unit_pixels(keras.utils.unpack_x_y_sample_weight(data)[0])
        n = tf.shape(real)[0]
        with tf.GradientTape() as tape:
            fake = self.generator(self._latents(n), training=True)
            logits = self.discriminator(real, training=True), self.discriminator(fake, training=True)
            d_loss, _ = self._loss_pair(*logits)
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, weights), weights, strict=True))
        with tf.GradientTape() as tape:
            fake_logits = self.discriminator(self.generator(self._latents(n), training=True), training=True)
            _, g_loss = self._loss_pair(tf.zeros_like(fake_logits), fake_logits)
        weights = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, weights), weights, strict=True))
        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_loss)
        return {"d_loss": self.d_tracker.result(), "g_loss": self.g_tracker.result()}


def train_gan(
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
    """Train a GAN on uint8 real images with ``Model.fit`` (Adam, beta1 0.5, as DCGAN); return the generator in
    float32. A killed run resumes after its last finished epoch (``keras.callbacks.BackupAndRestore``).
    ``on_epoch`` gets ``{"epoch": n, "d_loss": ..., "g_loss": ...}`` after each epoch."""
    with training_precision(precision, seed):
        generator = build_generator(shape)
        gan = Gan(generator, build_discriminator(shape), shape.loss, seed=seed)
        gan.compile(*(keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.999) for _ in range(2)))
        fit_resumably(gan, real, epochs, batch_size, seed, backup_dir, on_epoch)
    return float32_copy(build_generator(shape), generator)


def generate(generator: keras.Model, n: int, seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """``n`` uint8 images from the generator (deterministic for a seed)."""
    z = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1])).astype(np.float32)
    out = np.empty((n, *generator.output_shape[1:]), np.uint8)
    for lo in range(0, n, batch_size):  # called, not Model.predict: its tf.data graph logs an E0000 line
        out[lo : lo + batch_size] = uint8_pixels(generator(z[lo : lo + batch_size], training=False))
    return out


def load_generator(path: str | Path) -> keras.Model:
    """A generator saved with :func:`cifake.model.save_model` (built-in layers only)."""
    return keras.saving.load_model(path, compile=False, safe_mode=True)
