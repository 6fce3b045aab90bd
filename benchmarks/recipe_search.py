"""Rank training recipes by robust accuracy per CPU-minute, on a CIFAKE subset.

Each recipe is the pipeline's two training stages in small: clean training
(``train``) for ``clean_epochs``, then random-start FGSM training
(``fgsm_finetune``) for ``adv_epochs``, through the project's own ``fit``. Both
are timed in process CPU seconds (all threads; less sensitive to a busy machine
than wall time, though not immune). Each trained pair is then scored on a
seeded random test subset with the project's own evaluation functions: clean
accuracy of both models, PGD-10 and FGSM at 2/255 and 4/255 for the robust one,
and the everyday-corruption suite of ``params.yaml`` for both.

Results are appended, one JSON line per recipe, to ``--out``; recipes already in
it are skipped, so a killed search resumes where it stopped.

    python benchmarks/recipe_search.py --data /path/to/processed --recipes A,B,C

``--data`` is a ``data/processed`` folder from the ``preprocess`` stage run on CIFAKE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from _conditions import NOVEL, UNSEEN
from _results import emit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASE_MODEL = {
    "architecture": "resnet",
    "widths": [16, 32, 64],
    "blocks_per_stage": 2,
    "dense_units": 64,
    "dropout": 0.2,
    "stem_stride": 1,
}
STEM2 = {**BASE_MODEL, "widths": [64, 128, 256], "blocks_per_stage": 1, "stem_stride": 2, "dropout": 0.1}
BASE = {
    "model": BASE_MODEL,
    "precision": "float32",
    "everyday": 0.0,
    "clean_epochs": 4,
    "adv_epochs": 6,
    "clean_fraction": 0.0,
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "lr": 2.0e-3,
    "adv_lr": 1.0e-3,
    "ema": 0.0,
    "epsilon": 4 / 255,
    "adv_everyday": None,
    "ranges": None,
    "everyday_attacked": True,
    "method": "fgsm",
    "step_ratio": 1.25,
    "distill_weight": 0.0,
    "distill_temperature": 1.0,
    "distill_attacked": False,
    "validate_flip_average": False,  # fine-tuning's epoch selection judges the flip-averaged model
    "score_flip_average": False,  # the robust model is scored flip-averaged, as the pipeline saves it
    "awp_gamma": 0.0,
}
FGH = {
    "model": STEM2,
    "precision": "mixed_bfloat16",
    "everyday": 0.5,
    "clean_fraction": 0.5,
    "warmup_epochs": 2.0,
    "label_smoothing": 0.1,
}

# wider than cifake.corruptions.TRAINING_RANGES (brightness +-40, contrast 0.6-1.4); other kinds keep theirs
WIDE_INTENSITY = {"brightness": (-64.0, 64.0), "contrast": (0.4, 1.6)}
# P3: every fine-tuning image changed, with the wide intensity ranges (the base of the 2026-11-27 evening recipes)
P3 = {**FGH, "ranges": WIDE_INTENSITY, "adv_everyday": 1.0}

RECIPES: dict[str, dict[str, Any]] = {
    "A_base": {},
    "B_base_everyday": {"everyday": 0.5},
    "C_stem2_bf16_everyday": {"model": STEM2, "precision": "mixed_bfloat16", "everyday": 0.5},
    "D_r32-64-128x1_bf16_everyday": {
        "model": {**BASE_MODEL, "widths": [32, 64, 128], "blocks_per_stage": 1},
        "precision": "mixed_bfloat16",
        "everyday": 0.5,
    },
    "E_vgg64-128-256_bf16_everyday": {
        "model": {**BASE_MODEL, "architecture": "vgg", "widths": [64, 128, 256], "blocks_per_stage": 1, "dropout": 0.1},
        "precision": "mixed_bfloat16",
        "everyday": 0.5,
    },
    "F_stem2_halfclean": {"model": STEM2, "precision": "mixed_bfloat16", "everyday": 0.5, "clean_fraction": 0.5},
    "G_stem2_warmup": {"model": STEM2, "precision": "mixed_bfloat16", "everyday": 0.5, "warmup_epochs": 2.0},
    "H_stem2_smooth": {"model": STEM2, "precision": "mixed_bfloat16", "everyday": 0.5, "label_smoothing": 0.1},
    "I_stem2_adv_only": {
        "model": STEM2,
        "precision": "mixed_bfloat16",
        "everyday": 0.5,
        "clean_epochs": 0,
        "adv_epochs": 10,
        "adv_lr": 2.0e-3,
    },
    "J_stem2_f32_everyday": {"model": STEM2, "everyday": 0.5},
    "K_stem2_fgh": FGH,
    "L_stem2_fgh_ema": {**FGH, "ema": 0.99},
    "M_stem2_fgh_clean0.3": {**FGH, "clean_fraction": 0.3},
    "N_stem2_fgh_eps5": {**FGH, "epsilon": 5 / 255},
    "O_stem2_fgh_per_image": {**FGH, "model": {**STEM2, "normalization": "per_image"}},
    # 2026-11-27: the robust model's weakest unseen changes are global contrast and brightness
    "P0_fgh_rerun": FGH,  # K again, scored on the unseen conditions too
    "P1_fgh_everyday1_adv": {**FGH, "adv_everyday": 1.0},
    "P2_fgh_wide_intensity": {**FGH, "ranges": WIDE_INTENSITY},
    "P3_fgh_wide_everyday1_adv": P3,
    # 2026-11-27 afternoon: P3's cost on the full data was clean accuracy;
    # does an everyday-change-heavy clean phase help?
    "Q_fgh_wide_everyday1_both": {**P3, "everyday": 1.0},
    # 2026-11-27 evening: P3 with its everyday changes on the clean half of each fine-tuning batch only
    # (as many as K's): is attacking unchanged images what costs less clean accuracy?
    "R_fgh_wide_everyday1_clean_half": {**P3, "everyday_attacked": False},
    # R's clean phase is P3's, yet its clean model scored 90.1 against P3's 90.4 on another machine: P3 again,
    # beside R, to see how far a rerun moves the figures
    "P3r_rerun": P3,
    # more depth at the same parameter budget, with P3's training (compare with P3r, run on the same machine)
    "S1_p3_blocks211": {**P3, "model": {**STEM2, "blocks_per_stage": [2, 1, 1]}},
    "S2_p3_48-96-192x2": {**P3, "model": {**STEM2, "widths": [48, 96, 192], "blocks_per_stage": 2}},
    # sharpening, a kind no model was trained on, is every model's weakest novel change (reals read as fake):
    # P3 again, now scored on the novel kinds too, and P3 with sharpening added to the draw
    # (both phases, as P3's ranges)
    "T0_p3_novel_scored": P3,
    "T1_p3_sharpen": {**P3, "ranges": {**WIDE_INTENSITY, "sharpen": (50.0, 200.0)}},
    # 2026-12-01: untried ideas of the detector issue, each beside a P3 rerun made in the same session. That day's
    # machine had no AVX-512 (bfloat16 emulated, about 60x slower), so both run P3 in float32.
    # N-FGSM (de Jorge et al. 2022): noise of 2 epsilon, one step of epsilon, no projection; FGSM-RS's cost
    "P3f32_rerun": {**P3, "precision": "float32"},
    "U1f32_p3_nfgsm": {**P3, "precision": "float32", "method": "n_fgsm", "step_ratio": 1.0},
    # distillation from the shipped clean-only model (--teacher) during fine-tuning: its soft targets (computed
    # once per training image) mixed half and half with the labels on the clean share only (V1); then, as RSLAD
    # does, the teacher's targets alone on both shares (V2); the attack still pushes against the true label
    "V1f32_p3_distill_clean": {**P3, "precision": "float32", "distill_weight": 0.5},
    "V2f32_p3_rslad": {**P3, "precision": "float32", "distill_weight": 1.0, "distill_attacked": True},
    # the epoch kept by fine-tuning's early stopping, judged on the flip-averaged model that ships (W1) rather
    # than on its single view (P3f32_flip_scored, the baseline); both score the robust model flip-averaged
    "P3f32_flip_scored": {**P3, "precision": "float32", "score_flip_average": True},
    "W1f32_p3_flip_validated": {
        **P3,
        "precision": "float32",
        "score_flip_average": True,
        "validate_flip_average": True,
    },
    # adversarial weight perturbation (Wu et al. 2020) at the paper's gamma, beside a P3f32 rerun of the same session
    "P3f32_rerun2": {**P3, "precision": "float32"},
    "X1f32_p3_awp": {**P3, "precision": "float32", "awp_gamma": 5.0e-3},
    # perturbations carried across epochs (ATTA, Zheng et al. 2020): each image's FGSM step starts from its last
    # perturbation instead of fresh noise, at FGSM-RS's cost (beside the same P3f32 rerun)
    "Y1f32_p3_atta": {**P3, "precision": "float32", "method": "atta"},
}

SUITE = {
    "jpeg_q50": ("jpeg", 50),
    "jpeg_q75": ("jpeg", 75),
    "noise_8": ("noise", 8),
    "blur_0.5": ("blur", 0.5),
    "blur_1.0": ("blur", 1.0),
    "resize_24": ("resize", 24),
    "resize_128": ("resize", 128),
    "brightness_+20": ("brightness", 20),
    "brightness_-20": ("brightness", -20),
}


def subset(split, n, seed):
    import numpy as np

    from cifake.dataset import Split

    pick = np.sort(np.random.default_rng(seed).permutation(len(split.y))[:n])
    return Split(split.x[pick], split.y[pick], split.names[pick])


def run_recipe(name: str, recipe: dict, data: dict, seed: int, teacher: Path) -> dict:
    import keras

    from cifake.config import ModelParams
    from cifake.determinism import set_determinism
    from cifake.distill import teacher_targets
    from cifake.evaluation import attack_sweep, corruption_scores
    from cifake.fitconfig import Adversarial, FitConfig
    from cifake.metrics import classification_metrics
    from cifake.model import build_model, load_model, predict_proba, with_flip_average
    from cifake.training import fit

    r = {**BASE, **recipe}
    set_determinism(seed)
    common = dict(
        batch_size=128,
        weight_decay=5.0e-4,
        patience=100,
        augment=True,
        seed=seed,
        precision=r["precision"],
        everyday_ranges=r["ranges"],
        label_smoothing=r["label_smoothing"],
        ema=r["ema"],
    )
    adv_everyday = r["everyday"] if r["adv_everyday"] is None else r["adv_everyday"]
    model = build_model(ModelParams(**r["model"]))
    # CPU time compares only between recipes run on one machine on one day (rates swing 2-4x between days)
    out = {
        "recipe": name,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "settings": r,
        "parameters": int(model.count_params()),
    }
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if r["clean_epochs"]:
        config = FitConfig(epochs=r["clean_epochs"], learning_rate=r["lr"], everyday=r["everyday"], **common)
        model = fit(model, data["train"], data["val"], config).model
    cpu1 = time.process_time()
    clean_model = keras.models.clone_model(model)  # fit trains a float32 model in place
    clean_model.set_weights(model.get_weights())
    # training epsilon (evaluation stays at 2/255 and 4/255); step 1.25 epsilon (Wong et al. 2020) unless set
    adv = Adversarial(
        epsilon=r["epsilon"],
        step=r["step_ratio"] * r["epsilon"],
        random_start=True,
        method=r["method"],
        clean_fraction=r["clean_fraction"],
        warmup_epochs=r["warmup_epochs"],
        val_subset=500,
        everyday_attacked=r["everyday_attacked"],
        distill_weight=r["distill_weight"],
        distill_attacked=r["distill_attacked"],
        awp_gamma=r["awp_gamma"],
    )
    config = FitConfig(
        epochs=r["adv_epochs"],
        learning_rate=r["adv_lr"],
        everyday=adv_everyday,
        adversarial=adv,
        validate_flip_average=r["validate_flip_average"],
        **common,
    )
    soft = None
    if r["distill_weight"] > 0:  # the teacher's pass is part of the recipe's cost
        soft = teacher_targets(load_model(teacher), data["train"].x, r["distill_temperature"])
        out["teacher"] = teacher.name
    robust = fit(model, data["train"], data["val"], config, soft_targets=soft).model
    robust = with_flip_average(robust) if r["score_flip_average"] else robust
    out["cpu_seconds"] = {"clean": cpu1 - cpu0, "adversarial": time.process_time() - cpu1}
    out["wall_seconds"] = time.perf_counter() - wall0
    test, attack = data["test"], data["attack"]
    for label, m in (("clean_model", clean_model), ("robust_model", robust)):
        scores = {
            "clean_accuracy": classification_metrics(test.y, predict_proba(m, test.x))["accuracy"],
            "corruptions": corruption_scores(m, test.x, test.y, SUITE, seed),
            "unseen": corruption_scores(m, test.x, test.y, UNSEEN, seed),
            "novel": corruption_scores(m, test.x, test.y, NOVEL, seed),
        }
        if label == "robust_model":
            scores["attacks"] = attack_sweep(
                m, attack.x, attack.y, [2 / 255, 4 / 255], pgd_steps=10, step_fraction=0.25
            )
        out[label] = scores
    return out


def unseen(scores: dict, suite: str = "unseen") -> str:
    """Mean / worst accuracy under the unseen (or novel) conditions; "not scored" for recipes run before them."""
    if suite not in scores:
        return "not scored"
    u = scores[suite]
    return f"{100 * u['mean']:.1f} / {100 * u['worst']:.1f} ({u['worst_condition']})"


def table(lines: list[dict]) -> str:
    """The results as a markdown table (figures in %), best PGD-10 at 4/255 first."""
    head = (
        "| recipe | measured | params | CPU min (clean + adv) | clean model | robust: clean | PGD-10 2/255 "
        "| PGD-10 4/255 | FGSM 4/255 | everyday mean / worst (robust) | unseen mean / worst (robust) "
        "| novel mean / worst (robust) | PGD-4 points per CPU-min |\n|" + "---|" * 13
    )
    rows = []
    for r in sorted(lines, key=lambda r: -r["robust_model"]["attacks"]["pgd_eps4"]["accuracy"]):
        rob, attacks = r["robust_model"], r["robust_model"]["attacks"]
        cpu = sum(r["cpu_seconds"].values()) / 60
        # runs before the clone fix trained a float32 clean model in place: its figures were the robust one's
        clean = f"{100 * r['clean_model']['clean_accuracy']:.1f}" if r.get("clean_model_valid", True) else "n/a"
        clean = clean if r["settings"]["clean_epochs"] else "none (0 epochs)"
        rows.append(
            f"| {r['recipe']}{' (scored flip-averaged)' if r['settings'].get('score_flip_average') else ''} "
            f"| {r.get('measured', 'not recorded')} | {r['parameters'] / 1e6:.2f} M | {cpu:.0f} "
            f"({r['cpu_seconds']['clean'] / 60:.0f} + {r['cpu_seconds']['adversarial'] / 60:.0f}) | {clean} | "
            f"{100 * rob['clean_accuracy']:.1f} | {100 * attacks['pgd_eps2']['accuracy']:.1f} | "
            f"{100 * attacks['pgd_eps4']['accuracy']:.1f} | {100 * attacks['fgsm_eps4']['accuracy']:.1f} | "
            f"{100 * rob['corruptions']['mean']:.1f} / {100 * rob['corruptions']['worst']:.1f} "
            f"({rob['corruptions']['worst_condition']}) | {unseen(rob)} | {unseen(rob, 'novel')} | "
            f"{100 * attacks['pgd_eps4']['accuracy'] / cpu:.2f} |"
        )
    return "\n".join([head, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names")
    ap.add_argument("--train-images", type=int, default=16000)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--attack-images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--teacher",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "models" / "pretrained" / "cifake-clean-only.keras",
        help="the teacher of the distillation recipes",
    )
    ap.add_argument("--smoke", action="store_true", help="one epoch of each phase (checks the script, not recipes)")
    ap.add_argument("--table", action="store_true", help="print the results in --out as a markdown table and stop")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "recipe_search.jsonl")
    args = ap.parse_args()

    from cifake.dataset import Split

    lines = (
        [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()] if args.out.is_file() else []
    )
    if args.table:
        print(table(lines))
        return 0
    done = {r["recipe"] for r in lines}
    test = subset(Split.load(args.data / "test.npz"), args.test_images, args.seed)
    data = {
        "train": subset(Split.load(args.data / "train.npz"), args.train_images, args.seed),
        "val": subset(Split.load(args.data / "val.npz"), 2000, args.seed),
        "test": test,
        "attack": subset(test, args.attack_images, args.seed + 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.recipes.split(","):
        if name in done:
            print(f"{name}: already in {args.out}, skipped", file=sys.stderr)
            continue
        recipe = {**RECIPES[name], **({"clean_epochs": 1, "adv_epochs": 1} if args.smoke else {})}
        result = run_recipe(name, recipe, data, args.seed, args.teacher)
        emit(result, args.out)  # one whole line per finished recipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
