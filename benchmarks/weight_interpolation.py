"""Does mixing a robust model's weights with its clean parent's (or a sibling's) buy accuracy cheaply?

    python benchmarks/weight_interpolation.py --data data/processed --alphas 0,0.1,0.2,0.3 \
        models/model_robust.keras models/model.keras

Weight-space interpolation (WiSE-FT, Wortsman et al. 2022; "model soups" when the second model is another
fine-tune of the same parent): for each alpha, the weights ``(1 - alpha) * robust + alpha * other``
(every variable, batch-norm statistics included; the two models must share an architecture, as a fine-tuned
model and the model it started from do). Scored on the VALIDATION split only, so that a choice made from it
does not touch the test set: clean accuracy on all of it, PGD-10 at 4/255 (the project's attack, as
``evaluate`` runs it) on a seeded random subset, and with ``--unseen`` the card's unseen everyday changes
on the same subset. Prints one JSON object per alpha (``alpha_clean``: the second model's share, named when
that was always the clean parent) and appends them to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _conditions import UNSEEN
from _results import emit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("robust", type=Path, help="the fine-tuned model")
    ap.add_argument("other", type=Path, help="the model it was fine-tuned from, or another fine-tune of that model")
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--alphas", default="0,0.1,0.2,0.3", help="comma-separated shares of the other model's weights")
    ap.add_argument("--attack-images", type=int, default=1000)
    ap.add_argument("--epsilon", type=float, default=4 / 255)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unseen", action="store_true", help="also score the card's unseen everyday changes")
    ap.add_argument("--tag", default="", help="a label written into each result")
    ap.add_argument("--out", type=Path, help="a .jsonl file to append the results to")
    args = ap.parse_args()

    import numpy as np

    from cifake.attacks import Attacker, attack_images
    from cifake.dataset import Split
    from cifake.evaluation import corruption_scores, eps_key
    from cifake.metrics import classification_metrics
    from cifake.model import load_model, predict_proba

    val = Split.load(args.data / "val.npz")
    pick = np.sort(
        np.random.default_rng(args.seed).choice(len(val.y), min(args.attack_images, len(val.y)), replace=False)
    )
    model = load_model(args.robust)  # interpolated in place; the attacker follows its weights
    robust, other = model.get_weights(), load_model(args.other).get_weights()
    if [w.shape for w in robust] != [w.shape for w in other]:
        ap.error("the two models do not share an architecture")
    attacker = Attacker(model)
    for alpha in (float(a) for a in args.alphas.split(",")):
        start = time.perf_counter()
        model.set_weights([(1 - alpha) * r + alpha * o for r, o in zip(robust, other, strict=False)])
        clean_acc = classification_metrics(val.y, predict_proba(model, val.x))["accuracy"]
        adv = attack_images(attacker, val.x[pick], val.y[pick], method="pgd", eps=args.epsilon, steps=10)
        pgd_acc = classification_metrics(val.y[pick], predict_proba(model, adv))["accuracy"]
        row = {
            "tag": args.tag,
            "alpha_clean": alpha,
            "val_clean": round(float(clean_acc), 4),
            "val_images": len(val.y),
            eps_key("val_pgd10", args.epsilon): round(float(pgd_acc), 4),
            "attack_images": len(pick),
        }
        if args.unseen:
            u = corruption_scores(model, val.x[pick], val.y[pick], UNSEEN, args.seed)
            row["val_unseen"] = {
                "mean": round(u["mean"], 4),
                "worst": round(u["worst"], 4),
                **{k: round(v, 4) for k, v in u["accuracy"].items()},
            }
        row["seconds"] = round(time.perf_counter() - start, 1)
        emit(row, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
