"""The local web demo's workings: classify with heatmaps, attack with PGD, apply everyday changes.

The page itself (``demo_app.py``, a Streamlit script) only lays these results out;
everything it shows is computed here, by functions that tests call directly.
:func:`serve` starts the page on this machine, offline (no usage statistics, no
external fonts or scripts: Streamlit serves its own files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cifake.corruptions import corrupt
from cifake.errors import CifakeError
from cifake.explain import enlarge, heatmap, overlay
from cifake.images import (
    IMAGE_SIZE,
    LABEL_NAMES,
    MUCH_LARGER,
    ImageError,
    decode_image,
    source_size,
)
from cifake.model import load_model, predict_proba

MAX_UPLOAD_MB = 16  # the page refuses bigger files before they are sent; read_upload checks again
PHOTO_MODES = {"RGB", "YCbCr", "CMYK"}
FEW_COLOURS = 48  # a 32x32 photograph has hundreds of distinct colours; a drawing or an icon far fewer
PGD_STEPS = 20
PGD_STEP_FRACTION = 0.25  # as evaluate's PGD-20: steps of eps / 4

# Every slider's "no change" setting, and the kind of corruptions.py it drives.
NEUTRAL = {"jpeg": 100.0, "blur": 0.0, "resize": 32.0, "brightness": 0.0, "contrast": 1.0, "sharpen": 0.0}


@dataclass
class Upload:
    """One uploaded image, decoded to what the network sees, with notes on how unlike CIFAKE it is."""

    name: str
    pixels: np.ndarray  # (32, 32, 3) uint8
    notes: list[str] = field(default_factory=list)
    digest: str = ""


@dataclass
class Verdict:
    """One model's decision on one image."""

    model: str
    p_fake: float
    label: str
    heat: np.ndarray | None = None  # (256, 256, 3) uint8 overlay


@dataclass
class AttackResult:
    target: str
    eps: int  # in grey levels (eps/255)
    adversarial: np.ndarray  # (32, 32, 3) float32 in [0, 255]
    perturbation: np.ndarray  # (32, 32, 3) uint8, the change amplified to the full range around grey
    before: dict[str, float]
    after: dict[str, float]


def load_models(paths: Sequence[str | Path]) -> dict[str, keras.Model]:
    """Load each model (safely); named by file stem, made unique if two stems clash."""
    models: dict[str, keras.Model] = {}
    for path in paths:
        name = Path(path).stem
        while name in models:
            name += "'"
        models[name] = load_model(path)
    return models


def read_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_MB << 20) -> Upload:
    """Decode an uploaded file as ``cifake predict`` does; :class:`ImageError` says why it cannot be."""
    if len(data) > max_bytes:
        raise ImageError(f"file of {len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit")
    pixels = decode_image(data)
    return Upload(name, pixels, input_notes(data, pixels), hashlib.sha256(data).hexdigest()[:16])


def input_notes(data: bytes, pixels: np.ndarray) -> list[str]:
    """Why an input is unlike CIFAKE's 32x32 photographs and generated images (empty when it is like them)."""
    notes = []
    size = source_size(data)
    if size is not None:
        width, height, mode = size
        if max(width, height) >= MUCH_LARGER:
            notes.append(f"downscaled from {width}x{height} to 32x32: most of its detail is gone")
        if mode not in PHOTO_MODES:
            notes.append(f"not a photograph-like RGB image (Pillow mode {mode}): converted to RGB")
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    if colours < FEW_COLOURS:
        notes.append(f"only {colours} distinct colours: looks like a drawing or a graphic, not a photograph")
    if notes:
        notes.append("the detector learnt 32x32 CIFAKE images and judges the 32x32 thumbnail shown")
    return notes


def scores(models: Mapping[str, keras.Model], images: np.ndarray) -> dict[str, np.ndarray]:
    """P(Fake) of each model for float pixels in [0, 255], shape (N, 32, 32, 3)."""
    x = np.asarray(images, dtype=np.float32)
    return {name: predict_proba(model, x) for name, model in models.items()}


def classify(
    models: Mapping[str, keras.Model], pixels: np.ndarray, threshold: float = 0.5, heatmaps: bool = True
) -> list[Verdict]:
    """Each model's label, P(Fake) and (optionally) heatmap overlay for one (32, 32, 3) image."""
    x = np.asarray(pixels, dtype=np.float32)[None]
    verdicts = []
    for name, model in models.items():
        p = float(predict_proba(model, x)[0])
        heat = overlay(pixels, heatmap(model, x)[0]) if heatmaps else None
        verdicts.append(Verdict(name, p, LABEL_NAMES[int(p >= threshold)], heat))
    return verdicts


def attack(
    models: Mapping[str, keras.Model],
    target: str,
    pixels: np.ndarray,
    eps: int,
    threshold: float = 0.5,
    steps: int = PGD_STEPS,
    seed: int = 0,
) -> AttackResult:
    """PGD (``attacks.pgd``) of ``eps``/255 against ``target``, pushing away from its current decision.

    Returns the attacked image and every model's P(Fake) before and after: white-box
    for ``target``, transfer for the others. Seeded, so the same request gives the same image.
    """
    import tensorflow as tf

    from cifake.attacks import logit_fn, pgd

    if not 1 <= eps <= 8:
        raise ValueError(f"eps must be 1 to 8 (/255), got {eps}")
    x = np.asarray(pixels, dtype=np.float32)[None]
    before = {name: float(p[0]) for name, p in scores(models, x).items()}
    decision = float(before[target] >= threshold)
    x01, e = tf.constant(x / 255.0), eps / 255.0
    adv01 = pgd(
        logit_fn(models[target]),
        x01,
        tf.constant([decision]),
        e,
        PGD_STEP_FRACTION * e,
        steps,
        seed=keras.random.SeedGenerator(seed),
    )
    adversarial = adv01.numpy()[0] * 255.0
    after = {name: float(p[0]) for name, p in scores(models, adversarial[None]).items()}
    delta = adversarial - x[0]
    amplified = np.clip(127.5 + delta * (127.5 / eps), 0, 255).astype(np.uint8)
    return AttackResult(target, eps, adversarial, amplified, before, after)


def change(
    models: Mapping[str, keras.Model], pixels: np.ndarray, settings: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, float]]:
    """Apply the everyday changes in ``settings`` (kind -> strength; :data:`NEUTRAL` ones skipped), in order.

    Returns the changed (32, 32, 3) uint8 image and each model's P(Fake) on it.
    """
    unknown = set(settings) - set(NEUTRAL)
    if unknown:
        raise ValueError(f"unknown change {sorted(unknown)}; use any of {sorted(NEUTRAL)}")
    x = np.asarray(pixels, dtype=np.uint8)[None]
    for kind, value in settings.items():
        if value != NEUTRAL[kind]:
            x = corrupt(x, kind, value)
    return x[0], {name: float(p[0]) for name, p in scores(models, x).items()}


def shown(pixels: np.ndarray) -> np.ndarray:
    """An image drawn 8x larger (what the network sees, visible); float pixels are rounded."""
    return enlarge(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


APP = Path(__file__).with_name("demo_app.py")
assert IMAGE_SIZE == 32  # the page's wording says 32x32


def serve(model_paths: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8501) -> None:
    """Serve the page at http://host:port until Ctrl-C; offline, nothing sent anywhere."""
    from streamlit.web import bootstrap

    missing = [str(p) for p in model_paths if not Path(p).is_file()]
    if missing:
        raise CifakeError(f"model file not found: {', '.join(missing)}")
    flags = {
        "server_address": host,
        "server_port": port,
        "server_headless": True,  # never opens a browser, never asks for an e-mail address
        "server_maxUploadSize": MAX_UPLOAD_MB,
        "server_fileWatcherType": "none",
        "server_runOnSave": False,
        "browser_gatherUsageStats": False,  # no analytics
        "browser_serverAddress": host,
        "global_developmentMode": False,
        "client_toolbarMode": "minimal",
        "client_showErrorDetails": "none",
        "theme_base": "light",
    }
    print(f"cifake demo: http://{host}:{port} (Ctrl-C stops it)", flush=True)
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [str(Path(p).resolve()) for p in model_paths], flags)
