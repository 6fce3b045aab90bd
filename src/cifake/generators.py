"""Small image generators that the project trains itself, to make training fakes (issue 40).

The detector learnt Stable Diffusion v1.4 at 32x32, not generated images: fakes from other generators pass as
photographs. This module trains a tiny denoising diffusion model on real 32x32 photographs and makes fakes with
it in two ways (keras-io's "Denoising Diffusion Implicit Models" example is the model's shape):

- ``sample``: new images from pure noise, in a few deterministic DDIM steps (Song et al. 2021);
- ``resynthesise``: a real image noised part of the way and denoised again (SDEdit, Meng et al. 2022): the
  fake keeps the photograph's content and carries the network's traces, so it is hard to tell apart.

The network works on pixels scaled to [-1, 1]; the functions here take and give uint8 pixels. Fakes are saved
as JPEG quality 75 by the caller (the encoding of every CIFAKE image), so that a detector cannot learn the file
format instead of the generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

MIN_SIGNAL = 0.02  # signal rate at t = 1 (the noisiest step)
MAX_SIGNAL = 0.95  # signal rate at t = 0
EMBEDDING_DIMS = 32


@dataclass(frozen=True)
class DenoiserShape:
    """The U-Net: channel ``widths`` per resolution, ``blocks`` residual blocks at each, and how it upsamples
    (``nearest`` or ``bilinear`` resize then a convolution, or a ``transpose`` convolution)."""

    widths: Sequence[int] = (32, 64, 96)
    blocks: int = 1
    upsample: str = "nearest"


def diffusion_rates(t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Noise and signal rates at diffusion times ``t`` in [0, 1] (cosine schedule, squares sum to one)."""
    start, end = math.acos(MAX_SIGNAL), math.acos(MIN_SIGNAL)
    angles = start + t * (end - start)
    return tf.sin(angles), tf.cos(angles)


@keras.saving.register_keras_serializable(package="cifake")
class NoiseEmbedding(keras.layers.Layer):
    """Sinusoidal embedding of the noise variance, as in keras-io's DDIM example."""

    def call(self, noise_variance):
        frequencies = tf.exp(tf.linspace(math.log(1.0), math.log(1000.0), EMBEDDING_DIMS // 2))
        angles = 2.0 * math.pi * frequencies * tf.cast(noise_variance, tf.float32)
        return tf.cast(tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], EMBEDDING_DIMS)


@keras.saving.register_keras_serializable(package="cifake")
class NearestUpsampling(keras.layers.Layer):
    """Nearest-neighbour upsampling by 2, as ``UpSampling2D`` (depth-to-space of four copies): the gradient of
    ``UpSampling2D``'s resize logs a oneDNN error line on every training run on some CPUs."""

    def call(self, x):
        return tf.nn.depth_to_space(tf.concat([x] * 4, axis=-1), 2)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, c)


def _residual(x, width: int):
    skip = x if x.shape[-1] == width else keras.layers.Conv2D(width, 1)(x)
    x = keras.layers.BatchNormalization(center=False, scale=False)(x)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="swish")(x)
    x = keras.layers.Conv2D(width, 3, padding="same")(x)
    return keras.layers.Add()([x, skip])


def upsample(x, width: int, kind: str):
    """Double ``x``'s height and width to ``width`` channels: a ``transpose`` convolution, or a ``nearest`` or
    ``bilinear`` resize then a convolution (each leaves its own traces in what a generator makes)."""
    if kind == "transpose":
        return keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same")(x)
    x = NearestUpsampling()(x) if kind == "nearest" else keras.layers.UpSampling2D(2, interpolation=kind)(x)
    return keras.layers.Conv2D(width, 3, padding="same")(x)


def build_denoiser(shape: DenoiserShape = DenoiserShape(), size: int = 32) -> keras.Model:
    """The U-Net that predicts the noise in a noisy image, given the noise variance."""
    if shape.upsample not in ("nearest", "bilinear", "transpose"):
        raise ValueError(f"unknown upsampling {shape.upsample!r}: nearest, bilinear or transpose")
    noisy = keras.Input((size, size, 3), name="noisy")
    variance = keras.Input((1, 1, 1), name="noise_variance")
    e = NoiseEmbedding()(variance)
    e = keras.layers.UpSampling2D(size, interpolation="nearest")(e)
    x = keras.layers.Concatenate()([keras.layers.Conv2D(shape.widths[0], 1)(noisy), e])
    skips = []
    for width in shape.widths[:-1]:
        for _ in range(shape.blocks):
            x = _residual(x, width)
            skips.append(x)
        x = keras.layers.AveragePooling2D(2)(x)
    for _ in range(shape.blocks):
        x = _residual(x, shape.widths[-1])
    for width in reversed(shape.widths[:-1]):
        x = upsample(x, width, shape.upsample)
        for _ in range(shape.blocks):
            x = _residual(keras.layers.Concatenate()([x, skips.pop()]), width)
    out = keras.layers.Conv2D(3, 1, kernel_initializer="zeros", dtype="float32")(x)
    return keras.Model([noisy, variance], out, name=f"denoiser_{shape.upsample}")


class Diffusion(keras.Model):
    """Trains a denoiser: each step noises a batch of real images to random times and learns the noise."""

    def __init__(self, denoiser: keras.Model, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.denoiser = denoiser
        self.seed = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="noise_loss")
        self.built = True  # the denoiser is built; keras.callbacks.BackupAndRestore asks before fit

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        return self.denoiser(inputs, training=training)

    def train_step(self, data):
        images = unit_pixels(data)
        n = tf.shape(images)[0]
        noises = keras.random.normal(tf.shape(images), seed=self.seed)
        times = keras.random.uniform((n, 1, 1, 1), seed=self.seed)
        noise_rates, signal_rates = diffusion_rates(times)
        noisy = signal_rates * images + noise_rates * noises
        with tf.GradientTape() as tape:
            predicted = self.denoiser([noisy, noise_rates**2], training=True)
            loss = tf.reduce_mean(tf.abs(noises - predicted))
        gradients = tape.gradient(loss, self.denoiser.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.denoiser.trainable_weights, strict=True))
        self.loss_tracker.update_state(loss)
        return {"noise_loss": self.loss_tracker.result()}


def train_denoiser(
    real: np.ndarray,
    shape: DenoiserShape,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    precision: str,
    seed: int,
    backup_dir: str | Path,
    on_epoch: Callable[[dict], None] | None = None,
) -> keras.Model:
    """Train a denoiser on uint8 real images with ``Model.fit``; return it in float32.

    A killed run resumes after its last finished epoch (weights, optimizer state and the noise generator's
    state are kept in ``backup_dir`` by ``keras.callbacks.BackupAndRestore``, which removes them once training
    ends). ``on_epoch`` gets ``{"epoch": n, "noise_loss": ...}`` after each epoch.
    """
    with training_precision(precision, seed):
        denoiser = build_denoiser(shape)
        model = Diffusion(denoiser, seed=seed)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=1.0e-4))
        fit_resumably(model, real, epochs, batch_size, seed, backup_dir, on_epoch)
    return float32_copy(build_denoiser(shape), denoiser)


@contextmanager
def training_precision(precision: str, seed: int) -> Iterator[None]:
    """Layers built inside use ``precision`` (e.g. ``mixed_bfloat16``) and draw from ``seed``; float32 again after."""
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def fit_resumably(
    model: keras.Model,
    real: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    backup_dir: str | Path,
    on_epoch: Callable[[dict], None] | None,
) -> None:
    """``model.fit`` on the uint8 images ``real``, shuffled with ``seed``: a killed run resumes after its last
    finished epoch (``keras.callbacks.BackupAndRestore`` in ``backup_dir``, removed once training ends), and
    ``on_epoch`` gets ``{"epoch": n, <the model's metrics>}`` after each epoch."""
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.BackupAndRestore(str(backup_dir))]
    if on_epoch:
        report = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: on_epoch({"epoch": e + 1, **logs}))
        callbacks.append(report)
    batches = tf.data.Dataset.from_tensor_slices(real).shuffle(len(real), seed=seed).batch(batch_size)
    model.fit(batches, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False)  # shuffled above


def unit_pixels(images) -> tf.Tensor:
    """uint8 pixels (an array or a tensor) as float32 in [-1, 1], the range every generator here works in."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def uint8_pixels(unit) -> np.ndarray:
    """Pixels in [-1, 1] (an array or a tensor) rounded back to uint8."""
    return np.clip(np.rint((np.asarray(unit, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def float32_copy(plain: keras.Model, trained: keras.Model) -> keras.Model:
    """``plain`` (the same network built with float32 layers) given ``trained``'s weights as float32."""
    plain.set_weights([np.asarray(w, dtype=np.float32) for w in trained.get_weights()])
    return plain


def _denoise_from(denoiser: keras.Model, noisy: np.ndarray, start: float, steps: int, batch_size: int) -> np.ndarray:
    """DDIM from diffusion time ``start`` down to 0 in ``steps`` equal steps; [-1, 1] in, uint8 out."""
    times = np.linspace(start, 0.0, steps + 1, dtype=np.float32)
    out = np.empty(noisy.shape, dtype=np.uint8)
    for lo in range(0, len(noisy), batch_size):
        x = tf.constant(noisy[lo : lo + batch_size])
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            noise_rates, signal_rates = diffusion_rates(tf.fill((x.shape[0], 1, 1, 1), t))
            noise = denoiser([x, noise_rates**2], training=False)
            image = (x - noise_rates * noise) / signal_rates
            next_noise, next_signal = diffusion_rates(tf.fill((x.shape[0], 1, 1, 1), t_next))
            x = next_signal * image + next_noise * noise
        out[lo : lo + batch_size] = uint8_pixels(image)  # the last step's image estimate
    return out


def sample(denoiser: keras.Model, n: int, steps: int = 20, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``n`` new uint8 images from pure noise in ``steps`` DDIM steps (deterministic for a seed)."""
    noise = np.random.default_rng(seed).standard_normal((n, *denoiser.input_shape[0][1:])).astype(np.float32)
    return _denoise_from(denoiser, noise, 1.0, steps, batch_size)


def resynthesise(
    denoiser: keras.Model,
    images: np.ndarray,
    strength: float | np.ndarray,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """Each uint8 image noised to diffusion time ``strength`` (one per image, or one for all, in (0, 1]) and
    denoised again (SDEdit) in ``steps`` x ``strength`` DDIM steps. Images of equal strength run together,
    so draw strengths from a few values."""
    rng = np.random.default_rng(seed)
    x = unit_pixels(images).numpy()
    strength = np.broadcast_to(np.asarray(strength, dtype=np.float32), (len(images),))
    out = np.empty_like(images)
    for t in np.unique(strength):
        where = np.flatnonzero(strength == t)
        noise_rate, signal_rate = (float(v) for v in diffusion_rates(tf.constant(float(t))))
        noisy = signal_rate * x[where] + noise_rate * rng.standard_normal(x[where].shape).astype(np.float32)
        out[where] = _denoise_from(denoiser, noisy, float(t), max(1, round(steps * t)), batch_size)
    return out


def make_fakes(
    denoiser: keras.Model, kind: str, reals: np.ndarray, n: int, steps: int, strengths: Sequence[float], seed: int
) -> np.ndarray:
    """``n`` uint8 fakes of ``kind``: ``sample`` (from pure noise) or ``resynth`` (real images drawn from
    ``reals``, each noised to a strength drawn from ``strengths``). Deterministic for a seed."""
    if kind == "sample":
        return sample(denoiser, n, steps=steps, seed=seed)
    if kind != "resynth":
        raise ValueError(f"unknown kind of fake {kind!r}: sample or resynth")
    rng = np.random.default_rng(seed)
    picked = reals[rng.choice(len(reals), n, replace=n > len(reals))]
    return resynthesise(denoiser, picked, rng.choice(np.asarray(strengths, np.float32), n), steps=steps, seed=seed)


def load_denoiser(path: str | Path) -> keras.Model:
    """A denoiser saved with :func:`cifake.model.save_model` (built-in layers and :class:`NoiseEmbedding`)."""
    return keras.saving.load_model(path, compile=False, safe_mode=True)
