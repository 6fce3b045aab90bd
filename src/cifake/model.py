"""The detector networks, and saving/loading them safely.

Every model takes float pixels in [0, 255], shape ``(N, 32, 32, 3)``, rescales
inside (a ``Rescaling`` layer, optionally followed by per-image standardisation)
and outputs P(Fake) from a sigmoid. The layer before the sigmoid is named
``logits`` so that training and attacks can use numerically stable losses;
only built-in Keras layers are used, so a saved model loads with
``safe_mode=True`` and no custom objects.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from cifake.config import ModelParams
from cifake.errors import CifakeError
from cifake.fileio import atomic_path
from cifake.images import IMAGE_SIZE

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
LOGITS_LAYER = "logits"


class ModelLoadError(CifakeError, RuntimeError):
    """A model file that cannot be loaded safely; the message says why."""


PRECISIONS = ("float32", "mixed_bfloat16")
OUTPUT_LAYERS = (LOGITS_LAYER, "p_fake")  # always float32, whatever the precision


def build_model(params: ModelParams) -> keras.Model:
    """Build the architecture named by ``params.architecture`` (float32)."""
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if params.normalization == "per_image":  # (x - mean) / sqrt(variance + 1e-4); 1e-4 caps the gain
        # on near-flat images (std under 2.5 grey levels), where tiny pixel changes would be magnified
        x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, epsilon=1e-4, name="per_image")(x)
    body = {"seed_cnn": _seed_cnn, "resnet": _resnet, "vgg": _vgg}[params.architecture]
    x = body(x, params)
    logits = layers.Dense(1, name=LOGITS_LAYER, dtype="float32")(x)
    outputs = layers.Activation("sigmoid", name="p_fake", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=f"cifake_{params.architecture}")


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of ``model`` (same weights) whose hidden layers compute in ``precision``.

    ``mixed_bfloat16`` keeps float32 variables and computes in bfloat16 (about
    1.1-1.5x faster on CPUs with AVX-512 BF16 or AMX; emulated, so slower, elsewhere); the input,
    the logit and P(Fake) stay float32. A flip-averaged model's inner network is converted too (its
    config nests it, so it is rebuilt around a converted copy); a model that joins networks
    (cifake.generalist) has each converted and keeps its own layers, which map their scores to P(Fake), in
    float32. Saved models are converted back to ``float32``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    single, averaged = without_flip_average(model)
    if averaged:
        return with_flip_average(with_precision(single, precision), view_shift(model))
    config = model.get_config()
    networks = {layer.name: layer for layer in model.layers if isinstance(layer, keras.Model)}
    for layer in config["layers"]:
        name = layer["config"]["name"]
        if name in networks:  # a joined model's networks are converted; its own layers (the join) stay float32
            layer["config"] = with_precision(networks[name], precision).get_config()
        elif not networks and layer["class_name"] != "InputLayer" and name not in OUTPUT_LAYERS:
            layer["config"]["dtype"] = precision
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _seed_cnn(x, params: ModelParams):
    """The seed's CNN: conv+ReLU and max-pooling per width, then dense layers with dropout."""
    for i, width in enumerate(params.widths):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(params.dense_units, activation="relu", name="dense")(x)
    return layers.Dropout(params.dropout, name="dropout")(x)


def _vgg(x, params: ModelParams):
    """VGG-style: per width, ``blocks_per_stage`` conv+BN+ReLU layers, then 2x2 max-pooling."""
    for s, (width, blocks) in enumerate(zip(params.widths, params.stage_blocks(), strict=False)):
        for b in range(blocks):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{s}c{b}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"s{s}c{b}_bn")(x)
            x = layers.ReLU(name=f"s{s}c{b}_relu")(x)
        x = layers.MaxPooling2D(name=f"s{s}_pool")(x)
    x = layers.GlobalMaxPooling2D(name="gmp")(x)
    return layers.Dropout(params.dropout, name="dropout")(x)


def _resnet(x, params: ModelParams):
    """A small residual CNN: a stem (stride ``stem_stride``), one stage per width, basic blocks."""
    x = layers.Conv2D(
        params.widths[0], 3, strides=params.stem_stride, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for s, (width, blocks) in enumerate(zip(params.widths, params.stage_blocks(), strict=False)):
        for b in range(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            x = _basic_block(x, width, stride, name=f"s{s}b{b}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(params.dropout, name="dropout")(x)


def _basic_block(x, width: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


SINGLE_VIEW = "single_view"  # the network nested inside a flip-averaged model


def with_flip_average(model: keras.Model, shift: int = 0) -> keras.Model:
    """``model`` made to average its logit over each image and its mirror image (test-time augmentation).

    Same contract (pixels in, float32 P(Fake) out, a ``logits`` layer) and the same weights; twice the
    inference work. Attacks differentiate through every view, so robustness figures stay white-box.
    With ``shift`` (pixels), both views are also averaged over four diagonal shifts of them (edges
    reflected, as training's shifts are): ten views, five times the work of the flip average.
    Views are frozen 0/1 matrices over the width and height axes (built-in layers only, so the file
    loads with ``safe_mode=True``). A model that is already flip-averaged is returned as it is.
    """
    if _single_view(model) is not None:
        return model
    view = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output, name=SINGLE_VIEW)
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    images = [pixels, _mirror(pixels)]
    if shift:
        images += [
            _shifted(image, dy * shift, dx * shift, name=f"shift{shift}_{i}{k}")
            for i, image in enumerate(images)
            for k, (dy, dx) in enumerate(DIAGONALS)
        ]
    logits = layers.Average(name=LOGITS_LAYER, dtype="float32")([view(image) for image in images])
    outputs = layers.Activation("sigmoid", name="p_fake", dtype="float32")(logits)
    return keras.Model(pixels, outputs, name=model.name)


DIAGONALS = ((1, 1), (-1, -1), (1, -1), (-1, 1))  # the shifted views' directions, (down, right)


def view_shift(model: keras.Model) -> int:
    """The pixel shift of a flip-averaged model's shifted views (0 if it has none)."""
    names = [layer.name for layer in model.layers if layer.name.startswith("shift") and layer.name.endswith("_rows")]
    return int(names[0][len("shift") : names[0].index("_")]) if names else 0


def without_flip_average(model: keras.Model) -> tuple[keras.Model, bool]:
    """The single-view network inside a flip-averaged model (shared weights), and whether there was one."""
    view = _single_view(model)
    if view is None:
        return model, False
    outputs = layers.Activation("sigmoid", name="p_fake", dtype="float32")(view.output)
    return keras.Model(view.input, outputs, name=model.name), True


def _single_view(model: keras.Model) -> keras.Model | None:
    """The logit network nested in a flip-averaged model; None for any other model."""
    try:
        return model.get_layer(SINGLE_VIEW)
    except ValueError:
        return None


def _mirror(pixels):
    """Images flipped left to right: (N, H, W, C) -> (N, H, C, W), a fixed anti-identity over W, and back."""
    x = layers.Permute((1, 3, 2), name="width_last", dtype="float32")(pixels)
    x = _fixed_map(x, np.arange(IMAGE_SIZE)[::-1], "mirror")
    return layers.Permute((1, 3, 2), name="width_back", dtype="float32")(x)


def _shifted(pixels, dy: int, dx: int, name: str):
    """Images moved by ``(dy, dx)`` pixels, edges reflected: a fixed 0/1 matrix over H, then over W."""
    turn = (2, 3, 1)  # (H, W, C) -> (W, C, H) -> (C, H, W) -> (H, W, C)
    x = layers.Permute(turn, name=f"{name}_height_last", dtype="float32")(pixels)
    x = _fixed_map(x, reflected(dy), f"{name}_rows")
    x = layers.Permute(turn, name=f"{name}_width_last", dtype="float32")(x)
    x = _fixed_map(x, reflected(dx), f"{name}_cols")
    return layers.Permute(turn, name=f"{name}_back", dtype="float32")(x)


def reflected(shift: int) -> np.ndarray:
    """For each output position along an axis, the input position it reads after a shift (edges reflected)."""
    j = np.arange(IMAGE_SIZE) + shift
    return np.where(j < 0, -j, np.where(j > IMAGE_SIZE - 1, 2 * (IMAGE_SIZE - 1) - j, j))


def _fixed_map(x, source: np.ndarray, name: str):
    """``x`` with its last axis re-indexed: output ``j`` is input ``source[j]`` (a frozen 0/1 Dense layer)."""
    # a zeros initializer draws nothing from the random stream when the model is built or loaded,
    # so fine-tuning a loaded flip-averaged model sees the same randomness as a single-view one
    dense = layers.Dense(
        IMAGE_SIZE, use_bias=False, trainable=False, kernel_initializer="zeros", name=name, dtype="float32"
    )
    out = dense(x)
    kernel = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype="float32")
    kernel[source, np.arange(IMAGE_SIZE)] = 1.0
    dense.set_weights([kernel])
    return out


def logit_model(model: keras.Model) -> keras.Model | None:
    """A view of ``model`` (shared weights) that outputs the pre-sigmoid logit, if it has one."""
    try:
        layer = model.get_layer(LOGITS_LAYER)
    except ValueError:
        return None
    return keras.Model(model.input, layer.output, name=f"{model.name}_logits")


# One traced inference graph per model (about 2x faster than eager calls on a 2-core CPU).
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _alive(ref: weakref.ref) -> keras.Model:
    """The model behind a weak reference (a traced forward pass outlives no model)."""
    model = ref()
    if model is None:
        raise RuntimeError("the model of this cached forward pass no longer exists")
    return model


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """P(Fake) for float pixels in [0, 255], shape ``(N, 32, 32, 3)``; returns shape ``(N,)``.

    Runs ``model`` in inference mode through a ``tf.function`` traced once per model
    (for any batch size); the graph reads the model's variables, so it follows
    weight updates during training.
    """
    forward = _FORWARD.get(model)
    if forward is None:
        ref = weakref.ref(model)  # the cache must not keep the model alive
        # (running a flip-averaged model's two views as one batched call of 2N images was measured no faster
        # on this CPU: benchmarks/inference_ceiling.json, issue 28)
        forward = tf.function(
            lambda pixels: _alive(ref)(pixels, training=False),
            input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)],
        )
        _FORWARD[model] = forward
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(np.asarray(x[start : start + batch_size], dtype=np.float32))
        out[start : start + batch_size] = np.reshape(forward(batch).numpy(), [-1])
    return out


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save the full model (``.keras``), written whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True`` and check its input/output contract."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise ModelLoadError(
                f"{path}: refused: the model needs unsafe deserialisation (e.g. a Lambda layer "
                "holding Python bytecode), which could run arbitrary code. Only load such a file "
                "if you trust it, with keras.saving.load_model(..., safe_mode=False)."
            ) from None
        raise ModelLoadError(f"{path}: not a loadable Keras model: {exc}") from None
    except Exception as exc:  # zip/h5 errors, missing custom classes, ...
        raise ModelLoadError(f"{path}: not a loadable Keras model: {exc}") from None
    in_shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    if in_shape != INPUT_SHAPE or out_shape not in ((1,), ()):
        raise ModelLoadError(f"{path}: expected input (N, 32, 32, 3) and output (N, 1), got {in_shape} -> {out_shape}")
    return model
