"""Does averaging the logit over each image and its mirror image (`model.flip_average`) buy robustness?

    python benchmarks/flip_average.py --data data/processed --images 3000 --seed 1 \
        --out benchmarks/results/flip_average.jsonl models/model_robust.keras

With ``--shift N`` it scores the ten-view model (`model.view_shift: N`) instead of the single view,
against the flip average: the rows then read ``shifted`` where they read ``single``.

For each model (flip-averaged or not: its single-view network is taken out first), scores the single
view and its flip-averaged version on the VALIDATION split only, so that adopting the change does not
touch the test set: clean accuracy on all of it, and white-box PGD (random start, steps of eps/4, the
project's attack, as ``evaluate`` runs it) on the same seeded random subset for both versions. With
``--restarts R`` an image counts as robust only if it survives all R random starts (a stronger attack,
to check that the averaged model is not merely harder for PGD to optimise). Reports the paired counts
(images only one version gets right) and appends one JSON object per model to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _results import emit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--images", type=int, default=3000, help="validation images attacked")
    ap.add_argument("--epsilon", type=float, default=4 / 255)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shift", type=int, default=0, help="compare the flip average with N-pixel shifted views")
    ap.add_argument("--out", type=Path, help="a .jsonl file to append the results to")
    args = ap.parse_args()

    import numpy as np

    from cifake.dataset import Split
    from cifake.model import load_model, with_flip_average, without_flip_average

    val = Split.load(args.data / "val.npz")
    pick = np.sort(np.random.default_rng(args.seed).choice(len(val.y), min(args.images, len(val.y)), replace=False))
    for path in args.models:
        single, _ = without_flip_average(load_model(path))
        row = {"model": str(path), "val_images": len(val.y), "attack_images": len(pick), "restarts": args.restarts}
        robust = {}
        other = ("shifted", with_flip_average(single, args.shift)) if args.shift else ("single", single)
        for name, model in (other, ("flip_average", with_flip_average(single))):
            row[name], robust[name] = score(model, val, pick, args)
        row["only_flip_average_robust"] = int((robust["flip_average"] & ~robust[other[0]]).sum())
        row[f"only_{other[0]}_robust"] = int((robust[other[0]] & ~robust["flip_average"]).sum())
        row["shift"] = args.shift
        emit(row, args.out)
    return 0


def score(model, val, pick, args):
    """Clean accuracy on all of ``val``; which of the ``pick`` images survive every PGD restart."""
    import numpy as np

    from cifake.attacks import Attacker, attack_images
    from cifake.evaluation import eps_key
    from cifake.metrics import classification_metrics, correct
    from cifake.model import predict_proba

    start, attacker, x, y = time.perf_counter(), Attacker(model), val.x[pick], val.y[pick]
    robust = np.ones(len(y), dtype=bool)
    for _ in range(args.restarts):
        adv = attack_images(attacker, x, y, method="pgd", eps=args.epsilon, steps=args.steps)
        robust &= correct(y, predict_proba(model, adv))
    clean = classification_metrics(val.y, predict_proba(model, val.x))["accuracy"]
    return {
        "val_clean": round(float(clean), 4),
        eps_key(f"pgd{args.steps}", args.epsilon): round(float(robust.mean()), 4),
        "seconds": round(time.perf_counter() - start),
    }, robust


if __name__ == "__main__":
    raise SystemExit(main())
