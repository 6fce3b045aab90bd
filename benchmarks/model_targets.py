"""The detector issue's CIFAKE targets measured for any saved model file, on the shipped model's images.

    python benchmarks/model_targets.py models/pretrained/cifake-generalist.keras --data <CIFAKE data/processed> \\
        --out docs/experiments/generalist-2026-12-07

With ``evaluate``'s own functions (cifake.evaluation.score_model) and params.yaml's ``evaluate`` section: clean
metrics on the whole test set; FGSM and PGD-20 (random start, steps of ε/4) at ``--epsilons`` on evaluate's
stratified attack subset (params.yaml's seed, ``--images``: 2 000, as the card's figures); the listed everyday
changes on that subset; the card's unseen settings and novel kinds on corruption_suite.py's subset (seed 0, 2 000
images).
Writes OUT/evaluate.json in ``evaluate``'s shape (``robust_model``, ``attack_images``) and OUT/suites.jsonl
(``unseen``, ``novel``), which card_tables.py reads. A killed run resumes its attacks (finished batches in
checkpoints/model_targets/MODEL, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _conditions import NOVEL, UNSEEN

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints" / "model_targets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=2000, help="the attacked and changed subset")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[2 / 255, 4 / 255])
    args = ap.parse_args()

    from cifake.config import load_params
    from cifake.dataset import Split
    from cifake.evaluation import corruption_scores, score_model
    from cifake.fileio import sha256_file, write_json, write_text
    from cifake.metrics import stratified_subset
    from cifake.model import load_model

    params, start = load_params(), time.time()
    ev = params.evaluate.model_copy(update={"epsilons": tuple(args.epsilons)})
    test, model = Split.load(args.data / "test.npz"), load_model(args.model)
    subset = stratified_subset(test.y, args.images, params.seed)
    scores, _ = score_model(model, test, subset, ev, params.seed, cache=CHECKPOINTS / args.model.stem)
    other = np.sort(np.random.default_rng(0).permutation(len(test.y))[: args.images])  # corruption_suite.py's
    lines = [
        {"suite": name, "images": len(other), **corruption_scores(model, test.x[other], test.y[other], suite, 0)}
        for name, suite in (("unseen", UNSEEN), ("novel", NOVEL))
    ]
    record = {
        "model": args.model.name, "sha256": sha256_file(args.model), "test_images": len(test.y),
        "attack_images": len(subset), "pgd_steps": ev.pgd_steps, "minutes": round((time.time() - start) / 60, 1),
        "robust_model": scores,
    }  # fmt: skip
    write_text(args.out / "suites.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    write_json(args.out / "evaluate.json", record)
    print(json.dumps({k: v for k, v in record.items() if k != "robust_model"} | {"clean": scores["clean"]["accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
