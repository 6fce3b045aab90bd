"""The tables of the model card and of the experiments notebook, generated from the kept measurements.

    python benchmarks/card_tables.py                      # print the tables of a run's metrics/ (the workspace's)
    python benchmarks/card_tables.py --metrics docs/experiments/run-2026-11-27-wide075
    python benchmarks/card_tables.py --write              # rewrite the generated blocks of the card and notebook
    python benchmarks/card_tables.py --check              # exit 1 if a generated block is stale (CI's test does this)

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` in
models/pretrained/MODEL_CARD.md and docs/experiments.md; nothing between the markers is typed by hand, so
the documents cannot drift from the metrics files. Intervals are 95 % Wilson intervals
(cifake.metrics.accuracy_interval) on the number of images each figure was measured on.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from functools import partial
from pathlib import Path

import yaml

from cifake.metrics import accuracy_interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "docs" / "experiments"
SHIPPED_RUN = RUNS / "run-2026-12-03-views10"  # the run that made cifake-robust.keras (and reused cifake-clean's)
# corruption_suite.py on the shipped robust model: one line per suite ("listed", "unseen", "novel")
SHIPPED_SUITES = RESULTS / "corruption_views10_2026-12-02-wide075-sharpen.jsonl"
SHIPPED_CLEAN = "cifake-clean.keras"  # the shipped run's clean model (models/model.keras there), a transfer source
CARD = ROOT / "models" / "pretrained" / "MODEL_CARD.md"
# benchmarks/generalisation.py on the shipped files: fakes of generators none of them trained on (issue 40)
GENERALISATION = ROOT / "models" / "pretrained" / "generalisation.json"
SHIPPED = "cifake-robust.keras"
# model_targets.py on cifake-generalist.keras, and the probe row of its classifier (its training minutes)
GENERALIST_RUN = RUNS / "generalist-2026-12-07"
GENERALIST_CLASSIFIER = "semantic-airbench-b8-held:doubt"
NOTEBOOK = ROOT / "docs" / "experiments.md"

# The targets of the robust model, as the results tables print them.
TARGETS = {
    "accuracy": "≥ 96.0 %",
    "f1": "≥ 0.96",
    "pgd_eps2": "≥ 90 %",
    "pgd_eps4": "≥ 82 %",
    "mean": "≥ 90 %",
    "worst": "≥ 80 %",
}
# Status of every full run kept in docs/experiments/ (what it became); its figures come from its files.
RUN_STATUS = {
    "run-2026-11-26": "replaced (`full-fgh`, first full run)",
    "run-2026-11-26-long": "replaced (`full-long`, 12 fine-tuning epochs); its clean model is `cifake-clean.keras`",
    "run-2026-11-26-ft16": "replaced (`full-ft16`, single view)",
    "run-2026-11-27-ft16-flip": "replaced (`full-ft16-flip`, flip-averaged; meets 4/255, misses unseen changes)",
    "run-2026-11-27-eps5": "candidate (`full-eps5`, ε = 5/255; single view)",
    "run-2026-11-27-co-eps5": "candidate (`full-co-eps5`, from the clean-only model; single view)",
    "run-2026-11-27-wide1": "candidate (`full-wide1`, every fine-tuning image changed)",
    "run-2026-11-27-wide075-sharpen": "its network ships, with ten views, as `run-2026-12-03-views10`",
    "run-2026-11-27-wide075": "replaced (`full-wide075`, two views; misses 4/255 and sharpening)",
    "run-2026-12-03-views10": "**shipped** (`full-wide075-sharpen` averaged over ten views: `cifake-robust.keras`)",
}


def pct(acc: float, n: int | None = None) -> str:
    """``96.12 %`` or, given the number of images, ``96.12 % [95.8, 96.4]``."""
    if n is None:
        return f"{100 * acc:.2f} %"
    return _with_interval(acc, *interval(acc, n))


def interval(acc: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson interval of an accuracy measured on ``n`` images."""
    return accuracy_interval(round(acc * n), n)


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
            target = TARGETS.get(key, "") if attack == "pgd" else ""
            rows.append(f"| {label} | " + " | ".join(scored(m[name]) for m in models) + f" | {target} |")
    return rows


def corruption_table(ev: dict) -> list[str]:
    """Each everyday change of ``evaluate.corruptions``, then mean and worst, for both models."""
    k = ev["attack_images"]
    suites = [ev["clean_model"]["corruptions"], ev["robust_model"]["corruptions"]]
    rows = ["| change | clean model | robust model | target (robust) |", "|---|---|---|---|"]
    for name in suites[0]["accuracy"]:
        rows.append(f"| {name} | " + " | ".join(pct(s["accuracy"][name], k) for s in suites) + " | |")
    rows.append("| **mean** | " + " | ".join(pct(s["mean"]) for s in suites) + f" | {TARGETS['mean']} |")
    worst = [f"{pct(s['worst'], k)} ({s['worst_condition']})" for s in suites]
    rows.append("| **worst** | " + " | ".join(worst) + f" | {TARGETS['worst']} |")
    return rows


def suite_table(unseen: dict, novel: dict) -> list[str]:
    """The robust model under the unseen settings and the novel kinds (``corruption_suite.py`` results)."""
    rows = ["| unseen setting | accuracy | novel kind | accuracy |", "|---|---|---|---|"]
    left, right = list(unseen["accuracy"].items()), list(novel["accuracy"].items())
    for i in range(max(len(left), len(right))):
        cells = [(f"{n}", pct(a, unseen["images"])) for n, a in left[i : i + 1]] or [("", "")]
        cells += [(f"{n}", pct(a, novel["images"])) for n, a in right[i : i + 1]] or [("", "")]
        rows.append("| " + " | ".join(f"{a} | {b}" for a, b in cells) + " |")
    for what in ("mean", "worst"):
        extra = [f" ({s['worst_condition']})" if what == "worst" else "" for s in (unseen, novel)]
        rows.append(f"| **{what}** | {pct(unseen[what])}{extra[0]} | **{what}** | {pct(novel[what])}{extra[1]} |")
    return rows


def transfer_table(ev: dict, files: dict[str, str]) -> list[str]:
    """The robust model under white-box PGD and under PGD crafted on each transfer source, per epsilon.

    ``files`` names each source's model file (by its key in ``evaluate.json``); a source not in it shows its key.
    """
    robust, n = ev["robust_model"], ev["attack_images"]
    sources = robust["transfer"]
    head = [f"crafted on `{files.get(name, name)}`" for name in sources]
    rows = [
        f"| ε ({n:,} images) | white-box (the robust model itself) | " + " | ".join(head) + " |",
        "|---|" + "---|" * (1 + len(sources)),
    ]
    for key in sources["clean"]:
        eps = key.removeprefix("pgd_eps").replace("p", ".")
        cells = [scored(robust[key])] + [scored(scores[key]) for scores in sources.values()]
        rows.append(f"| {eps}/255 | " + " | ".join(cells) + " |")
    return rows


def targets_table(ev: dict, unseen: dict, novel: dict, folder: Path = SHIPPED_RUN) -> list[str]:
    """Each target of the shipped robust model with its 95 % interval: met, within noise or missed.

    A mean over everyday changes takes the interval of one accuracy on the same images: the changes share those
    images, so the mean varies no more than a single accuracy does, and this interval is the wider, safe one.
    """
    rows = ["| target | shipped robust model [95 % interval] | verdict |", "|---|---|---|"]
    return rows + check_rows(ev, unseen, novel) + cost_rows(ev["robust_model"], folder)


def generalist_targets(ev: dict, unseen: dict, novel: dict, classifier_minutes: float) -> list[str]:
    """The same targets for the generalist file (model_targets.py's files), and its recipe's time: the shipped
    run's, then its classifier's training."""
    rows = [f"| target | `{ev['model']}` [95 % interval] | verdict |", "|---|---|---|"]
    shipped = run_minutes(SHIPPED_RUN)
    minutes = shipped + classifier_minutes
    time_verdict = within_budget(minutes)
    cost = f"{shipped:.0f} + {classifier_minutes:.0f} min"
    last = f"| full run (the shipped run, then the classifier) ≤ 150 min | {cost} | {time_verdict} |"
    return rows + check_rows(ev, unseen, novel) + [last]


def check_rows(ev: dict, unseen: dict, novel: dict) -> list[str]:
    """One row per CIFAKE target of ``ev`` (``evaluate``'s shape, its robust model) and the masking check."""
    robust = ev["robust_model"]
    listed, k = robust["corruptions"], ev["attack_images"]
    checks = [
        ("clean accuracy ≥ 96.0 %", robust["clean"]["accuracy"], 0.96, "%", stored_interval(robust["clean"])),
        ("F1 (Fake) ≥ 0.96", robust["clean"]["f1"], 0.96, "", None),
        ("PGD-20 at 2/255 ≥ 90 %", robust["pgd_eps2"]["accuracy"], 0.90, "%", stored_interval(robust["pgd_eps2"])),
        ("PGD-20 at 4/255 ≥ 82 %", robust["pgd_eps4"]["accuracy"], 0.82, "%", stored_interval(robust["pgd_eps4"])),
        ("listed everyday changes: mean ≥ 90 %", listed["mean"], 0.90, "%", interval(listed["mean"], k)),
        ("listed everyday changes: worst ≥ 80 %", listed["worst"], 0.80, "%", interval(listed["worst"], k)),
    ]
    for name, suite, worst in (("unseen settings", unseen, 0.80), ("novel kinds", novel, 0.85)):
        n = suite["images"]
        checks.append((f"{name}: mean ≥ 90 %", suite["mean"], 0.90, "%", interval(suite["mean"], n)))
        checks.append((f"{name}: worst ≥ {100 * worst:.0f} %", suite["worst"], worst, "%", interval(suite["worst"], n)))
    rows = []
    for name, value, bound, unit, ci in checks:
        shown = judged(value, bound, unit)[0]
        rows.append(f"| {name} | {shown}{shown_interval(ci)} | {verdict(value, bound, unit, ci)} |")
    masked = robust["gradient_masking_suspect_eps_255"]
    return rows + [
        f"| no gradient masking (PGD ≤ FGSM + 1 point at every ε) | suspects: {masked or 'none'} | "
        f"{'met' if not masked else '**missed**'} |"
    ]


def judged(value: float, bound: float, unit: str) -> tuple[str, str, bool]:
    """(the figure as shown, its margin to ``bound`` in words, whether it meets it); ``unit`` "%" or ""."""
    scale, digits = (100, 2) if unit else (1, 3)  # the margin is taken between the figures as shown
    shown, limit = round(scale * value, digits), round(scale * bound, digits)
    margin = f"{abs(shown - limit):.{digits}f}" + (" points" if unit else "")
    return f"{shown:.{digits}f}{' %' if unit else ''}", margin, shown >= limit


def verdict(value: float, bound: float, unit: str, ci: tuple[float, float] | None) -> str:
    """Met, within noise (the 95 % interval ``ci`` straddles the bar) or missed, with the margin.

    A figure without an interval (F1 is not a share of images) is met or missed on its value alone.
    """
    _, margin, above = judged(value, bound, unit)
    if ci is not None and ci[0] < bound <= ci[1]:
        return f"**within noise** ({margin} {'above' if above else 'below'})"
    return f"met by {margin}" if above else f"**missed** by {margin}"


def shown_interval(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def stored_interval(figures: dict) -> tuple[float, float]:
    """The 95 % interval that ``evaluate`` stored beside an accuracy."""
    return figures["accuracy_ci95_low"], figures["accuracy_ci95_high"]


def within_budget(minutes: float, budget: float = 150) -> str:
    """The training-time target's verdict: met or missed, by how many minutes."""
    return f"met by {budget - minutes:.0f} min" if minutes <= budget else f"**missed** by {minutes - budget:.0f} min"


def run_minutes(folder: Path) -> float:
    """A full run's training time: its train and fgsm_finetune epochs' wall time."""
    return sum(epoch_seconds(history(folder, name)) for name in ("train", "finetune")) / 60


def cost_rows(robust: dict, folder: Path) -> list[str]:
    """The full run's time and the stretch target (clean and PGD-20 at 4/255 with at most 1.5 M parameters)."""
    minutes = run_minutes(folder)
    params = json.loads((folder / "finetune.json").read_text())["parameters"]
    shown, short = [], []
    for what, figures, bound in (("clean", robust["clean"], 0.966), ("PGD-20 4/255", robust["pgd_eps4"], 0.87)):
        ci = stored_interval(figures)
        shown.append(judged(figures["accuracy"], bound, "%")[0] + shown_interval(ci))
        said = verdict(figures["accuracy"], bound, "%", ci)
        short += [] if said.startswith("met") else [f"{what}: {said}"]
    short += ["parameters: **missed**"] if params > 1_500_000 else []
    stretch = "; ".join(short) if short else "met"
    time_verdict = within_budget(minutes)
    return [
        f"| full run (train + fgsm_finetune) ≤ 150 min | {minutes:.0f} min (its epochs' wall time) | {time_verdict} |",
        f"| stretch: clean ≥ 96.6 % with PGD-20 at 4/255 ≥ 87 %, ≤ 1.5 M parameters | {' / '.join(shown)}, "
        f"{params / 1e6:.2f} M | {stretch} |",
    ]


def generalisation_table(figures: dict, set_name: str = "generators32") -> list[str]:
    """Share of each generator's fakes called Fake, per shipped model (the shipped one first), with the mean,
    the worst folder, the mean ROC AUC against CIFAKE test REAL and the share of those photographs called Real."""
    models = sorted((m for m in figures if set_name in figures[m]["sets"]), key=lambda m: m != SHIPPED)
    folders = list(figures[models[0]]["sets"][set_name]["per_generator"])
    names = " | ".join(f.removeprefix("gan_") for f in folders)
    rows = [f"| model | {names} | mean | worst | AUC | real called Real |", "|---|" + "---|" * (len(folders) + 4)]
    for model in models:
        scores = figures[model]["sets"][set_name]
        cells = [f"{100 * scores['per_generator'][f]['caught']:.0f} %" for f in folders]
        mean = scores["mean"]
        cells += [pct(mean["mean_caught"]), f"{100 * mean['min_caught']:.0f} %", f"{mean['mean_roc_auc']:.2f}"]
        rows.append(f"| `{model}` | " + " | ".join(cells) + f" | {pct(figures[model]['real_called_real'])} |")
    return rows + ["| target | " + " | ".join(["≥ 50 %"] * len(folders)) + " | ≥ 80 % | ≥ 50 % | | ≥ 95 % |"]


def generalisation_limit(figures: dict, set_name: str = "generators32") -> list[str]:
    """The model card's limitation line on other generators, from the shipped model's measured figures."""
    scores = figures[SHIPPED]["sets"][set_name]
    caught = [row["caught"] for row in scores["per_generator"].values()]
    images = sum(row["images"] for row in scores["per_generator"].values())
    return [
        f"- **Other generators {'pass as photographs' if scores['mean']['mean_caught'] < 0.5 else 'are caught'}:** "
        f"of {images:,} fakes from the {len(caught)} generators above, which it never saw, it calls "
        f"{pct(scores['mean']['mean_caught'])} Fake ({100 * min(caught):.0f}–{100 * max(caught):.0f} % each; AUC "
        f"{scores['mean']['mean_roc_auc']:.2f}) and CIFAKE's real test photographs "
        f"{pct(figures[SHIPPED]['real_called_real'])} Real."
    ]


def history(folder: Path, name: str) -> list[dict]:
    """A training stage's per-epoch rows (``plots/<name>_history.csv``)."""
    with open(folder / "plots" / f"{name}_history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def epoch_seconds(rows: list[dict]) -> float:
    """Wall seconds of a training stage's epochs (training and validation), from its history rows."""
    return sum(float(r["seconds"]) for r in rows)


def training_lines(folder: Path) -> list[str]:
    """Epochs, best epoch and wall time of each training stage, from its metrics and history."""
    lines = []
    for stage, name in (("train", "train"), ("fgsm_finetune", "finetune")):
        summary = json.loads((folder / f"{name}.json").read_text())
        rows = history(folder, name)
        seconds = epoch_seconds(rows)
        rate = sum(float(r["images_per_second"]) for r in rows) / len(rows)
        extra = f", PGD-10 {pct(summary['val_pgd_accuracy'])}" if "val_pgd_accuracy" in summary else ""
        lines.append(
            f"- `{stage}`: {summary['epochs_run']} epochs in {seconds / 60:.1f} min "
            f"({rate:.0f} training img/s on average); best epoch {summary['best_epoch']}: "
            f"validation {pct(summary['val_accuracy'])}{extra}; {summary['parameters']:,} parameters"
        )
    return lines


def runs_table(runs: Path) -> list[str]:
    """One row per full run kept in ``runs`` (its evaluate.json), newest first."""
    head = (
        "| run | status | clean | F1 | PGD-20 2/255 | PGD-20 4/255 | listed everyday mean / worst "
        "| Test_dataset_2 | competition |"
    )
    rows = [head, "|" + "---|" * 9]
    for folder in sorted(runs.glob("run-*/evaluate.json"), reverse=True):
        ev, name = json.loads(folder.read_text()), folder.parent.name
        r, c = ev["robust_model"], ev["robust_model"]["corruptions"]
        rows.append(
            f"| [{name}](experiments/{name}/) | {RUN_STATUS.get(name, '')} | {pct(r['clean']['accuracy'])} | "
            f"{r['clean']['f1']:.3f} | {pct(r['pgd_eps2']['accuracy'])} | {pct(r['pgd_eps4']['accuracy'])} | "
            f"{100 * c['mean']:.2f} / {100 * c['worst']:.2f} % | {pct(ev['test_dataset_2']['accuracy'])} | "
            f"{100 * ev['competition_score']:.2f} |"
        )
    return rows


def corruption_results_table(results: Path) -> list[str]:
    """Every line of the everyday-change benchmark files: which file, which model, mean and worst."""
    rows = [
        "| results file | model (path when measured) | images | clean | mean | worst |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(results.glob("corruption_*.jsonl")):
        for line in read_jsonl(path):
            rows.append(
                f"| `{path.name}` | `{line['model']}` | {line['images']} | {pct(line['clean'])} | "
                f"{pct(line['mean'])} | {pct(line['worst'])} ({line['worst_condition']}) |"
            )
    return rows


def flat_table(lines: list[dict]) -> list[str]:
    """Rows of JSON objects as a table; nested objects become ``outer.inner`` columns."""
    flat = [_flatten(line) for line in lines]
    columns = list(dict.fromkeys(key for row in flat for key in row))
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return rows + ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in flat]


def probe_table(lines: list[dict]) -> list[str]:
    """One row per generalisation probe (its summary): the validation figures beside what it keeps of CIFAKE
    (real called Real, Stable Diffusion caught), the share caught of each own generator it did not train on, and
    for a classifier's scores its CIFAR-10 accuracy (test REAL 0-1999)."""
    head = ["probe", "validation: mean caught", "lowest", "mean AUC", "real called Real", "SD caught"]
    head += ["own held-out caught", "CIFAR-10 accuracy", "minutes"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for line in lines:
        s = line["summary"]
        held = ", ".join(f"{name} {share:.2f}" for name, share in s["held_out"].items())
        cells = [s["name"], _pct(s["val_mean_caught"]), _pct(s["val_min_caught"]), f"{s['val_mean_auc']:.2f}",
                 _pct(s["real_called_real"]), _pct(s["sd_caught"]), held,
                 _pct(line["cifar10"]) if "cifar10" in line else "", f"{s['minutes']:g}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def trade_table(lines: list[dict], budget: float = 0.94) -> list[str]:
    """The trade between the two sides as a curve of runs: the probes that no other beats on both validation
    mean caught and Stable Diffusion caught, among those that call at least ``budget`` of test REAL Real (each
    score's threshold is set to call 95 %; a detector's 0.5 may call fewer), from most SD caught to least."""
    points = [line["summary"] for line in lines if line["summary"]["real_called_real"] >= budget]

    def beaten(p: dict) -> bool:
        a, b = p["val_mean_caught"], p["sd_caught"]
        return any(
            q["val_mean_caught"] >= a and q["sd_caught"] >= b and (q["val_mean_caught"] > a or q["sd_caught"] > b)
            for q in points
        )

    front = sorted((p for p in points if not beaten(p)), key=lambda p: -p["sd_caught"])
    rows = ["| probe | SD caught | validation: mean caught | mean AUC | real called Real |", "|---|---|---|---|---|"]
    return rows + [
        f"| {p['name']} | {_pct(p['sd_caught'])} | {_pct(p['val_mean_caught'])} | {p['val_mean_auc']:.2f} | "
        f"{_pct(p['real_called_real'])} |"
        for p in front
    ]


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def _flatten(obj: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def transfer_files(folder: Path) -> dict[str, str]:
    """The shipped run's transfer sources as model file names: the clean model, then its ``params.yaml``'s."""
    listed = yaml.safe_load((folder / "params.yaml").read_text())["evaluate"]["transfer_sources"]
    return {"clean": SHIPPED_CLEAN} | {name: Path(path).name for name, path in listed.items()}


def card_blocks() -> dict[str, list[str]]:
    """The model card's generated blocks, from the shipped run's files and its everyday-change results."""
    ev = json.loads((SHIPPED_RUN / "evaluate.json").read_text())
    suites = {line["suite"]: line for line in read_jsonl(SHIPPED_SUITES)}
    unseen, novel = suites["unseen"], suites["novel"]
    t2 = ev["test_dataset_2"]
    generalisation = json.loads(GENERALISATION.read_text())
    return {
        "generalisation": generalisation_table(generalisation),
        "generalisation-limit": generalisation_limit(generalisation),
        "training": training_lines(SHIPPED_RUN),
        "results": results_table(ev),
        "everyday": corruption_table(ev),
        "unseen-novel": suite_table(unseen, novel),
        "targets": targets_table(ev, unseen, novel),
        "generalist-targets": generalist_block(),
        "transfer": transfer_table(ev, transfer_files(SHIPPED_RUN)),
        "test2": [
            f"Test_dataset_2 ({t2['attack']}, white-box against the robust model): {scored(t2)}, F1 {t2['f1']:.3f}; "
            f"competition score (0.4 × clean + 0.6 × Test_dataset_2): {100 * ev['competition_score']:.2f}."
        ],
    }


def generalist_block() -> list[str]:
    """The generalist file's targets table, from its model_targets.py folder and its classifier's probe row."""
    ev = json.loads((GENERALIST_RUN / "evaluate.json").read_text())
    suites = {line["suite"]: line for line in read_jsonl(GENERALIST_RUN / "suites.jsonl")}
    probes = read_jsonl(RESULTS / "generalisation.jsonl")
    minutes = next(line["train_minutes"] for line in probes if line["name"] == GENERALIST_CLASSIFIER)
    return generalist_targets(ev, suites["unseen"], suites["novel"], minutes)


def notebook_blocks() -> dict[str, list[str]]:
    """The experiments notebook's generated blocks, from benchmarks/results/*.jsonl and the kept runs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from recipe_search import table as recipe_table

    return {
        "runs": runs_table(RUNS),
        "recipes": recipe_table(read_jsonl(RESULTS / "recipe_search.jsonl")).splitlines(),
        "corruptions": corruption_results_table(RESULTS),
        "flip-average": flat_table(read_jsonl(RESULTS / "flip_average.jsonl")),
        "weight-interpolation": flat_table(read_jsonl(RESULTS / "weight_interpolation.jsonl")),
        "generalisation-probes": probe_table(read_jsonl(RESULTS / "generalisation.jsonl")),
        "generalisation-trade": trade_table(read_jsonl(RESULTS / "generalisation.jsonl")),
    }


def fill(text: str, blocks: dict[str, list[str]]) -> str:
    """``text`` with every generated block replaced by its new content (the markers stay)."""
    for name, lines in blocks.items():
        pattern = re.compile(
            rf"(<!-- generated:{re.escape(name)} -->\n).*?(<!-- /generated:{re.escape(name)} -->)", re.S
        )
        if not pattern.search(text):
            raise KeyError(f"no generated block {name!r}")
        text = pattern.sub(partial(_between_markers, "\n".join(lines)), text)
    return text


def _between_markers(body: str, match: re.Match[str]) -> str:
    return match.group(1) + body + "\n" + match.group(2)


def documents() -> dict[Path, str]:
    """Each generated document as it should read now."""
    return {
        CARD: fill(CARD.read_text(encoding="utf-8"), card_blocks()),
        NOTEBOOK: fill(NOTEBOOK.read_text(encoding="utf-8"), notebook_blocks()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", type=Path, default=Path("metrics"), help="a run's metrics folder to print")
    ap.add_argument("--write", action="store_true", help="rewrite the generated blocks of the card and notebook")
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated block is out of date")
    args = ap.parse_args()
    if args.write or args.check:
        stale = [path for path, text in documents().items() if path.read_text(encoding="utf-8") != text]
        if args.write:
            for path, text in documents().items():
                path.write_text(text, encoding="utf-8")
        print(
            "\n".join(f"{'rewrote' if args.write else 'stale'}: {p.relative_to(ROOT)}" for p in stale) or "up to date"
        )
        return 1 if stale and args.check else 0
    ev = json.loads((args.metrics / "evaluate.json").read_text())
    tables = training_lines(args.metrics) + [""] + results_table(ev) + [""] + corruption_table(ev)
    if "transfer" in ev["robust_model"]:  # evaluate has scored transfer attacks since 2026-12-02
        tables += [""] + transfer_table(ev, {})
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
