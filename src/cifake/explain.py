"""Heatmaps of what drove a decision, and ``cifake explain`` for a whole folder.

Two methods, one place: :func:`heatmap` is what the demo shows and ``cifake explain``
writes. ``integrated-gradients`` (the default; Sundararajan et al. 2017) integrates
the gradient of the logit along the straight path from a blurred copy of the image
to the image, so it is as fine as the 32x32 input and says which pixels moved the
score away from the image's own coarse content. ``grad-cam`` (Selvaraju et al. 2017)
weights the last convolutional block's maps by their mean gradient; on the shipped
networks that block is 4x4, so each cell covers 8x8 pixels. docs/demo.md says why
integrated gradients is the default. Both are signed towards the decision: evidence
for Fake when the model says Fake, for Real when it says Real. A flip-averaged model
is explained as it decides: through all of its views.
"""

from __future__ import annotations

import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from scipy.ndimage import gaussian_filter

from cifake.errors import CifakeError
from cifake.fileio import atomic_path, write_csv
from cifake.images import IMAGE_SIZE, LABEL_NAMES, ImageError, load_image
from cifake.model import DIAGONALS, SINGLE_VIEW, logit_model, predict_proba, reflected, view_shift

METHODS = ("integrated-gradients", "grad-cam")
DEFAULT_METHOD = "integrated-gradients"
IG_STEPS = 32
BASELINE_SIGMA = 2.0  # the blurred baseline: the image without the fine detail generators get wrong
SCALE = 8  # overlays are 256x256: 32x32 pixels drawn 8x8 each


class ExplainError(CifakeError, RuntimeError):
    """``cifake explain`` cannot start (missing input folder, unwritable output, ...)."""


def _logits(model: keras.Model):
    """The model's float32 pre-sigmoid output for [0, 255] pixels, shape (N,)."""
    logits = logit_model(model)
    if logits is None:
        raise ExplainError(f"model {model.name} has no 'logits' layer to explain")
    return lambda x: tf.reshape(tf.cast(logits(x, training=False), tf.float32), [-1])


def _blurred(x: np.ndarray) -> np.ndarray:
    return gaussian_filter(x, sigma=(0, BASELINE_SIGMA, BASELINE_SIGMA, 0), mode="reflect").astype(np.float32)


# One traced path-gradient function per model (the model is held weakly, as predict_proba does).
_PATH_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _path_gradients(model: keras.Model):
    """A traced function: (path images, the image) -> (mean logit gradient along the path, the image's logit)."""
    fn = _PATH_GRADIENTS.get(model)
    if fn is None:
        forward = _logits(model)

        def run(path, image):
            with tf.GradientTape() as tape:
                tape.watch(path)
                logits = forward(path)
            return tf.reduce_mean(tape.gradient(logits, path), axis=0), forward(image)[0]

        spec = [tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)] * 2
        fn = _PATH_GRADIENTS[model] = tf.function(run, input_signature=spec)
    return fn


def integrated_gradients(model: keras.Model, x: np.ndarray, steps: int = IG_STEPS) -> np.ndarray:
    """Per-pixel attribution (N, 32, 32), signed towards each image's decision, from a blurred baseline."""
    gradients = _path_gradients(model)
    x = np.asarray(x, dtype=np.float32)
    base = _blurred(x)
    alphas = ((np.arange(steps, dtype=np.float32) + 0.5) / steps).reshape(-1, 1, 1, 1)
    out = np.empty(x.shape[:3], dtype=np.float32)
    for i in range(len(x)):
        path = base[i : i + 1] + alphas * (x[i : i + 1] - base[i : i + 1])
        mean_grad, logit = gradients(tf.constant(path), tf.constant(x[i : i + 1]))
        sign = 1.0 if float(logit) >= 0.0 else -1.0
        out[i] = ((x[i] - base[i]) * mean_grad.numpy() * sign).sum(axis=-1)
    return out


def _last_block(model: keras.Model) -> tuple[keras.Model, bool]:
    """(a network giving the last 4-D feature map and the logit, whether ``model`` is flip-averaged)."""
    try:
        view, flipped = model.get_layer(SINGLE_VIEW), True
    except ValueError:
        view, flipped = logit_model(model), False
        if view is None:
            raise ExplainError(f"model {model.name} has no 'logits' layer to explain") from None
    feature = next(layer for layer in reversed(view.layers) if len(layer.output.shape) == 4)
    return keras.Model(view.input, [feature.output, view.output]), flipped


def grad_cam(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Grad-CAM on the last convolutional block, upsampled to (N, 32, 32), signed towards the decision."""
    net, flipped = _last_block(model)
    x = tf.constant(np.asarray(x, dtype=np.float32))
    sign = tf.sign(_logits(model)(x) + 1e-12)

    def cam(images):
        with tf.GradientTape() as tape:
            maps, logits = net(images, training=False)
            tape.watch(maps)
            score = tf.reduce_sum(tf.reshape(logits, [-1]) * sign)
        weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
        heat = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
        return tf.image.resize(heat, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear")[..., 0]

    if not flipped:
        return cam(x).numpy()
    views = _views(model)  # the model averages its views: so does its explanation, each map moved back
    return (tf.add_n([_moved_back(cam(_as_seen(x, *view)), *view) for view in views]) / len(views)).numpy()


def _views(model: keras.Model) -> list[tuple[bool, int, int]]:
    """The views a flip-averaged model averages, as (mirrored, down, right) (cifake.model.with_flip_average)."""
    shift = view_shift(model)
    moves = [(0, 0)] + [(dy * shift, dx * shift) for dy, dx in DIAGONALS if shift]
    return [(mirrored, dy, dx) for mirrored in (False, True) for dy, dx in moves]


def _as_seen(x, mirrored: bool, dy: int, dx: int):
    """Images (N, 32, 32, ...) as one view sees them: mirrored, then moved by (dy, dx) with edges reflected."""
    x = tf.reverse(x, axis=[2]) if mirrored else x
    return tf.gather(tf.gather(x, reflected(dy), axis=1), reflected(dx), axis=2)


def _moved_back(heat, mirrored: bool, dy: int, dx: int):
    """A map over one view's pixels put back over the image's (undoes :func:`_as_seen` but at reflected edges)."""
    heat = tf.gather(tf.gather(heat, reflected(-dy), axis=1), reflected(-dx), axis=2)
    return tf.reverse(heat, axis=[2]) if mirrored else heat


def heatmap(model: keras.Model, x: np.ndarray, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Evidence for each image's decision, (N, 32, 32), non-negative, each map summing to 1.

    ``x`` is pixels in [0, 255], shape (N, 32, 32, 3). A map with no positive
    evidence at all is uniform.
    """
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; use one of {METHODS}")
    raw = integrated_gradients(model, x) if method == "integrated-gradients" else grad_cam(model, x)
    raw = np.maximum(raw, 0.0)
    total = raw.sum(axis=(1, 2), keepdims=True)
    flat = np.full_like(raw, 1.0 / raw[0].size)
    return np.where(total > 0, raw / np.where(total > 0, total, 1.0), flat)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """The 32x32 image drawn 8x larger with ``heat`` (32x32) over it in the 'inferno' colours; uint8 RGB."""
    from matplotlib import colormaps

    big = np.kron(np.asarray(image, dtype=np.float32), np.ones((SCALE, SCALE, 1), np.float32))
    top = np.percentile(heat, 99)  # a few extreme pixels must not make the rest invisible
    scaled = np.clip(heat / top, 0, 1) if top > 0 else heat
    heat_big = np.asarray(
        Image.fromarray(scaled.astype(np.float32), mode="F").resize(big.shape[1::-1], Image.Resampling.BILINEAR)
    ).clip(0, 1)
    colour = colormaps["inferno"](heat_big)[..., :3] * 255.0
    muted = 0.35 * big + 0.35 * big.mean(axis=-1, keepdims=True)  # the picture dimmed, so the heat stands out
    weight = alpha * heat_big[..., None]
    return np.clip(muted * (1 - weight) + colour * weight + 0.5, 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray) -> np.ndarray:
    """The 32x32 image drawn 8x larger, each pixel a square (what the network sees, made visible)."""
    return np.kron(np.asarray(image, dtype=np.uint8), np.ones((SCALE, SCALE, 1), np.uint8))


@dataclass
class ExplainSummary:
    output_dir: Path
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        text = f"wrote {self.written} heatmaps in {self.seconds:.1f} s -> {self.output_dir}"
        if self.failed:
            text += f"; {len(self.failed)} skipped, listed in {self.output_dir / 'errors.csv'}"
        return text


def explain_folder(
    model: keras.Model, input_dir: str | Path, output_dir: str | Path, method: str = DEFAULT_METHOD
) -> ExplainSummary:
    """Write ``<name>.png`` (the overlay, with label and P(Fake) in ``heatmaps.csv``) per image under ``input_dir``.

    Streams one image at a time; unreadable files are reported on stderr and in
    ``errors.csv``. The output tree mirrors the input's folders.
    """
    from cifake.predict import iter_files

    root, out = Path(input_dir), Path(output_dir)
    if not root.is_dir():
        raise ExplainError(f"input folder does not exist or is not a folder: {root}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExplainError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    if out.resolve() == root.resolve():
        raise ExplainError("the output folder must not be the input folder")
    out_real, summary, rows = out.resolve(), ExplainSummary(output_dir=out), []
    start = time.perf_counter()
    for rel, path, problem in iter_files(root, lambda path: path.resolve().is_relative_to(out_real)):
        if path is not None and problem is None:
            try:
                pixels = load_image(path)[None].astype(np.float32)
            except ImageError as exc:
                problem = str(exc)
        if problem is not None or path is None:
            summary.failed.append((rel, problem or "not a file"))
            print(f"skipped: {rel}: {problem}", file=sys.stderr)
            continue
        p_fake = float(predict_proba(model, pixels)[0])
        target = out / f"{rel}.heatmap.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            Image.fromarray(overlay(pixels[0], heatmap(model, pixels, method)[0])).save(tmp, format="PNG")
        rows.append((rel, LABEL_NAMES[int(p_fake >= 0.5)], f"{p_fake:.6f}", f"{rel}.heatmap.png"))
        summary.written += 1
    write_csv(out / "heatmaps.csv", ["Image Name", "Predicted Label", "P(Fake)", "Heatmap"], rows)
    write_csv(out / "errors.csv", ["Image Name", "Error"], summary.failed)
    summary.seconds = time.perf_counter() - start
    return summary
