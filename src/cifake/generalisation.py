"""How far a detector carries over to generators it never trained on (issue 40).

A *generator set* is a folder with one sub-folder of fakes per generator (for example ``generators32/fakes``:
``gan_dcgan/``, ``ddpm/``, ...). For each generator: the share of its images called Fake, with a 95 % Wilson
interval, and the ROC AUC of P(Fake) between its images and real photographs (CIFAKE test REAL). The mean over
generators weighs every generator equally, whatever its number of images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cifake.fileio import read_json, sha256_file
from cifake.images import IMAGE_SUFFIXES, ImageError, load_image
from cifake.metrics import accuracy_interval

log = logging.getLogger(__name__)


def generator_folders(root: str | Path) -> dict[str, Path]:
    """The generator sub-folders of a set that hold at least one image file, by name, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"generator set {root} is not a folder")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and _image_files(p)}
    if not folders:
        raise FileNotFoundError(f"generator set {root} has no sub-folder with images")
    return folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(folder: Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Every readable image under ``folder`` as (N, 32, 32, 3) uint8, and the unreadable ones with why."""
    images, failed = [], []
    for path in _image_files(folder):
        try:
            images.append(load_image(path))
        except ImageError as exc:
            failed.append((str(path.relative_to(folder)), str(exc)))
    for name, why in failed:
        log.warning("skipped %s/%s: %s", folder.name, name, why)
    return np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8), failed


def generator_scores(p_fake: np.ndarray, p_real: np.ndarray, threshold: float = 0.5) -> dict:
    """One generator's row: images, share called Fake with its interval, and ROC AUC against real images."""
    caught = int(np.sum(p_fake >= threshold))
    low, high = accuracy_interval(caught, len(p_fake))
    labels = np.r_[np.zeros(len(p_real)), np.ones(len(p_fake))]
    auc = float(roc_auc_score(labels, np.r_[p_real, p_fake])) if len(p_real) and len(p_fake) else float("nan")
    return {"images": len(p_fake), "caught": caught / len(p_fake), "ci_low": low, "ci_high": high, "roc_auc": auc}


def set_scores(rows: dict[str, dict]) -> dict:
    """The mean over generators (each counts once) of the share caught and the ROC AUC, and the lowest share."""
    caught = [r["caught"] for r in rows.values()]
    return {
        "generators": len(rows),
        "mean_caught": float(np.mean(caught)),
        "min_caught": float(np.min(caught)),
        "mean_roc_auc": float(np.mean([r["roc_auc"] for r in rows.values()])),
    }


def load_set(root: str | Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The readable images of every generator of the set under ``root``, and the unreadable files with why."""
    images, skipped = {}, []
    for name, folder in generator_folders(root).items():
        x, failed = load_folder(folder)
        skipped += [f"{name}/{file}: {why}" for file, why in failed]
        if len(x):
            images[name] = x
    return images, skipped


def score_loaded(
    predict: Callable[[np.ndarray], np.ndarray],
    loaded: tuple[dict[str, np.ndarray], list[str]],
    p_real: np.ndarray,
    threshold: float = 0.5,
) -> dict:
    """Score a set loaded by :func:`load_set` with ``predict`` (uint8 images to P(Fake)); ``p_real`` is the same
    model's P(Fake) on real photographs. Returns ``{"per_generator", "mean", "real_called_real", "skipped"}``."""
    images, skipped = loaded
    rows = {name: generator_scores(np.asarray(predict(x)).reshape(-1), p_real, threshold) for name, x in images.items()}
    real_called_real = float(np.mean(p_real < threshold)) if len(p_real) else float("nan")
    return {"per_generator": rows, "mean": set_scores(rows), "real_called_real": real_called_real, "skipped": skipped}


def score_generator_set(
    predict: Callable[[np.ndarray], np.ndarray], root: str | Path, p_real: np.ndarray, threshold: float = 0.5
) -> dict:
    """:func:`score_loaded` of the set under ``root``."""
    return score_loaded(predict, load_set(root), p_real, threshold)


def score_sets(
    sets: Mapping[str, str], models: Mapping[str, tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]]
) -> dict[str, dict]:
    """Every generator set (name -> folder) scored by every model (name -> (predict, its P(Fake) on real
    photographs)). A set whose folder is absent is kept as ``{"path": ..., "skipped": why}``."""
    out: dict[str, dict] = {}
    for set_name, root in sets.items():
        out[set_name] = {"path": str(root)}
        if not Path(root).is_dir():
            out[set_name]["skipped"] = "folder not found"
            log.warning("generator set %s skipped: %s is not a folder", set_name, root)
            continue
        loaded = load_set(root)  # decoded once, scored by every model
        for name, (predict, p_real) in models.items():
            out[set_name][name] = score_loaded(predict, loaded, p_real)
    return out


def plot_rows(scored: dict[str, dict], model: str) -> list[dict]:
    """One row per generator of every scored set, and one per set's mean: share of ``model``'s calls Fake."""
    rows = []
    for set_name, result in scored.items():
        if model not in result:
            continue
        for name, row in result[model]["per_generator"].items():
            rows.append({"generator": f"{set_name}/{name}", "caught": row["caught"]})
        rows.append({"generator": f"{set_name} (mean)", "caught": result[model]["mean"]["mean_caught"]})
    return rows


def headline(scored: dict[str, dict], model: str) -> dict:
    """Per set the mean and lowest share caught and the real photographs called Real, for ``summary.json``."""
    return {
        set_name: {
            "mean_caught": round(result[model]["mean"]["mean_caught"], 4),
            "min_caught": round(result[model]["mean"]["min_caught"], 4),
            "real_called_real": round(result[model]["real_called_real"], 4),
        }
        for set_name, result in scored.items()
        if model in result
    }


FIGURES_FILE = "generalisation.json"  # beside shipped models: each file's figures on generators it never saw


def figures_for(model_path: str | Path) -> dict | None:
    """What ``generalisation.json`` beside ``model_path`` records for that very file (same sha256), or None."""
    path = Path(model_path)
    table = path.parent / FIGURES_FILE
    if not table.is_file():
        return None
    entry = read_json(table).get(path.name)
    return entry if entry and entry.get("sha256") == sha256_file(path) else None


def ood_note(figures: dict | None) -> str:
    """What a user should know about images unlike CIFAKE's, from the measured figures when there are some."""
    learnt = "the detector learnt 32x32 CIFAKE images (Stable Diffusion v1.4 against CIFAR-10 photographs)"
    sets = [(name, s) for name, s in (figures or {}).get("sets", {}).items() if "mean" in s]
    if not sets:
        return f"{learnt}; how it does on other generators was not measured for this model file"
    name, s = sets[0]
    caught = [r["caught"] for r in s["per_generator"].values()]
    return (
        f"{learnt}; on {len(caught)} other generators ({name}) it called {s['mean']['mean_caught']:.1%} of the "
        f"images Fake ({min(caught):.0%}-{max(caught):.0%} per generator), so a Real label says little about them"
    )
