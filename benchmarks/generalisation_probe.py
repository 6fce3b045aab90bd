"""Generalisation probes (issue 40): which training fakes teach a small detector to catch generators it never saw.

Steps, each resumable (outputs written whole under --root, a finished step is skipped, diffusion training
resumes after its last finished epoch):

    python benchmarks/generalisation_probe.py data                      # decode CIFAKE once (train REAL/FAKE, test)
    python benchmarks/generalisation_probe.py diffusion --name diff-nearest --epochs 8 --upsample nearest
    python benchmarks/generalisation_probe.py fakes --name diff-nearest --count 12000
    python benchmarks/generalisation_probe.py gan --name gan-transpose --epochs 8 --upsample transpose --loss ns
    python benchmarks/generalisation_probe.py ae --name ae-transpose --epochs 5 --upsample transpose --lr 1e-3
    python benchmarks/generalisation_probe.py semantic --name semantic-small --widths 32 64 128 --epochs 10 --lr 3e-3
    python benchmarks/generalisation_probe.py semantic --name semantic-airbench-s0 --arch airbench \\
        --widths 64 256 256 --activation relu --epochs 16 --lr 0.75 --batch 512 --smoothing 0.2 [--bias-scale 8] \\
        [--holdout shipped-val] [--coarse 2] [--mixup 0.4]
    python benchmarks/generalisation_probe.py ensemble --name ensemble-airbench2 \\
        --members semantic-airbench-s0 semantic-airbench-s1 [--pixel pixel-w64]
    python benchmarks/generalisation_probe.py pixel --name pixel-w64 --widths 64 --blocks 4 --epochs 6 --batch 64
    python benchmarks/generalisation_probe.py spectrum \\
        --fakes gan-transpose-long/sample=4000,ae-transpose/recon=4000,warp-a3g4/warped=4000
    python benchmarks/generalisation_probe.py detect --name sd-only --fakes sd=24000
    python benchmarks/generalisation_probe.py detect --name sd+diff --fakes sd=12000,diff-nearest/resynth=12000
    python benchmarks/generalisation_probe.py file --name cifake-robust          # a shipped file, at its 0.5
    python benchmarks/generalisation_probe.py lowlevel                           # colour, nearest photographs
    python benchmarks/generalisation_probe.py layers --name semantic-airbench-b8-held   # hidden layers' statistics

``detect`` trains a small ResNet with the project's own ``training.fit`` (flips, shifts, everyday changes on half
of the images) on 24 000 CIFAKE train/REAL images against the named fakes, then scores every folder of the
validation set (``--validation``, never trained on) and of the project's own generators not in training
(leave-one-out), and CIFAKE test REAL/FAKE; one JSON line per run goes to benchmarks/results/generalisation.jsonl.
Every fake is saved through JPEG quality 75, the encoding of every CIFAKE image.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from functools import cache, partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "generalisation.jsonl"
log = logging.getLogger("probe")
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def jpeg75(x: np.ndarray) -> np.ndarray:
    from cifake.corruptions import jpeg

    return jpeg(x, 75)


def cmd_data(args) -> None:
    from cifake.generalisation import load_folder

    out = args.root / "cifake.npz"
    if out.exists():
        return
    arrays = {}
    for split in ("train", "test"):
        for cls in ("REAL", "FAKE"):
            arrays[f"{split}_{cls}"] = load_folder(args.cifake / split / cls)[0]
            log.info("%s/%s: %d images", split, cls, len(arrays[f"{split}_{cls}"]))
    np.savez(out.with_suffix(".partial.npz"), **arrays)
    out.with_suffix(".partial.npz").rename(out)


def _save_float32(build, trained, path: Path) -> None:
    """Save at ``path``, written whole (a killed save leaves no file a rerun would take as done), a float32 copy
    of ``trained`` made by ``build()`` (it was trained under a mixed-precision policy, which this ends)."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    plain = build()
    plain.set_weights([np.asarray(w, np.float32) for w in trained.get_weights()])
    partial_path = path.with_suffix(".partial.keras")
    plain.save(partial_path)
    partial_path.rename(path)


def cifake(args) -> dict[str, np.ndarray]:
    with np.load(args.root / "cifake.npz") as z:
        return {k: z[k] for k in z.files}


def cmd_diffusion(args) -> None:
    import keras

    from cifake.generators import DenoiserShape, Diffusion, build_denoiser

    folder = args.root / args.name
    if (folder / "denoiser.keras").exists():
        return
    keras.mixed_precision.set_global_policy(args.precision)
    real = cifake(args)["train_REAL"]
    keras.utils.set_random_seed(args.seed)
    denoiser = build_denoiser(DenoiserShape(tuple(args.widths), args.blocks, args.upsample))
    model = Diffusion(denoiser, seed=args.seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.lr, weight_decay=1.0e-4))
    backup = keras.callbacks.BackupAndRestore(str(folder / "backup"))
    start = time.time()
    model.fit(real, batch_size=128, epochs=args.epochs, callbacks=[backup, _epoch_log()], verbose=0)
    _save_float32(
        partial(build_denoiser, DenoiserShape(tuple(args.widths), args.blocks, args.upsample)),
        denoiser,
        folder / "denoiser.keras",
    )
    log.info("diffusion %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_gan(args) -> None:
    from cifake.gan import GanShape, generate, train_gan

    folder = args.root / args.name
    if (folder / "sample.npy").exists():
        return
    start = time.time()
    generator = train_gan(
        cifake(args)["train_REAL"], GanShape(tuple(args.widths), args.upsample, args.loss), epochs=args.epochs,
        batch_size=64, learning_rate=2.0e-4, precision=args.precision, seed=args.seed, backup_dir=folder / "backup",
        on_epoch=lambda row: log.info("%s", row),
    )  # fmt: skip
    generator.save(folder / "generator.keras")
    np.save(folder / "sample.partial.npy", jpeg75(generate(generator, args.count, seed=args.seed)))
    (folder / "sample.partial.npy").rename(folder / "sample.npy")
    _grid(folder, ("sample",))
    log.info("gan %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_ae(args) -> None:
    """An autoencoder with a generator's body (:mod:`cifake.autoencoder`); its fakes redraw the first
    ``--count`` real images, the same photographs the detector sees as real (paired)."""
    from cifake.autoencoder import redraw, train_autoencoder
    from cifake.gan import GanShape

    folder = args.root / args.name
    if (folder / "recon.npy").exists():
        return
    real = cifake(args)["train_REAL"]
    start = time.time()
    network = train_autoencoder(
        real, GanShape(tuple(args.widths), args.upsample), epochs=args.epochs, batch_size=128,
        learning_rate=args.lr, precision=args.precision, seed=args.seed, backup_dir=folder / "backup",
        on_epoch=lambda row: log.info("%s", row),
    )  # fmt: skip
    network.save(folder / "autoencoder.keras")
    np.save(folder / "recon.partial.npy", jpeg75(redraw(network, real[: args.count])))
    (folder / "recon.partial.npy").rename(folder / "recon.npy")
    _grid(folder, ("recon",))
    log.info("autoencoder %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_warp(args) -> None:
    """Real photographs with their shapes bent (a smooth random displacement field, ``--amplitude`` pixels at
    most, drawn on a ``--grid`` x ``--grid`` lattice): pseudo-fakes whose pixels and textures are real and whose
    objects are not, like a GAN's melted shapes (the self-blended-images idea, Shiohara & Yamasaki 2022)."""
    from scipy.ndimage import map_coordinates, zoom

    folder = args.root / args.name
    if (folder / "warped.npy").exists():
        return
    real = cifake(args)["train_REAL"][: args.count]
    rng = np.random.default_rng(args.seed + 2)
    scale = rng.uniform(0.3, 1.0, (len(real), 1, 1, 1)) * args.amplitude
    coarse = rng.uniform(-1.0, 1.0, (len(real), 2, args.grid, args.grid)) * scale
    field = zoom(coarse, (1, 1, 32 / args.grid, 32 / args.grid), order=3, mode="grid-wrap", grid_mode=True)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float32)
    out = np.empty_like(real)
    for i, image in enumerate(real.astype(np.float32)):
        where = [rows + field[i, 0], cols + field[i, 1]]
        for c in range(3):
            out[i, ..., c] = np.clip(np.rint(map_coordinates(image[..., c], where, order=3, mode="mirror")), 0, 255)
    np.save(folder / "warped.partial.npy", jpeg75(out))
    (folder / "warped.partial.npy").rename(folder / "warped.npy")
    _grid(folder, ("warped",))


def cifar_classes(folder: Path) -> np.ndarray:
    """CIFAR-10 class index of each image in ``folder``, in load order: CIFAKE names class k+1 ``NNNN (k+1).jpg``,
    and class 1 plain ``NNNN.jpg``."""
    from cifake.generalisation import _image_files

    names = [p.stem for p in _image_files(folder)]
    return np.array([int(n.split("(")[1].rstrip(")")) - 1 if "(" in n else 0 for n in names])


def semantic_net(widths=(64, 128, 256), activation: str = "gelu", rotation: bool = False):
    """A VGG-style CIFAR-10 classifier (two 3x3 convolutions per stage, max pooling) with flips and shifts;
    its layer ``features`` is the pooled last stage. ReLU trains about twice as fast as GELU on these CPUs.
    With ``rotation`` a second output (layer ``rotation``) tells which of four quarter turns an image was given."""
    import keras

    x = inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal")(x)
    x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect")(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    for i, width in enumerate(widths):
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.Activation(activation)(keras.layers.BatchNormalization()(x))
        x = keras.layers.MaxPooling2D()(x) if i < len(widths) - 1 else keras.layers.GlobalMaxPooling2D()(x)
    features = keras.layers.Activation("linear", name="features")(x)
    logits = keras.layers.Dense(10, dtype="float32")(features)
    if rotation:
        return keras.Model(inputs, [logits, keras.layers.Dense(4, dtype="float32", name="rotation")(features)])
    return keras.Model(inputs, logits)


def whitening_kernel(images: np.ndarray, eps: float = 5.0e-4) -> np.ndarray:
    """A 2x2 convolution kernel (2, 2, 3, 24) that whitens the images' 2x2 patches: each eigenvector of their
    covariance scaled by 1/sqrt(eigenvalue), with its negative (airbench, Jordan 2024). ``images`` are normalised."""
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))  # (n, 31, 31, 3, 2, 2)
    flat = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)
    values, vectors = np.linalg.eigh(flat.T @ flat / len(flat))
    scaled = (vectors / np.sqrt(values + eps)).T[::-1].reshape(12, 2, 2, 3).transpose(1, 2, 3, 0)
    return np.concatenate([scaled, -scaled], axis=-1).astype(np.float32)


def airbench_net(
    widths=(64, 256, 256),
    activation: str = "relu",
    whitening: np.ndarray | None = None,
    bias_scale: float = 1.0,
    augment: bool = True,
    coarse: int = 1,
):
    """airbench94's network (Jordan 2024, KellerJordan/cifar10-airbench) in Keras: a frozen whitening 2x2
    convolution, three groups of convolution, max pooling, batch norm (no scale), activation, convolution, the
    convolutions started as identities, and a bias-free linear head scaled by 1/9; flips and 2-pixel shifts.
    Its layer ``features`` is the pooled last group. With ``bias_scale`` c the batch norms' biases are c times a
    trained variable, which under SGD is airbench's c² times larger learning rate for them at the same decay.
    Without ``augment`` it has no random layers (Keras's random layers augment when called without
    ``training=False``). With ``coarse`` k it sees each image's k x k block means only (its coarse layout)."""
    import keras

    def norm(x):
        x = keras.layers.BatchNormalization(momentum=0.6, epsilon=1.0e-5, scale=False, center=bias_scale == 1)(x)
        return keras.layers.Activation(activation)(x if bias_scale == 1 else _scaled_bias()(bias_scale)(x))

    x = inputs = keras.Input((32, 32, 3))
    if augment:
        x = keras.layers.RandomFlip("horizontal")(x)
        x = keras.layers.RandomTranslation(2 / 32, 2 / 32, fill_mode="reflect")(x)
    x = keras.layers.Normalization(mean=CIFAR_MEAN * 255, variance=(CIFAR_STD * 255) ** 2)(x)
    if coarse > 1:
        x = keras.layers.AveragePooling2D(coarse)(x)
    white = keras.layers.Conv2D(24, 2, name="whitening", trainable=False)
    x = keras.layers.Activation(activation)(white(x))
    if whitening is not None:
        white.set_weights([whitening, np.zeros(24, np.float32)])
    for width in widths:
        x = norm(keras.layers.MaxPooling2D()(keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)))
        x = norm(keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x))
    features = keras.layers.Activation("linear", name="features")(keras.layers.GlobalMaxPooling2D()(x))
    logits = keras.layers.Dense(10, use_bias=False)(features)
    model = keras.Model(inputs, keras.layers.Rescaling(1 / 9, dtype="float32")(logits), name="airbench")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.trainable:  # identity start: an implicit residual
            kernel = layer.get_weights()[0]
            same = np.arange(min(kernel.shape[2:]))
            kernel[..., same] = 0.0
            kernel[1, 1, same, same] = 1.0
            layer.set_weights([kernel])
    return model


@cache
def _scaled_bias():
    """The layer class ``ScaledBias``, registered for loading (made on first use: keras is imported lazily)."""
    import keras

    @keras.saving.register_keras_serializable(package="probe")
    class ScaledBias(keras.layers.Layer):
        """``x + scale * b`` for a trained per-channel ``b`` started at zero."""

        def __init__(self, scale: float, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, input_shape):
            self.b = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="b")

        def call(self, x):
            return x + keras.ops.cast(self.scale * self.b, x.dtype)

        def get_config(self):
            return super().get_config() | {"scale": self.scale}

    return ScaledBias


def for_inference(model):
    """An ``airbench_net`` as the same function in built-in layers only, without random layers (safe to load and
    call anywhere): each batch norm of a ``bias_scale`` c model gets the bias c * b of the ``ScaledBias`` after it."""
    import keras

    widths = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    activation = next(layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation))
    pooling = [layer.pool_size[0] for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    plain = airbench_net(tuple(widths[::2]), activation, augment=False, coarse=pooling[0] if pooling else 1)
    source = iter(layer for layer in model.layers if layer.weights)
    for layer in (layer for layer in plain.layers if layer.weights):
        original = next(source)
        weights = original.get_weights()
        if isinstance(original, keras.layers.BatchNormalization) and not original.center:
            bias = next(source)
            weights = [bias.scale * bias.get_weights()[0], *weights]
        layer.set_weights(weights)
    return plain


def load_classifier(path: Path):
    """A ``semantic`` step's saved classifier (its custom layer registered first)."""
    import keras

    _scaled_bias()
    return keras.saving.load_model(path)


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
    callbacks = [keras.callbacks.BackupAndRestore(str(path.parent / "backup")), _epoch_log(path.parent / "minutes.txt")]
    x, y = real.astype(np.float32), nibbles(real)
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, callbacks=callbacks, verbose=0)
    _save_float32(partial(pixel_net, args.widths[0], args.blocks), model, path)


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

    def gap(images):
        return np.subtract(*coding_costs(model, images))

    @cache  # these two on first use: a rerun whose kinds are all recorded codes nothing
    def reference() -> float:
        return float(np.median(gap(data["test_REAL"][4000:6000])))

    @cache
    def bits_test_real() -> float:
        nll, entropy = coding_costs(model, data["test_REAL"][:2000])
        log.info("test REAL: %.3f bits per sub-pixel, %.3f expected", nll.mean(), entropy.mean())
        return float(nll.mean())

    scores = {
        "nll": lambda images: -coding_costs(model, images)[0],
        "zed": lambda images: -gap(images),
        "zed-abs": lambda images: np.abs(gap(images) - reference()),
    }
    minutes = float((folder / "minutes.txt").read_text()) if (folder / "minutes.txt").exists() else 0.0

    def describe(kind: str) -> dict:
        return {"fakes": "none", "input": kind, "bits_test_real": bits_test_real()}

    _score_kinds(args, data, folder.name, scores, describe, skip=lambda kind: {}, minutes=minutes)
    baseline = {"linear": linear_cost(data["train_REAL"][:5000])}  # no network: one row, no training minutes
    _score_kinds(args, data, "pixel", baseline, lambda kind: {"fakes": "none", "input": kind}, lambda kind: {})


def rotation_task(net, seed: int):
    """``net`` (class and rotation outputs) trained to name the quarter turn each image was given (Golan and
    El-Yaniv 2018; Hendrycks et al. 2019: a self-supervised task whose failure flags images unlike the photos
    it was trained on), and the class of the unturned ones (a random quarter of each batch)."""
    import keras
    import tensorflow as tf

    class RotationTask(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.net, self.seed = net, keras.random.SeedGenerator(seed)
            self.tracker = keras.metrics.Mean(name="loss")
            self.built = True  # the net is built; keras.callbacks.BackupAndRestore asks before fit

        def call(self, x, training=False):
            return self.net(x, training=training)

        @property
        def metrics(self):
            return [self.tracker]

        def train_step(self, data):
            x, y = data
            turns = keras.random.randint((tf.shape(x)[0],), 0, 4, seed=self.seed)
            turned = tf.gather(tf.stack([tf.image.rot90(x, k) for k in range(4)], 1), turns, batch_dims=1)
            upright = tf.cast(turns == 0, "float32")
            with tf.GradientTape() as tape:
                logits, rotation = self.net(turned, training=True)
                named = keras.losses.sparse_categorical_crossentropy(tf.cast(y, "int32"), logits, from_logits=True)
                turn = keras.losses.sparse_categorical_crossentropy(turns, rotation, from_logits=True)
                loss = tf.reduce_mean(turn) + tf.reduce_sum(named * upright) / tf.maximum(tf.reduce_sum(upright), 1)
            weights = self.net.trainable_weights
            self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
            self.tracker.update_state(loss)
            return {"loss": self.tracker.result()}

    return RotationTask()


def outlier_exposure_loss(weight: float, smoothing: float = 0.0):
    """Cross-entropy on CIFAR-10 photographs (label 0-9, its targets smoothed by ``smoothing``); on outliers
    (label -1) ``weight`` times the cross-entropy to the uniform distribution over classes (Hendrycks et al. 2019,
    outlier exposure): be unsure of non-photos."""
    from keras import ops

    def loss(y_true, logits):
        y = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        log_p = ops.log_softmax(ops.cast(logits, "float32"))
        named = -ops.sum(ops.one_hot(ops.maximum(y, 0), 10) * log_p, axis=-1)
        unsure = -ops.mean(log_p, axis=-1)
        return ops.where(y >= 0, (1 - smoothing) * named + smoothing * unsure, weight * unsure)

    return loss


def shipped_val_reals(args) -> np.ndarray:
    """Indices (into train/REAL in file-name order) of the real photographs the shipped models never trained on:
    ``preprocess``'s validation split of the full archive (:func:`cifake.dataset.split_indices` with params.yaml's
    seed and ``preprocess.val_fraction``, over every train image, REAL listed before FAKE)."""
    from cifake.config import load_params
    from cifake.dataset import split_indices

    params = load_params(ROOT / "params.yaml")
    counts = [len(list((args.cifake / "train" / cls).iterdir())) for cls in ("REAL", "FAKE")]
    _, val = split_indices(np.repeat([0, 1], counts), val_fraction=params.preprocess.val_fraction, seed=params.seed)
    return np.sort(val[val < counts[0]])


def train_semantic(args, real: np.ndarray, outliers: dict[str, np.ndarray], path: Path) -> None:
    """Train the step's classifier on train/REAL (all, or with ``--holdout shipped-val`` all but
    :func:`shipped_val_reals`) and ``outliers``, and save it in float32 at ``path``; a killed run resumes after its
    last finished epoch."""
    import keras

    if args.rotation and outliers:
        raise SystemExit("--rotation and --outliers are separate probes: give one")
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    classes = cifar_classes(args.cifake / "train" / "REAL")
    # held out before the whitening is fitted; cifake-generalist.keras's classifier was trained before this order:
    # its whitening saw the patches of 491 held-out photographs (train/REAL's first 5 000), no labels
    if args.holdout == "shipped-val":
        kept = np.setdiff1d(np.arange(len(real)), shipped_val_reals(args))
        real, classes = real[kept], classes[kept]
    build = _classifier_builder(args, real)
    net = build()
    model = rotation_task(net, args.seed) if args.rotation else net
    x = np.concatenate([real, *outliers.values()])
    y = np.r_[classes, -np.ones(len(x) - len(real), np.int64)]
    steps = args.epochs * (len(x) // args.batch + 1)
    loss = None if args.rotation else outlier_exposure_loss(args.oe, args.smoothing)
    data = {"x": x, "y": y, "batch_size": args.batch}
    if args.mixup:
        if args.rotation or outliers:
            raise SystemExit("--mixup is a probe of its own: without --rotation or --outliers")
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.smoothing)
        data = {"x": mixup_batches(x, y, args.batch, args.mixup, args.seed)}
    model.compile(_semantic_optimizer(args, steps), loss=loss)
    backup = keras.callbacks.BackupAndRestore(str(path.parent / "backup"))
    callbacks = [backup, _epoch_log(path.parent / "minutes.txt")]
    model.fit(**data, epochs=args.epochs, callbacks=callbacks, verbose=0)
    _save_float32(build, net, path)


def mixup_batches(x: np.ndarray, y: np.ndarray, batch: int, alpha: float, seed: int):
    """Shuffled batches of ``x`` each mixed with a shuffled partner, ``lam * a + (1 - lam) * b`` with ``lam`` drawn
    from Beta(alpha, alpha) per image, and the same mix of their one-hot classes (mixup, Zhang et al. 2018; better
    calibrated and less sure off the photographs, Thulasidasan et al. 2019)."""
    import keras

    one_hot = np.eye(10, dtype=np.float32)

    class Mixup(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return len(x) // batch

        def on_epoch_end(self):
            self.order, self.partner = self.rng.permutation(len(x)), self.rng.permutation(len(x))
            self.lam = self.rng.beta(alpha, alpha, len(x)).astype(np.float32)

        def __getitem__(self, i):
            a, b = self.order[i * batch : (i + 1) * batch], self.partner[i * batch : (i + 1) * batch]
            lam = self.lam[a]
            mixed = lam[:, None, None, None] * x[a] + (1 - lam[:, None, None, None]) * x[b]
            targets = lam[:, None] * one_hot[y[a]] + (1 - lam[:, None]) * one_hot[y[b]]
            return mixed, targets

    return Mixup()


def _classifier_builder(args, real: np.ndarray):
    """The step's network constructor: ``--arch vgg`` (:func:`semantic_net`) or ``airbench``
    (:func:`airbench_net`, its whitening fitted on 5 000 of ``real``, seen as the network sees them)."""
    if args.arch == "vgg":
        if args.coarse != 1:
            raise SystemExit("--coarse needs --arch airbench")
        return partial(semantic_net, tuple(args.widths), args.activation, args.rotation)
    if args.rotation:
        raise SystemExit("--rotation needs --arch vgg")
    k = args.coarse
    sample = real[:5000].reshape(-1, 32 // k, k, 32 // k, k, 3).mean((2, 4))
    whitening = whitening_kernel((sample / 255.0 - CIFAR_MEAN) / CIFAR_STD)
    return partial(airbench_net, tuple(args.widths), args.activation, whitening, args.bias_scale, coarse=k)


def _semantic_optimizer(args, steps: int):
    """AdamW with warmup and cosine decay for ``vgg``; for ``airbench`` its Nesterov SGD (momentum 0.85) with a
    triangular schedule (0.2 -> 1 at 23 % -> 0.07 of ``--lr``) and decoupled weight decay of 0.0153 per 1 024
    images (airbench94's hyperparameters, its per-example learning rate times the batch)."""
    import keras

    if args.arch == "vgg":
        schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.lr, warmup_steps=steps // 10)
        return keras.optimizers.AdamW(schedule, weight_decay=5.0e-4)

    class Triangle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step, peak = keras.ops.cast(step, "float32"), 0.23 * steps
            rise = 0.2 + 0.8 * step / peak
            fall = 1.0 - 0.93 * (step - peak) / (steps - peak)
            return args.lr * keras.ops.where(step < peak, rise, keras.ops.maximum(fall, 0.07))

        def get_config(self):
            return {}

    triangle = Triangle()
    decay = 0.0153 * args.batch / 1024 / args.lr
    return keras.optimizers.SGD(triangle, momentum=0.85, nesterov=True, weight_decay=decay)


def cmd_semantic(args) -> None:
    """A CIFAR-10 classifier trained on CIFAKE train/REAL, scored by :func:`semantic_scores` (its doubt first:
    generators make objects it cannot name, the Inception score's cue per image). With ``--outliers`` (a
    ``--fakes``-style spec) it is also taught to be unsure of those images; with ``--rotation`` it also names
    each image's quarter turn (:func:`rotation_scores`)."""
    import keras

    folder = args.root / args.name
    path = folder / "classifier.keras"
    data = cifake(args)
    outliers = fake_sources(args, args.outliers) if args.outliers else {}
    if not path.exists():
        train_semantic(args, data["train_REAL"], outliers, path)
    model = load_classifier(path)
    test_y = cifar_classes(args.cifake / "test" / "REAL")
    features = keras.Model(model.input, [model.outputs[0], model.get_layer("features").output])

    def embed(images):
        return tuple(_batched(features, images))

    logits, _ = embed(data["test_REAL"][:2000])
    accuracy = float(np.mean(logits.argmax(1) == test_y[:2000]))
    log.info("CIFAR-10 test accuracy %.4f", accuracy)
    scores = semantic_scores(embed, data) | feature_scores(
        embed, data["train_REAL"], cifar_classes(args.cifake / "train" / "REAL")
    )
    if len(model.outputs) > 1:
        scores |= rotation_scores(model, scores["doubt"], data["test_REAL"][4000:6000])
    minutes = float((folder / "minutes.txt").read_text()) if (folder / "minutes.txt").exists() else 0.0

    def describe(kind: str) -> dict:
        fakes = "CIFAKE test 4000-9999 (REAL vs SD)" if kind == "linear-sd" else "none"
        return {"fakes": fakes, "outliers": args.outliers, "input": kind, "cifar10": accuracy}

    _score_kinds(args, data, folder.name, scores, describe, skip=lambda kind: outliers, minutes=minutes)


def cmd_ensemble(args) -> None:
    """The doubt of a deep ensemble (Lakshminarayanan et al. 2017): 1 - the largest class probability of the mean
    softmax of the ``--members`` classifiers (``semantic`` steps' folders), alone and joined (:func:`joined`) with
    the shipped detector; with ``--pixel`` (a ``pixel`` step's folder) also with that model's code length, and
    with both. Its minutes are the members' training minutes summed (the pixel model's are its own field)."""
    models = [load_classifier(args.root / member / "classifier.keras") for member in args.members]

    def probabilities(images):
        return np.mean([_softmax(_batched(model, images)[0]) for model in models], axis=0)

    def doubt(images):
        return 1 - probabilities(images).max(1)

    data = cifake(args)
    test_y = cifar_classes(args.cifake / "test" / "REAL")[:2000]
    accuracy = float(np.mean(probabilities(data["test_REAL"][:2000]).argmax(1) == test_y))
    log.info("CIFAR-10 test accuracy %.4f", accuracy)
    files = [args.root / member / "minutes.txt" for member in args.members]
    minutes = sum(float(f.read_text()) for f in files if f.exists())
    reference = data["test_REAL"][4000:6000]
    scores = {"doubt": doubt, "doubt+shipped": joined((doubt, shipped_score), reference)}
    extra = {}
    if args.pixel:
        pixel = load_pixel(args.root / args.pixel / "pixelcnn.keras")

        def cost(images):
            return -coding_costs(pixel, images)[0]

        scores[f"doubt+{args.pixel}"] = joined((doubt, cost), reference)
        scores[f"doubt+{args.pixel}+shipped"] = joined((doubt, cost, shipped_score), reference)
        extra = {"pixel": args.pixel, "pixel_minutes": float((args.root / args.pixel / "minutes.txt").read_text())}

    def describe(kind: str) -> dict:
        record = {"fakes": "none", "members": args.members, "input": kind, "cifar10": accuracy}
        return record | (extra if args.pixel in kind else {})  # extra is empty without --pixel

    _score_kinds(args, data, args.name, scores, describe, skip=lambda kind: {}, minutes=minutes)


def semantic_scores(embed, data) -> dict:
    """Scores of fakeness from the classifier: its doubt (1 - max softmax), that of its mean softmax over six
    views (:func:`_views`), its largest logit negated (Hendrycks et al. 2022: unlike the softmax, not squeezed by
    label smoothing), how far its features move under Gaussian noise of 4/255 (1 - their cosine; RIGID, He et
    al. 2024: generated images sit less stably in a model's feature space), a logistic regression on its
    features (CIFAKE test REAL vs SD, images 4000-9999 of each: not scored), and the distance to the nearest real
    photographs' features (one-class). Test REAL 0-1999 is scored, 2000-3999 sets the thresholds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def doubt(images):
        return 1 - _softmax(embed(images)[0]).max(1)

    def doubt_views(images):
        p = np.mean([_softmax(embed(view)[0]) for view in _views(images)], axis=0)
        return 1 - p.max(1)

    def noise_cosine(images):
        noisy = images + np.random.default_rng(0).normal(0, 4, images.shape)
        a, b = embed(images.astype(np.float32))[1], embed(np.clip(noisy, 0, 255).astype(np.float32))[1]
        return 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    @cache
    def fitted():  # on first use: a rerun whose kinds are all recorded fits nothing
        real, fake = embed(data["test_REAL"][4000:])[1], embed(data["test_FAKE"][4000:])[1]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(np.r_[real, fake], np.r_[np.zeros(len(real)), np.ones(len(fake))])
        scaler = StandardScaler().fit(real)
        return probe, scaler, NearestNeighbors(n_neighbors=5).fit(scaler.transform(real))

    def knn_real(images):
        _, scaler, neighbours = fitted()
        return neighbours.kneighbors(scaler.transform(embed(images)[1]))[0].mean(1)

    return {
        "doubt": doubt,
        "maxlogit": lambda images: -embed(images)[0].max(1),
        "doubt-views": doubt_views,
        "noise-cosine": noise_cosine,
        "linear-sd": lambda images: fitted()[0].predict_proba(embed(images)[1])[:, 1],
        "knn-real": knn_real,
        "doubt+shipped": joined((doubt, shipped_score), data["test_REAL"][4000:6000]),
    }


def feature_scores(embed, real: np.ndarray, classes: np.ndarray) -> dict:
    """Scores from the classifier's pooled features of the ``real`` training photographs: the energy of its logits
    (Liu et al. 2020), the cosine distance to the 50th nearest training photograph (Sun et al. 2022), and the
    Mahalanobis distance to the nearest class mean under one shared covariance (Lee et al. 2018)."""
    from scipy.special import logsumexp
    from sklearn.covariance import LedoitWolf
    from sklearn.neighbors import NearestNeighbors

    @cache
    def fitted():  # on first use: a rerun whose kinds are all recorded embeds nothing
        features = embed(real)[1]
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        means = np.stack([features[classes == k].mean(0) for k in range(10)])
        return NearestNeighbors(n_neighbors=50).fit(unit), means, LedoitWolf().fit(features - means[classes])

    def knn(images):
        f = embed(images)[1]
        return fitted()[0].kneighbors(f / np.linalg.norm(f, axis=1, keepdims=True))[0][:, -1]

    def mahalanobis(images):
        f = embed(images)[1]
        _, means, shared = fitted()
        return np.min([shared.mahalanobis(f - mean) for mean in means], axis=0)

    return {
        "energy": lambda images: -logsumexp(embed(images)[0], axis=1),
        "knn-train": knn,
        "mahalanobis": mahalanobis,
    }


def _batched(model, images: np.ndarray, size: int = 500) -> list[np.ndarray]:
    """``model``'s outputs on ``images``, run in slices of ``size`` and joined: one array per output."""
    parts = [model(images[i : i + size], training=False) for i in range(0, len(images), size)]
    parts = [part if isinstance(part, list | tuple) else [part] for part in parts]
    return [np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(len(parts[0]))]


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _views(images: np.ndarray) -> list[np.ndarray]:
    """Six views of each image, airbench's test-time augmentation: as is and mirrored, each also shifted one
    pixel up-left and down-right (reflected at the border)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [images, padded[:, :-2, :-2], padded[:, 2:, 2:]]
    return shifted + [view[:, :, ::-1] for view in shifted]


def rotation_scores(model, doubt, real: np.ndarray) -> dict:
    """How badly the classifier names the quarter turns of an image (mean cross-entropy over the four), alone
    and added to its doubt (each in standard deviations of ``real`` photographs' scores)."""
    import keras

    def rotation(images):
        losses = []
        for k in range(4):
            turned = np.rot90(images, k, axes=(1, 2))
            logits = _batched(model, turned)[1]
            losses.append(
                np.asarray(
                    keras.losses.sparse_categorical_crossentropy(np.full(len(images), k), logits, from_logits=True)
                )
            )
        return np.mean(losses, axis=0)

    stats = [(v.mean(), v.std()) for v in (s(real) for s in (doubt, rotation))]  # each scored once

    def both(images):
        return sum((s(images) - m) / sd for s, (m, sd) in zip((doubt, rotation), stats, strict=True))

    return {"rotation": rotation, "doubt+rotation": both}


def joined(scores, real: np.ndarray):
    """``scores`` joined by the smallest of their p-values under ``real`` photographs (the share of them that score
    at least as high): an image is as suspect as its strangest score."""

    @cache
    def references():  # on first use: a rerun whose kinds are all recorded scores nothing
        return [np.sort(s(real)) for s in scores]

    def score(images):
        tails = [1 - np.searchsorted(r, s(images)) / len(r) for r, s in zip(references(), scores, strict=True)]
        return -np.min(tails, axis=0)

    return score


def shipped_score(images: np.ndarray) -> np.ndarray:
    """The shipped robust detector's P(Fake) (loaded on first use)."""
    from cifake.model import predict_proba

    return predict_proba(_shipped(), images).reshape(-1)


@cache
def _shipped():
    import keras

    return keras.saving.load_model(ROOT / "models" / "pretrained" / "cifake-robust.keras", safe_mode=True)


def _append(record: dict) -> None:
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("%s", json.dumps(record["summary"]))


def _epoch_log(minutes_file: Path | None = None):
    """Logs each epoch's metrics and seconds; with ``minutes_file``, keeps there the training minutes so far
    (added to across a resumed run)."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.time() - self.start
            log.info("epoch %d: %s (%.0f s)", epoch + 1, logs, seconds)
            if minutes_file is not None:
                before = float(minutes_file.read_text()) if minutes_file.exists() else 0.0
                minutes_file.write_text(f"{before + seconds / 60:.2f}\n")

    return EpochLog()


def cmd_fakes(args) -> None:
    import keras

    from cifake.generators import resynthesise, sample

    folder = args.root / args.name
    denoiser = keras.saving.load_model(folder / "denoiser.keras", safe_mode=True)
    real = cifake(args)["train_REAL"]
    rng = np.random.default_rng(args.seed + 1)
    for kind in ("sample", "resynth"):
        out = folder / f"{kind}.npy"
        if out.exists():
            continue
        start = time.time()
        if kind == "sample":
            x = sample(denoiser, args.count, steps=args.steps, seed=args.seed)
        else:
            pick = rng.choice(len(real), args.count, replace=False)
            strength = rng.choice(np.asarray(args.strengths, np.float32), args.count)
            x = resynthesise(denoiser, real[pick], strength, steps=args.steps, seed=args.seed)
        np.save(folder / f"{kind}.partial.npy", jpeg75(x))
        (folder / f"{kind}.partial.npy").rename(out)
        log.info("%s/%s: %d images in %.1f min", args.name, kind, args.count, (time.time() - start) / 60)
    _grid(folder)


def _grid(folder: Path, kinds=("sample", "resynth")) -> None:
    from PIL import Image

    from cifake.fakes import grid

    for kind in kinds:
        Image.fromarray(grid(np.load(folder / f"{kind}.npy"), scale=2)).save(folder / f"{kind}_grid.png")


def fake_sources(args, spec: str) -> dict[str, np.ndarray]:
    """``sd=12000,diff-nearest/resynth=6000`` -> name: images (the first N of each source)."""
    data = cifake(args)
    out = {}
    for part in spec.split(","):
        name, count = part.split("=")
        x = data["train_FAKE"] if name == "sd" else np.load(args.root / f"{name}.npy")
        out[name] = x[: int(count)]
    return out


def own_generators(args) -> dict[str, np.ndarray]:
    return {str(p.relative_to(args.root).with_suffix("")): np.load(p) for p in sorted(args.root.glob("*/*.npy"))}


# JPEG's luminance table (ITU T.81 Annex K) scaled as libjpeg does for quality 75: the table of every image here
ANNEX_K = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)  # fmt: skip
Q75 = np.clip((ANNEX_K * 50 + 50) // 100, 1, 255)


def spectrum_features(x: np.ndarray) -> np.ndarray:
    """Per image, for each of the 64 DCT frequencies of its luminance's 8x8 blocks quantised as JPEG q75 stores
    them: the mean log magnitude and the shares of zeros and of ones (192 numbers; Benford-style statistics)."""
    from scipy.fft import dctn

    luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) - 128
    n, h, w = luma.shape
    blocks = luma.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)
    levels = np.abs(np.round(dctn(blocks, axes=(-2, -1), norm="ortho") / Q75)).reshape(n, -1, 64)
    return np.concatenate([np.log1p(levels).mean(1), (levels == 0).mean(1), (levels == 1).mean(1)], axis=1)


def _spectrum_proba(probe, images: np.ndarray) -> np.ndarray:
    return probe.predict_proba(spectrum_features(images))[:, 1]


def cmd_spectrum(args) -> None:
    """Low-level statistics without a network: JPEG-domain DCT statistics (:func:`spectrum_features`) scored
    one-class (Mahalanobis distance to 12 000 train/REAL images) and by logistic regressions against train/FAKE
    (SD) and against ``--fakes``."""
    from sklearn.covariance import LedoitWolf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = cifake(args)
    real = spectrum_features(data["train_REAL"][:12000])
    one_class = LedoitWolf().fit(real)
    scores = {"oneclass": lambda images: one_class.mahalanobis(spectrum_features(images))}
    fakes = fake_sources(args, args.fakes)
    for kind, sources in (("linear-sd", {"sd": data["train_FAKE"][:12000]}), ("linear-fakes", fakes)):
        fake = np.concatenate([spectrum_features(x) for x in sources.values()])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        probe.fit(np.r_[real, fake], np.r_[np.zeros(len(real)), np.ones(len(fake))])
        scores[kind] = partial(_spectrum_proba, probe)
    _score_kinds(
        args,
        data,
        "spectrum",
        scores,
        lambda kind: {"fakes": args.fakes if kind == "linear-fakes" else kind, "input": "dct-statistics"},
        skip=lambda kind: fakes if kind == "linear-fakes" else {},
    )


def colour_features(x: np.ndarray) -> np.ndarray:
    """Per image (10 numbers): saturation's mean and spread, the mean of each pixel's largest and smallest channel,
    the spread of all values, the spreads of luma and of the two chroma channels, and the chroma's mean size."""
    x = x.astype(np.float32) / 255
    high, low = x.max(-1), x.min(-1)
    saturation = (high - low) / (high + 1.0e-6)
    ycc = x @ np.array([[0.299, -0.1687, 0.5], [0.587, -0.3313, -0.4187], [0.114, 0.5, -0.0813]], np.float32)
    features = [saturation.mean((1, 2)), saturation.std((1, 2)), high.mean((1, 2)), low.mean((1, 2)), x.std((1, 2, 3))]
    features += [ycc[..., c].std((1, 2)) for c in range(3)] + [np.abs(ycc[..., c]).mean((1, 2)) for c in (1, 2)]
    return np.stack(features, 1)


def nearest_closeness(train: np.ndarray, k: int = 10):
    """Minus each image's pixel-space distance to its ``k``-th nearest image of ``train``."""
    flat = train.reshape(len(train), -1).astype(np.float32) / 255
    norms = (flat**2).sum(1)

    def score(images: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1).astype(np.float32) / 255
        squared = [
            np.partition((part**2).sum(1)[:, None] + norms[None] - 2 * part @ flat.T, k - 1, axis=1)[:, k - 1]
            for part in np.array_split(x, max(1, len(x) // 500))
        ]
        return -np.sqrt(np.maximum(np.concatenate(squared), 0))

    return score


def cmd_lowlevel(args) -> None:
    """Two more scores without a network: colour statistics (:func:`colour_features`) one-class (Mahalanobis
    distance to 20 000 train/REAL images), and closeness to the training photographs (``nn-pixels``: a generator's
    images might sit nearer the photographs it learnt from than new photographs do; all 50 000 train/REAL)."""
    from sklearn.covariance import LedoitWolf

    data = cifake(args)
    one_class = LedoitWolf().fit(colour_features(data["train_REAL"][:20000]))
    scores = {
        "colour": lambda images: one_class.mahalanobis(colour_features(images)),
        "nn-pixels": nearest_closeness(data["train_REAL"]),
    }
    _score_kinds(args, data, "lowlevel", scores, lambda kind: {"fakes": "none", "input": kind}, lambda kind: {})


def cmd_layers(args) -> None:
    """The statistics of every hidden layer of a ``semantic`` step's classifier (``--name``) as one-class scores,
    fitted on 4 000 of the train/REAL photographs it learnt (rows ``layers-NAME:kind``): each layer's channel means
    and spreads under one Gaussian (the feature ensemble of Lee et al. 2018, without their fakes) and its Gram
    matrix outside the photographs' 0.1-99.9 % range per entry (Sastry & Oore 2020), each summed over layers in
    standard deviations of test REAL 2000-3999; and the last layer's Gaussian distance turned round (too typical a
    photograph), alone and with half its weight taken from the doubt."""
    data = cifake(args)
    statistics = layer_statistics(load_classifier(args.root / args.name / "classifier.keras"))
    columns = layer_columns(statistics, data["train_REAL"][::10][:4000])
    reference = columns(data["test_REAL"][2000:4000])
    mean, spread = reference.mean(0), reference.std(0) + 1.0e-9

    def standard(images):
        return (columns(images) - mean) / spread

    def doubt_typical(images):
        z = standard(images)
        return z[:, -1] - 0.5 * z[:, -3]

    scores = {
        "stats": lambda images: standard(images)[:, 0:-1:2].sum(1),
        "gram": lambda images: standard(images)[:, 1:-1:2].sum(1),
        "deep-typical": lambda images: -standard(images)[:, -3],
        "doubt-typical": doubt_typical,
    }
    trained = args.root / args.name / "minutes.txt"
    minutes = float(trained.read_text()) if trained.exists() else 0.0
    describe = {"fakes": "none", "classifier": args.name}
    prefix = f"layers-{args.name}"
    _score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: {}, minutes)


def layer_statistics(model):
    """images -> (class logits, per hidden activation layer: (channel means and spreads, upper Gram entries))."""
    import keras

    hidden = [layer.output for layer in model.layers if isinstance(layer, keras.layers.Activation)][:-1]
    network = keras.Model(model.input, [model.outputs[0], *hidden])

    def statistics(images):
        logits, *layers = _batched(network, images.astype(np.float32))
        per_layer = []
        for a in layers:
            a = a.reshape(len(a), -1, a.shape[-1])
            upper = np.triu_indices(a.shape[-1])
            gram = np.einsum("npc,npd->ncd", a, a) / a.shape[1]
            per_layer.append((np.c_[a.mean(1), a.std(1)], gram[:, upper[0], upper[1]]))
        return logits, per_layer

    return statistics


def layer_columns(statistics, train: np.ndarray):
    """images -> (N, 2 x layers + 1): per layer the Gaussian distance of its means and spreads and the Gram
    entries' relative excess beyond the ``train`` photographs' 0.1-99.9 % range, then the doubt; in slices of
    500 images (a Gram matrix of 256 channels is 33 000 numbers an image)."""
    from sklearn.covariance import LedoitWolf

    fitted = [statistics(train[i : i + 500])[1] for i in range(0, len(train), 500)]
    layers = [[np.concatenate([part[k][j] for part in fitted]) for j in (0, 1)] for k in range(len(fitted[0]))]
    gaussians = [LedoitWolf().fit(moments) for moments, _ in layers]
    ranges = [np.quantile(gram, [0.001, 0.999], axis=0) for _, gram in layers]

    def excess(gram, low, high):
        below, above = np.maximum(low - gram, 0), np.maximum(gram - high, 0)
        return (below / (np.abs(low) + 1e-6) + above / (np.abs(high) + 1e-6)).sum(1)

    def columns_of(images):
        logits, per_layer = statistics(images)
        cols = []
        for (moments, gram), gaussian, (low, high) in zip(per_layer, gaussians, ranges, strict=True):
            cols += [gaussian.mahalanobis(moments), excess(gram, low, high)]
        return np.stack([*cols, 1 - _softmax(logits).max(1)], axis=1)

    return lambda images: np.concatenate([columns_of(images[i : i + 500]) for i in range(0, len(images), 500)])


def cmd_file(args) -> None:
    """A model file of models/pretrained (``--name``, without ``.keras``) scored as the probes are, at its own 0.5
    threshold (run ``file:NAME``): the shipped files as points of the trade between the two sides."""
    from cifake.model import load_model, predict_proba

    args.name = f"file:{args.name}"
    if args.name in _recorded():
        return
    model = load_model(ROOT / "models" / "pretrained" / f"{args.name.removeprefix('file:')}.keras")
    record = scored(args, cifake(args), lambda images: predict_proba(model, images))
    _append({"name": args.name, "fakes": "none", "input": "pixels"} | record)


def _score_kinds(args, data, prefix: str, scores: dict, describe, skip, minutes: float = 0.0) -> None:
    """Record each score of ``scores`` not yet in the results file as run ``prefix:kind``: its threshold calls
    95 % of test REAL 2000-3999 Real; ``describe(kind)`` gives the record's fields and ``skip(kind)`` the own
    generators it saw (not scored as held out)."""
    for kind, score in scores.items():
        args.name = f"{prefix}:{kind}"
        if args.name in _recorded():
            continue
        threshold = float(np.quantile(score(data["test_REAL"][2000:4000]), 0.95))
        scores_ = scored(args, data, score, skip=skip(kind), minutes=minutes, threshold=threshold)
        _append({"name": args.name} | describe(kind) | scores_)


def _recorded() -> set[str]:
    """Names of the runs already in the results file."""
    return {json.loads(line)["name"] for line in RESULTS.read_text().splitlines()} if RESULTS.exists() else set()


def cmd_detect(args) -> None:
    if args.name in _recorded():
        log.info("%s already in %s", args.name, RESULTS)
        return
    _append(train_and_score(args))


def train_and_score(args) -> dict:
    from cifake.config import ModelParams
    from cifake.dataset import Split
    from cifake.fitconfig import FitConfig
    from cifake.model import build_model, predict_proba
    from cifake.training import fit

    data = cifake(args)
    fakes = fake_sources(args, args.fakes)
    real = data["train_REAL"][: args.reals]
    x = np.concatenate([real, *fakes.values()])
    y = np.r_[np.zeros(len(real)), np.ones(len(x) - len(real))].astype(np.int64)
    order = np.random.default_rng(args.seed).permutation(len(x))
    val, train = order[:2000], order[2000:]
    split = Split(x, y, np.arange(len(x)).astype(str))
    params = ModelParams(
        architecture="resnet", widths=tuple(args.widths), blocks_per_stage=1, stem_stride=args.stem_stride,
        dense_units=64, dropout=0.1,
    )  # fmt: skip
    config = FitConfig(
        epochs=args.epochs, batch_size=128, learning_rate=2.0e-3, weight_decay=5.0e-4, patience=args.epochs,
        augment=True, seed=args.seed, precision=args.precision, everyday=args.everyday,
    )  # fmt: skip
    start = time.time()
    checkpoints = args.root / "ckpt" / args.name
    model = residual_front(build_model(params)) if args.input == "residual" else build_model(params)
    result = fit(model, split.take(train), split.take(val), config, checkpoint_dir=checkpoints)
    minutes = (time.time() - start) / 60

    def predict(images):
        return predict_proba(result.model, images).reshape(-1)

    record = {"name": args.name, "fakes": args.fakes, "reals": len(real), "epochs": args.epochs, "input": args.input}
    return record | scored(args, data, predict, skip=fakes, minutes=minutes)


def scored(args, data, predict, skip=(), minutes=0.0, threshold=0.5) -> dict:
    """``predict`` (images -> P(Fake) or any score) on the validation set, the own generators not in ``skip``,
    and CIFAKE test REAL/FAKE, with a summary line; ``threshold`` is where it calls Fake."""
    from cifake.generalisation import generator_scores, score_generator_set, set_scores

    p_real = predict(data["test_REAL"][:2000])
    record = {"train_minutes": minutes, "threshold": threshold}
    record["validation"] = score_generator_set(predict, args.validation, p_real, threshold)
    held_out = {k: v for k, v in own_generators(args).items() if k not in skip}
    rows = {k: generator_scores(predict(v[:1000]), p_real, threshold) for k, v in held_out.items()}
    record["own_held_out"] = {"per_generator": rows, "mean": set_scores(rows) if rows else None}
    record["sd_test_caught"] = float(np.mean(predict(data["test_FAKE"][:2000]) >= threshold))
    record["real_called_real"] = float(np.mean(p_real < threshold))
    v = record["validation"]["mean"]
    record["summary"] = {
        "name": args.name, "val_mean_caught": round(v["mean_caught"], 4), "val_min_caught": round(v["min_caught"], 4),
        "val_mean_auc": round(v["mean_roc_auc"], 4), "real_called_real": record["real_called_real"],
        "sd_caught": record["sd_test_caught"], "held_out": {k: round(r["caught"], 3) for k, r in rows.items()},
        "minutes": round(minutes, 1),
    }  # fmt: skip
    return record


def residual_front(model):
    """``model`` fed each image's residual against its 2x2 block means (NPR's idea, Tan et al. 2024: upsampling
    ties neighbouring pixels together), scaled 4x around mid-grey."""
    import keras

    pixels = keras.Input((32, 32, 3), name="pixels")
    blocks = keras.layers.UpSampling2D(2)(keras.layers.AveragePooling2D(2)(pixels))
    residual = keras.layers.Subtract()([pixels, blocks])
    return keras.Model(pixels, model(keras.layers.Rescaling(4.0, offset=127.5)(residual)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = {
        "data": cmd_data, "diffusion": cmd_diffusion, "fakes": cmd_fakes, "gan": cmd_gan, "ae": cmd_ae,
        "warp": cmd_warp, "semantic": cmd_semantic, "ensemble": cmd_ensemble, "pixel": cmd_pixel,
        "spectrum": cmd_spectrum, "lowlevel": cmd_lowlevel, "layers": cmd_layers, "detect": cmd_detect,
        "file": cmd_file,
    }  # fmt: skip
    parser.add_argument("step", choices=list(steps))
    parser.add_argument("--root", type=Path, default=ROOT / "probes")
    parser.add_argument("--cifake", type=Path, default=Path("/tmp/cifake"), help="an extracted CIFAKE folder")
    parser.add_argument("--validation", type=Path, default=ROOT.parent / "shared" / "generators32" / "fakes")
    parser.add_argument("--name", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=2.0e-3)
    parser.add_argument("--widths", type=int, nargs="+", default=None)
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--upsample", default="nearest")
    parser.add_argument("--loss", default="ns", help="GAN loss: ns or hinge")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--count", type=int, default=12000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.45, 0.6])
    parser.add_argument("--amplitude", type=float, default=3.0, help="warp: largest displacement in pixels")
    parser.add_argument("--grid", type=int, default=4, help="warp: lattice the displacement field is drawn on")
    parser.add_argument("--fakes", default="sd=24000")
    parser.add_argument("--reals", type=int, default=24000)
    parser.add_argument("--outliers", default="", help="semantic: images to be unsure of, as --fakes")
    parser.add_argument(
        "--holdout", choices=["none", "shipped-val"], default="none",
        help="semantic: train/REAL images kept out of training (shipped-val: those the shipped models never saw)",
    )  # fmt: skip
    parser.add_argument("--rotation", action="store_true", help="semantic: also name each image's quarter turn")
    parser.add_argument("--activation", default="gelu", help="semantic: the classifier's activation")
    parser.add_argument("--members", nargs="+", default=[], help="ensemble: the semantic steps' names")
    parser.add_argument("--pixel", default="", help="ensemble: a pixel step's name, its code length joined in")
    parser.add_argument("--arch", choices=["vgg", "airbench"], default="vgg", help="semantic: the classifier")
    parser.add_argument("--batch", type=int, default=256, help="semantic, pixel: batch size")
    parser.add_argument("--bias-scale", type=float, default=1.0, help="semantic airbench: batch-norm bias scale")
    parser.add_argument("--smoothing", type=float, default=0.0, help="semantic: label smoothing")
    parser.add_argument("--mixup", type=float, default=0.0, help="semantic: mixup's Beta alpha (0: off)")
    parser.add_argument("--coarse", type=int, default=1, help="semantic airbench: sees k x k block means only")
    parser.add_argument("--oe", type=float, default=0.5, help="semantic: weight of the outlier-exposure loss")
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--everyday", type=float, default=0.5)
    parser.add_argument("--input", choices=["pixels", "residual"], default="pixels", help="what the detector sees")
    args = parser.parse_args()
    if args.widths is None:
        defaults = {"diffusion": [32, 64, 96], "gan": [256, 128, 64], "ae": [256, 128, 64], "semantic": [64, 128, 256]}
        args.widths = defaults.get(args.step, [32, 64, 128])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    (args.root / args.name).mkdir(parents=True, exist_ok=True)
    steps[args.step](args)


if __name__ == "__main__":
    main()
