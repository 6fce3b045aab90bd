"""A lossless coder's view (ZED): a PixelCNN trained on photographs, and a least-squares baseline."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import numpy as np

from .common import cifake, epoch_log, log, remembered, save_float32, score_kinds, trained_minutes


@cache
def _masked_conv():
    """The layer class ``MaskedConv2D``, registered for loading (made on first use: keras is imported lazily)."""
    import keras

    @keras.saving.register_keras_serializable(package="probe")
    class MaskedConv2D(keras.layers.Conv2D):
        """A convolution that sees only the pixels above and to the left (PixelCNN, van den Oord et al. 2016);
        with ``centre=False`` (the first layer) not the pixel itself either."""

        def __init__(self, *args, centre: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.centre = centre

        def build(self, input_shape):
            super().build(input_shape)
            rows, cols = self.kernel_size
            self.mask = np.zeros((rows, cols, 1, 1), np.float32)
            self.mask[: rows // 2] = 1
            self.mask[rows // 2, : cols // 2 + int(self.centre)] = 1

        def convolution_op(self, inputs, kernel):
            return super().convolution_op(inputs, kernel * keras.ops.cast(self.mask, kernel.dtype))

        def get_config(self):
            return super().get_config() | {"centre": self.centre}

    return MaskedConv2D


def pixel_net(width: int = 64, blocks: int = 4, hidden: int = 32):
    """A small PixelCNN over [0, 255] pixels: masked residual convolutions give each pixel its context above and
    to its left. Each sub-pixel is coded as two 4-bit symbols (high nibble, then low), R then G then B: six
    symbols per pixel, each with a head of 16 logits given the context and the pixel's earlier symbols (eight
    times fewer logits than 256 per value, the same likelihood by the chain rule). Output (N, 32, 32, 6, 16)
    float32 logits; :func:`nibbles` gives the symbols."""
    import keras
    from keras import layers

    conv = _masked_conv()
    pixels = keras.Input((32, 32, 3), name="pixels")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    h = conv(width, 7, padding="same", centre=False)(x)
    for _ in range(blocks):
        h = layers.Add()([h, conv(width, 3, padding="same")(layers.ReLU()(h))])
    h = layers.ReLU()(h)
    high = keras.ops.floor(pixels / 16)
    symbols = keras.ops.stack([high, pixels - 16 * high], axis=-1)
    symbols = keras.ops.reshape(symbols, (-1, 32, 32, 6)) / 7.5 - 1
    heads = []
    for k in range(6):
        given = layers.Concatenate()([h, symbols[..., :k]]) if k else h
        heads.append(layers.Dense(16, dtype="float32")(layers.Dense(hidden, activation="relu")(given)))
    return keras.Model(pixels, keras.ops.stack(heads, axis=3), name="pixelcnn")


def nibbles(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 6) symbols of uint8 images: each channel's high then low 4 bits, R then G then B."""
    return np.stack([images >> 4, images & 15], axis=-1).reshape(*images.shape[:3], 6)


def coding_costs(model, images: np.ndarray, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the mean code length of its sub-pixels under ``model`` (negative log-likelihood) and the mean
    entropy of the model's predictions given the true earlier symbols (the code length it expects), both in bits
    per sub-pixel."""
    nll, entropy = [], []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        logits = np.asarray(model(chunk.astype(np.float32), training=False), np.float64)
        log_p = logits - logits.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        true = np.take_along_axis(log_p, nibbles(chunk)[..., None].astype(np.int64), axis=-1)[..., 0]
        nll.append(-true.sum(-1).mean((1, 2)) / 3 / np.log(2))
        entropy.append(-(np.exp(log_p) * log_p).sum((-2, -1)).mean((1, 2)) / 3 / np.log(2))
    return np.concatenate(nll), np.concatenate(entropy)


def train_pixel(args, real: np.ndarray, path: Path) -> None:
    """Train :func:`pixel_net` on ``real`` (Adam, warmup then cosine decay) and save it in float32 at ``path``; a
    killed run resumes after its last finished epoch."""
    import keras

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    model = pixel_net(args.widths[0], args.blocks)
    steps = args.epochs * (len(real) // args.batch + 1)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.lr, warmup_steps=steps // 20)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(schedule), loss=loss)
    callbacks = [keras.callbacks.BackupAndRestore(str(path.parent / "backup")), epoch_log(path.parent)]
    x, y = real.astype(np.float32), nibbles(real)
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, callbacks=callbacks, verbose=0)
    save_float32(partial(pixel_net, args.widths[0], args.blocks), model, path)


def load_pixel(path: Path):
    """A ``pixel`` step's saved model (its custom layer registered first)."""
    import keras

    _masked_conv()
    return keras.saving.load_model(path)


def linear_cost(real: np.ndarray):
    """A PixelCNN's baseline without learning: each sub-pixel predicted by least squares (fitted on ``real``) from
    the pixels left, above, above-left and above-right and the pixel's earlier channels; the score is the mean
    log(1 + |residual|), negated (a cheap code length: smooth images cost less)."""

    def design(images: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        x = images.astype(np.float32)
        p = np.pad(x, ((0, 0), (1, 0), (1, 1), (0, 0)))
        context = np.concatenate(
            [p[:, 1:, :-2], p[:, :-1, 1:-1], p[:, :-1, :-2], p[:, :-1, 2:], np.ones_like(x[..., :1])], -1
        )
        return [np.concatenate([context, x[..., :c]], -1)[:, 1:, 1:-1] for c in range(3)], x[:, 1:, 1:-1]

    @cache
    def weights():  # on first use: a rerun whose row is recorded fits nothing
        inputs, target = design(real)
        return [
            np.linalg.lstsq(a.reshape(-1, a.shape[-1]), target[..., c].ravel(), rcond=None)[0]
            for c, a in enumerate(inputs)
        ]

    def score(images):
        inputs, target = design(images)
        residual = np.stack(
            [target[..., c] - a @ w for c, (a, w) in enumerate(zip(inputs, weights(), strict=True))], -1
        )
        return -np.log1p(np.abs(residual)).mean((1, 2, 3))

    return score


def cmd_pixel(args) -> None:
    """A lossless coder's view (ZED, Cozzolino et al. 2024): a PixelCNN (:func:`pixel_net`) trained on CIFAKE
    train/REAL only; generated images may cost fewer bits than photographs, or fewer than the model expects of
    them. Scores: ``nll`` (the code length, negated), ``zed`` (code length minus expected length, negated) and
    ``zed-abs`` (its distance from test REAL 4000-5999's median, either way), and once for all
    ``pixel`` runs the baseline :func:`linear_cost` (``pixel:linear``). A killed run resumes after its last finished
    epoch."""

    folder = args.root / args.name
    path = folder / "pixelcnn.keras"
    data = cifake(args)
    if not path.exists():
        train_pixel(args, data["train_REAL"], path)
    model = load_pixel(path)
    costs = remembered(lambda images: np.stack(coding_costs(model, images)))

    def gap(images):
        return np.subtract(*costs(images))

    @cache  # these two on first use: a rerun whose kinds are all recorded codes nothing
    def reference() -> float:
        return float(np.median(gap(data["test_REAL"][4000:6000])))

    @cache
    def bits_test_real() -> float:
        nll, entropy = costs(data["test_REAL"][:2000])
        log.info("test REAL: %.3f bits per sub-pixel, %.3f expected", nll.mean(), entropy.mean())
        return float(nll.mean())

    scores = {
        "nll": lambda images: -costs(images)[0],
        "zed": lambda images: -gap(images),
        "zed-abs": lambda images: np.abs(gap(images) - reference()),
    }
    minutes = trained_minutes(folder)

    def describe(kind: str) -> dict:
        return {"fakes": "none", "input": kind, "bits_test_real": bits_test_real()}

    score_kinds(args, data, folder.name, scores, describe, skip=lambda kind: {}, minutes=minutes)
    baseline = {"linear": linear_cost(data["train_REAL"][:5000])}  # no network: one row, no training minutes
    score_kinds(args, data, "pixel", baseline, lambda kind: {"fakes": "none", "input": kind}, lambda kind: {})
