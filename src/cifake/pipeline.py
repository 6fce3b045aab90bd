"""Stage-level steps shared by the DVC stage scripts: train/record, evaluate.

Each function writes its DVC outputs first, then records the run in MLflow, so a
tracking server that fails mid-run never costs a trained model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from cifake import tracking
from cifake.config import Params
from cifake.data import Split
from cifake.fileio import atomic_path, read_json, sha256_file, write_csv, write_json
from cifake.training import FitConfig, monitored_metric

log = logging.getLogger(__name__)

PROCESSED = Path("data/processed")
SAMPLE_NOTE = "sample: generated offline by the project, not CIFAKE; says nothing about real detection"


def dataset_info() -> dict:
    """What preprocess recorded about the data (source, hash), for metrics and tags."""
    meta = read_json(PROCESSED / "meta.json")
    return {"source": meta["dataset"], "dataset_sha256": meta["dataset_sha256"]}


def dataset_label(info: dict) -> str:
    """The ``dataset`` value every metrics file carries; says plainly when it is the sample."""
    return SAMPLE_NOTE if info["source"] == "sample" else f"cifake ({info['source']})"


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write a list of dicts as CSV (header from the first row), whole or not at all."""
    header = list(rows[0]) if rows else []
    write_csv(path, header, ([row[k] for k in header] for row in rows))


def _safe_log_epoch(row: dict) -> None:
    try:
        tracking.log_epoch(row)
    except Exception as exc:  # never lose training to a tracking hiccup
        log.warning("MLflow: could not log epoch %s (%s); training goes on", row.get("epoch"), exc)


def train_and_record(
    params: Params,
    *,
    stage: str,
    config: FitConfig,
    stage_params: dict,
    init_model: str | None,
    out_model: str,
    out_metrics: str,
    out_history: str,
    alias: str | None,
) -> dict:
    """Train (from scratch or from ``init_model``), save, then log and register in MLflow."""
    from cifake.model import build_model, load_model, save_model
    from cifake.training import distribution_strategy, fit, is_chief, set_determinism

    set_determinism(params.seed)
    info = dataset_info()
    train, val = Split.load(PROCESSED / "train.npz"), Split.load(PROCESSED / "val.npz")
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        model = load_model(init_model) if init_model else build_model(params.model)
    if not is_chief(strategy):  # a multi_worker helper: it trains its share; the chief saves and logs
        fit(model, train, val, config, strategy=strategy)
        print(f"{stage}: this worker's part of the training is done; the chief saves the model and logs it")
        return {}
    with tracking.stage_run(stage, params.tracking.experiment, stage_params, info):
        start = time.perf_counter()
        history = fit(model, train, val, config, on_epoch=_safe_log_epoch, strategy=strategy)
        seconds = time.perf_counter() - start
        save_model(model, out_model)
        write_rows(out_history, history)
        best = max(history, key=lambda r: r[monitored_metric(config)])
        metrics = {
            "dataset": dataset_label(info),
            "architecture": model.name,
            "parameters": int(model.count_params()),
            "epochs_run": len(history),
            "best_epoch": int(best["epoch"]),
            **{k: v for k, v in best.items() if k.startswith("val_")},
        }
        write_json(out_metrics, metrics)
        # wall time goes to MLflow only, so that metrics files are identical across reruns
        tracking.log_metrics({"train_seconds": seconds})
        tracking.log_metrics({k: v for k, v in metrics.items() if k.startswith("val_")}, prefix="best")
        tracking.log_artifacts(out_history, out_metrics)
        description = (
            f"{stage} on {info['source']} data; {model.name}, {metrics['parameters']:,} params; "
            + ", ".join(f"{k}={v:.4f}" for k, v in best.items() if k.startswith("val_"))
        )
        version = tracking.register_model(
            model, params.tracking.registered_model, description, alias=alias,
            tags={"stage": stage, "model_sha256": sha256_file(out_model)},
        )
        print(f"{stage}: saved {out_model}; registered {params.tracking.registered_model} v{version}")
    return metrics


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
    if test2 is not None:
        text += f" Test_dataset_2 ({test2['attack']}): accuracy {test2['accuracy']:.4f}, F1 {test2['f1']:.4f}."
    return text


def _eps_key(method: str, eps: float) -> str:
    """``pgd_eps4`` for eps = 4/255 (fractional multiples of 1/255 keep a ``p``: ``eps2p5``)."""
    return f"{method}_eps{eps * 255:.2f}".rstrip("0").rstrip(".").replace(".", "p")


def _png(pixels) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _confusion_rows(y_true, p_fake, threshold: float = 0.5) -> list[dict]:
    """One ``actual``/``predicted`` row per image, for DVC's confusion template."""
    from cifake.data import LABEL_NAMES

    return [{"actual": LABEL_NAMES[a], "predicted": LABEL_NAMES[int(p >= threshold)]} for a, p in zip(y_true, p_fake)]


def adversarial_grid(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], y, path, scale: int = 3) -> None:
    """Save a picture of attacked images: per model, originals, amplified perturbations, perturbed images.

    ``rows`` holds ``(model name, x, x_adv, p_clean, p_adv)`` with images in [0, 255]; under every
    image stands its true label (originals) or the model's label and P(Fake).
    """
    from PIL import Image, ImageDraw

    from cifake.data import LABEL_NAMES

    n, side = len(y), 32 * scale
    cell_h, label_w = side + 26, 200
    canvas = Image.new("RGB", (label_w + n * (side + 6), len(rows) * 3 * cell_h + 6), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, x, x_adv, p_clean, p_adv) in enumerate(rows):
        delta = x_adv.astype(np.float32) - x.astype(np.float32)
        gain = 127.0 / max(float(np.abs(delta).max()), 1e-6)
        panels = [
            (f"{name}: original", x, [f"{LABEL_NAMES[int(t)]} / p={p:.2f}" for t, p in zip(y, p_clean)]),
            (f"{name}: perturbation x{gain:.0f}", 127.5 + delta * gain, ["" for _ in y]),
            (f"{name}: attacked", x_adv, [f"-> {LABEL_NAMES[int(p >= 0.5)]} p={p:.2f}" for p in p_adv]),
        ]
        for k, (title, images, captions) in enumerate(panels):
            top = (r * 3 + k) * cell_h + 3
            draw.text((4, top + side // 2), title, fill="black")
            for i, (img, caption) in enumerate(zip(images, captions)):
                tile = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).resize((side, side), Image.NEAREST)
                left = label_w + i * (side + 6)
                canvas.paste(tile, (left, top))
                draw.text((left, top + side + 4), caption, fill="black")
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def evaluate_models(params: Params, models: dict[str, str], test2_dir: str, plots_dir: str) -> dict:
    """Score each model clean and under FGSM/PGD at every epsilon; build Test_dataset_2.

    ``models`` maps a short name (``clean``, ``robust``) to a ``.keras`` path; the
    last one is the final model that Test_dataset_2 is attacked against (white-box
    PGD, saved losslessly as PNG). Returns the metrics dict and writes the plot
    CSVs; the caller writes ``metrics/evaluate.json``.
    """
    from cifake.attacks import Attacker, attack_images
    from cifake.data import write_test_folder
    from cifake.metrics import classification_metrics, pr_points, roc_points, stratified_subset
    from cifake.model import load_model
    from cifake.model import predict_proba
    from cifake.training import set_determinism

    set_determinism(params.seed)
    ev = params.evaluate
    info = dataset_info()
    test = Split.load(PROCESSED / "test.npz")
    subset = stratified_subset(test.y, ev.attack_subset, params.seed)
    x_sub, y_sub = test.x[subset], test.y[subset]
    plots = Path(plots_dir)
    results: dict = {
        "dataset": dataset_label(info),
        "test_images": int(len(test.y)),
        "attack_images": int(len(subset)),
        "pgd_steps": ev.pgd_steps,
    }
    curve = {round(e * 255, 2): {"epsilon": e, "epsilon_255": round(e * 255, 2)} for e in ev.epsilons}
    # the picture reuses the PGD images at the epsilon closest to Test_dataset_2's (no extra attack)
    shown = np.concatenate([np.flatnonzero(y_sub == 0)[:4], np.flatnonzero(y_sub == 1)[:4]])
    picture_eps = min(ev.epsilons, key=lambda e: abs(e - ev.test2_epsilon))
    grid_rows = []
    for name, path in models.items():
        model = load_model(path)
        attacker = Attacker(model)
        p_clean = predict_proba(model, test.x, ev.batch_size)
        scores = {"clean": classification_metrics(test.y, p_clean)}
        write_rows(plots / f"roc_{name}_model.csv", roc_points(test.y, p_clean))
        write_rows(plots / f"pr_{name}_model.csv", pr_points(test.y, p_clean))
        masking = []
        for eps in ev.epsilons:
            acc = {}
            for method in ("fgsm", "pgd"):
                start = time.perf_counter()
                x_adv = attack_images(
                    attacker, x_sub, y_sub, method=method, eps=eps,
                    steps=ev.pgd_steps, step_fraction=ev.pgd_step_fraction, batch_size=ev.batch_size,
                )
                m = classification_metrics(y_sub, predict_proba(model, x_adv, ev.batch_size))
                if method == "pgd" and eps == picture_eps:
                    x_show = x_adv[shown]
                keep = ("accuracy", "accuracy_ci95_low", "accuracy_ci95_high", "precision", "recall", "f1")
                scores[_eps_key(method, eps)] = {k: m[k] for k in keep}
                acc[method] = m["accuracy"]
                curve[round(eps * 255, 2)][f"{name}_{method}"] = m["accuracy"]
                seconds = time.perf_counter() - start
                log.info("%s model, %s eps=%.2f/255: accuracy %.4f (%d images in %.0f s, %.0f images/s)",
                         name, method, eps * 255, m["accuracy"], len(y_sub), seconds, len(y_sub) / seconds)
            if acc["pgd"] > acc["fgsm"] + 0.01:  # PGD should never do worse than one FGSM step
                masking.append(round(eps * 255, 2))
        scores["gradient_masking_suspect_eps_255"] = masking
        grid_rows.append((
            f"{name}, PGD {picture_eps * 255:.0f}/255", x_sub[shown], x_show,
            p_clean[subset][shown], predict_proba(model, x_show),
        ))
        results[f"{name}_model"] = scores
        final, final_attacker, final_p = model, attacker, p_clean  # the last model is the final one
    write_rows(plots / "robustness.csv", list(curve.values()))
    adversarial_grid(grid_rows, y_sub[shown], plots / "adversarial_examples.png")
    write_rows(plots / "confusion_clean.csv", _confusion_rows(test.y, final_p))

    # Test_dataset_2: every test image under white-box PGD against the final model, stored as PNG.
    start = time.perf_counter()
    x2 = attack_images(
        final_attacker, test.x, test.y, method="pgd", eps=ev.test2_epsilon,
        steps=ev.test2_pgd_steps, step_fraction=ev.pgd_step_fraction, batch_size=ev.batch_size,
    )
    log.info("Test_dataset_2: %d images attacked in %.0f s", len(test.y), time.perf_counter() - start)
    x2 = np.clip(np.rint(x2), 0, 255).astype(np.uint8)
    names = [str(Path(n).with_suffix(".png")) for n in test.names]
    write_test_folder(test2_dir, names, [_png(img) for img in x2], test.y)
    p2 = predict_proba(final, x2, ev.batch_size)
    results["test_dataset_2"] = {
        "attack": f"pgd-{ev.test2_pgd_steps} eps={ev.test2_epsilon:.6f} ({ev.test2_epsilon * 255:.2f}/255)",
        **classification_metrics(test.y, p2),
    }
    write_rows(plots / "confusion_test2.csv", _confusion_rows(test.y, p2))
    return results
