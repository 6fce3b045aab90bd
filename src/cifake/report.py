"""What evaluation shows a person: plot rows for DVC, the attacked-images picture, the registry text."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cifake.evaluation import eps_key
from cifake.fileio import atomic_path
from cifake.images import LABEL_NAMES


def confusion_rows(y_true, p_fake, threshold: float = 0.5) -> list[dict]:
    """One ``actual``/``predicted`` row per image, for DVC's confusion template."""
    return [
        {"actual": LABEL_NAMES[int(a)], "predicted": LABEL_NAMES[int(p >= threshold)]}
        for a, p in zip(y_true, p_fake, strict=False)
    ]


def robustness_rows(scores: dict[str, dict], epsilons) -> list[dict]:
    """One row per epsilon: ``<model>_<attack>`` accuracy columns, for the robustness plot."""
    rows = []
    for eps in epsilons:
        row = {"epsilon": eps, "epsilon_255": round(eps * 255, 2)}
        for model, s in scores.items():
            for method in ("fgsm", "pgd"):
                row[f"{model}_{method}"] = s[eps_key(method, eps)]["accuracy"]
            for source, t in s.get("transfer", {}).items():
                row[f"{model}_transfer_from_{source}"] = t[eps_key("pgd", eps)]["accuracy"]
        rows.append(row)
    return rows


def corruption_rows(scores: dict) -> list[dict]:
    """One row per everyday change (and the clean test set), for the corruption bar plot of one model."""
    rows = [{"condition": "clean (no change)", "accuracy": scores["clean"]["accuracy"]}]
    return rows + [{"condition": name, "accuracy": acc} for name, acc in scores["corruptions"]["accuracy"].items()]


def headline(out: dict) -> dict:
    """The few figures that matter, for ``metrics/summary.json`` (``dvc metrics show metrics/summary.json``)."""
    summary = {
        "competition_score": round(out["competition_score"], 4),
        "test_dataset_2_accuracy": round(out["test_dataset_2"]["accuracy"], 4),
    }
    for model in ("clean_model", "robust_model"):
        s = out[model]
        row = {"accuracy": s["clean"]["accuracy"], "f1": s["clean"]["f1"]}
        row.update({k: v["accuracy"] for k, v in s.items() if k.startswith("pgd_eps")})
        row.update(corruption_mean=s["corruptions"]["mean"], corruption_worst=s["corruptions"]["worst"])
        summary[model.removesuffix("_model")] = {k: round(v, 4) for k, v in row.items()}
    return summary


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of one uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def adversarial_grid(
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], y, path, scale: int = 3
) -> None:
    """Save a picture of attacked images: per model, originals, amplified perturbations, perturbed images.

    ``rows`` holds ``(model name, x, x_adv, p_clean, p_adv)`` with images in [0, 255]; under every
    image stands its true label (originals) or the model's label and P(Fake).
    """
    n, side = len(y), 32 * scale
    cell_h, label_w = side + 26, 200
    canvas = Image.new("RGB", (label_w + n * (side + 6), len(rows) * 3 * cell_h + 6), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, x, x_adv, p_clean, p_adv) in enumerate(rows):
        for k, (title, images, captions) in enumerate(_panels(name, x, x_adv, p_clean, p_adv, y)):
            top = (r * 3 + k) * cell_h + 3
            draw.text((4, top + side // 2), title, fill="black")
            for i, (img, caption) in enumerate(zip(images, captions, strict=False)):
                tile = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).resize(
                    (side, side), Image.Resampling.NEAREST
                )
                left = label_w + i * (side + 6)
                canvas.paste(tile, (left, top))
                draw.text((left, top + side + 4), caption, fill="black")
    with atomic_path(Path(path)) as tmp:
        canvas.save(tmp, format="PNG")


def _panels(name, x, x_adv, p_clean, p_adv, y):
    delta = x_adv.astype(np.float32) - x.astype(np.float32)
    gain = 127.0 / max(float(np.abs(delta).max()), 1e-6)
    return [
        (f"{name}: original", x, [f"{LABEL_NAMES[int(t)]} / p={p:.2f}" for t, p in zip(y, p_clean, strict=False)]),
        (f"{name}: perturbation x{gain:.0f}", 127.5 + delta * gain, ["" for _ in y]),
        (f"{name}: attacked", x_adv, [f"-> {LABEL_NAMES[int(p >= 0.5)]} p={p:.2f}" for p in p_adv]),
    ]


def evaluation_summary(scores: dict, attack_images: int, pgd_steps: int, test2: dict | None = None) -> str:
    """One paragraph of a model's test figures, for its registered version's description."""
    clean = scores["clean"]
    pgd = [(k.removeprefix("pgd_eps"), v) for k, v in scores.items() if k.startswith("pgd_eps")]
    text = (
        f"Test set ({clean['n']:,} images): accuracy {clean['accuracy']:.4f} "
        f"[95% CI {clean['accuracy_ci95_low']:.4f}-{clean['accuracy_ci95_high']:.4f}], "
        f"precision {clean['precision']:.4f}, recall {clean['recall']:.4f}, F1 {clean['f1']:.4f} (Fake positive). "
        f"PGD-{pgd_steps} accuracy on {attack_images:,} images: "
        + ", ".join(f"{eps.replace('p', '.')}/255 {v['accuracy']:.4f}" for eps, v in pgd)
        + "."
    )
    if "corruptions" in scores:
        c = scores["corruptions"]
        text += f" Everyday changes: mean {c['mean']:.4f}, worst {c['worst']:.4f} ({c['worst_condition']})."
    for source, t in scores.get("transfer", {}).items():
        text += (
            f" Transfer PGD crafted on {source}: "
            + ", ".join(f"{k.removeprefix('pgd_eps').replace('p', '.')}/255 {v['accuracy']:.4f}" for k, v in t.items())
            + "."
        )
    if test2 is not None:
        text += f" Test_dataset_2 ({test2['attack']}): accuracy {test2['accuracy']:.4f}, F1 {test2['f1']:.4f}."
    return text
