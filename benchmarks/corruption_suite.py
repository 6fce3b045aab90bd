"""Accuracy of saved models under the everyday-change suite of params.yaml, on a seeded random test subset.

    python benchmarks/corruption_suite.py --data data/processed --images 2000 \
        models/pretrained/cifake-robust.keras models/pretrained/cifake-clean.keras

Uses the same functions as the `evaluate` stage (cifake.evaluation.corruption_scores); prints one
JSON object per model with each condition's accuracy and its 95 % Wilson interval.
``--condition NAME=KIND:VALUE`` (repeatable) replaces the suite, e.g. to try settings the models were
never scored on: ``--condition blur_1.5=blur:1.5 --condition jpeg_q30=jpeg:30``; ``--unseen`` scores the
model card's ten "unseen" settings (``_conditions.UNSEEN``) instead, ``--novel`` its eight changes of kinds
no model was trained on (``_conditions.NOVEL``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from _conditions import NOVEL, UNSEEN, parse_conditions

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--condition",
        action="append",
        default=[],
        metavar="NAME=KIND:VALUE",
        help="a change to score instead of params.yaml's suite (repeatable)",
    )
    which.add_argument(
        "--unseen", action="store_true", help="score the model card's unseen settings instead of the suite"
    )
    which.add_argument("--novel", action="store_true", help="score kinds of change no model was trained on instead")
    args = ap.parse_args()

    import numpy as np

    from cifake.config import load_params
    from cifake.dataset import Split
    from cifake.evaluation import corruption_scores
    from cifake.metrics import accuracy_interval, correct
    from cifake.model import load_model, predict_proba

    test = Split.load(args.data / "test.npz")
    test = test.take(np.sort(np.random.default_rng(args.seed).permutation(len(test.y))[: args.images]))
    suite: dict[str, tuple[str, float]] = {
        name: (c.kind, c.value) for name, c in load_params().evaluate.corruptions.items()
    }
    try:
        suite = UNSEEN if args.unseen else NOVEL if args.novel else parse_conditions(args.condition) or suite
    except ValueError as err:
        ap.error(str(err))
    n = len(test.y)
    for path in args.models:
        model = load_model(path)
        clean = float(np.mean(correct(test.y, predict_proba(model, test.x))))
        scores = corruption_scores(model, test.x, test.y, suite, args.seed)
        ci = {k: [round(v, 4) for v in accuracy_interval(round(a * n), n)] for k, a in scores["accuracy"].items()}
        print(json.dumps({"model": str(path), "images": n, "clean": clean, **scores, "ci95": ci}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
