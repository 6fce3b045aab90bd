"""Do more test-time views than the flip average (`model.view_shift`) buy white-box robustness, and at what cost?

    python benchmarks/view_average.py --data data/processed --shifts 0 1 \
        --out benchmarks/results/view_average.jsonl models/pretrained/cifake-robust.keras

For each model (its single-view network is taken out first) and each shift (0: the flip average, two views;
N: ten views, see `cifake.model.with_flip_average`): clean accuracy, FGSM and PGD-20 (random start, steps of
eps/4, the project's attack, differentiated through every view) at each epsilon on `evaluate`'s stratified
subset of the TEST split, the same images `evaluate` attacks, so that rows compare with the model card's.
Deciding to ship from these rows would fit the test set: `benchmarks/flip_average.py --shift N` gives the
validation figures to decide on.
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
    ap.add_argument("--shifts", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epsilons", type=float, nargs="+", default=[2.0, 4.0], help="in 1/255")
    ap.add_argument("--images", type=int, default=2000, help="evaluate.attack_subset")
    ap.add_argument("--seed", type=int, default=42, help="params.yaml's seed (evaluate's subset)")
    ap.add_argument("--out", type=Path, help="a .jsonl file to append the results to")
    args = ap.parse_args()

    from cifake.dataset import Split
    from cifake.determinism import set_determinism
    from cifake.evaluation import attack_sweep
    from cifake.metrics import classification_metrics, stratified_subset
    from cifake.model import load_model, predict_proba, with_flip_average, without_flip_average

    test = Split.load(args.data / "test.npz")
    pick = stratified_subset(test.y, args.images, args.seed)
    x, y = test.x[pick].astype("float32"), test.y[pick].astype("float32")
    for path in args.models:
        single, _ = without_flip_average(load_model(path))
        for shift in args.shifts:
            set_determinism(args.seed)
            model, start = with_flip_average(single, shift), time.perf_counter()
            clean = classification_metrics(y, predict_proba(model, x))["accuracy"]
            eps = [e / 255 for e in args.epsilons]
            sweep = attack_sweep(model, x, y, eps, pgd_steps=20, step_fraction=0.25)
            row = {"model": str(path), "shift": shift, "views": len(model.get_layer("logits").input)}
            row |= {"images": len(y), "clean_subset": round(float(clean), 4)}
            row |= {k: v["accuracy"] for k, v in sweep.items() if isinstance(v, dict)}
            row |= {"masking_suspects": sweep["gradient_masking_suspect_eps_255"]}
            emit(row | {"seconds": round(time.perf_counter() - start)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
