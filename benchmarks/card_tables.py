"""Print the model card's result tables (markdown) from a pipeline run's metrics files.

    python benchmarks/card_tables.py             # reads metrics/ of the workspace
    python benchmarks/card_tables.py --metrics <folder with data.json, train.json, finetune.json, evaluate.json>

The figures in models/pretrained/MODEL_CARD.md are this script's output for the run that made the
shipped models, so they are copied, not retyped. Intervals are 95 % Wilson intervals
(cifake.metrics.accuracy_interval) on the number of images each figure was measured on.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from cifake.metrics import accuracy_interval

TARGETS = {
    "accuracy": "≥ 96.0 %",
    "f1": "≥ 0.96",
    "pgd_eps2": "≥ 90 %",
    "pgd_eps4": "≥ 82 %",
    "mean": "≥ 90 %",
    "worst": "≥ 80 %",
}


def pct(acc: float, n: int | None = None) -> str:
    """``96.12 %`` or, given the number of images, ``96.12 % [95.8, 96.4]``."""
    if n is None:
        return f"{100 * acc:.2f} %"
    return _with_interval(acc, *accuracy_interval(round(acc * n), n))


def scored(figures: dict) -> str:
    """An accuracy with the interval that ``evaluate`` stored beside it."""
    return _with_interval(figures["accuracy"], figures["accuracy_ci95_low"], figures["accuracy_ci95_high"])


def _with_interval(acc: float, low: float, high: float) -> str:
    return f"{100 * acc:.2f} % [{100 * low:.1f}, {100 * high:.1f}]"


def results_table(ev: dict) -> list[str]:
    """Clean figures on the whole test set, then FGSM and PGD on the attacked subset, per model."""
    models = [ev["clean_model"], ev["robust_model"]]
    rows = ["| | clean model | robust model | target (robust) |", "|---|---|---|---|"]
    rows.append("| clean accuracy | " + " | ".join(scored(m["clean"]) for m in models) + f" | {TARGETS['accuracy']} |")
    prf = [f"{m['clean']['precision']:.3f} / {m['clean']['recall']:.3f} / {m['clean']['f1']:.3f}" for m in models]
    rows.append("| precision / recall / F1 (Fake) | " + " | ".join(prf) + f" | F1 {TARGETS['f1']} |")
    rows.append("| ROC AUC | " + " | ".join(f"{m['clean']['roc_auc']:.4f}" for m in models) + " | |")
    epsilons = [key for key in models[0] if key.startswith("pgd_eps")]  # in params.yaml's order
    for attack in ("fgsm", "pgd"):
        for key in epsilons:
            name = key.replace("pgd", attack)
            eps = key.removeprefix("pgd_eps").replace("p", ".")  # the naming of cifake.evaluation.eps_key
            label = f"{'FGSM' if attack == 'fgsm' else 'PGD-' + str(ev['pgd_steps'])} ε={eps}/255"
            cells = [scored(m[name]) for m in models]
            rows.append(f"| {label} | " + " | ".join(cells) + f" | {TARGETS.get(key, '') if attack == 'pgd' else ''} |")
    return rows


def corruption_table(ev: dict) -> list[str]:
    """Each everyday change, then mean and worst, for both models."""
    k = ev["attack_images"]
    suites = [ev["clean_model"]["corruptions"], ev["robust_model"]["corruptions"]]
    rows = ["| change | clean model | robust model | target (robust) |", "|---|---|---|---|"]
    for name in suites[0]["accuracy"]:
        rows.append(f"| {name} | " + " | ".join(pct(s["accuracy"][name], k) for s in suites) + " | |")
    rows.append("| **mean** | " + " | ".join(pct(s["mean"]) for s in suites) + f" | {TARGETS['mean']} |")
    worst = [f"{pct(s['worst'], k)} ({s['worst_condition']})" for s in suites]
    rows.append("| **worst** | " + " | ".join(worst) + f" | {TARGETS['worst']} |")
    return rows


def training_lines(folder: Path) -> list[str]:
    """Epochs, best epoch and wall time of each training stage, from its metrics and history."""
    lines = []
    for stage, name in (("train", "train"), ("fgsm_finetune", "finetune")):
        summary = json.loads((folder / f"{name}.json").read_text())
        with open(folder / "plots" / f"{name}_history.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        seconds = sum(float(r["seconds"]) for r in rows)
        rate = sum(float(r["images_per_second"]) for r in rows) / len(rows)
        extra = f", PGD-10 {pct(summary['val_pgd_accuracy'])}" if "val_pgd_accuracy" in summary else ""
        lines.append(
            f"- `{stage}`: {summary['epochs_run']} epochs in {seconds / 60:.1f} min "
            f"({rate:.0f} training img/s on average); best epoch {summary['best_epoch']}: "
            f"validation {pct(summary['val_accuracy'])}{extra}; {summary['parameters']:,} parameters"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = ap.parse_args()
    ev = json.loads((args.metrics / "evaluate.json").read_text())
    t2 = ev["test_dataset_2"]
    out = [f"Data: {ev['dataset']}; {ev['test_images']} test images, {ev['attack_images']} attacked or changed.", ""]
    out += training_lines(args.metrics) + [""] + results_table(ev) + [""] + corruption_table(ev) + [""]
    out.append(f"Test_dataset_2 ({t2['attack']}, against the robust model): {scored(t2)}, F1 {t2['f1']:.3f}")
    out.append(
        f"Competition score (0.4 × clean + 0.6 × Test_dataset_2, robust model): {100 * ev['competition_score']:.2f}"
    )
    masking = {name: ev[f"{name}_model"]["gradient_masking_suspect_eps_255"] for name in ("clean", "robust")}
    out.append(f"Gradient-masking suspects (ε/255 where PGD > FGSM): {masking}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
