"""Transfer (black-box) attacks on the shipped robust model, on evaluate's attacked subset of CIFAKE.

PGD-20 (random start, steps of ε/4) is crafted on each source model and the target is scored on those
images, with `evaluate`'s own functions (cifake.evaluation.pgd_images, transfer_scores) and its subset
(stratified, seed 42, 2 000 images: the card's attack figures use the same images; ``--images`` takes a
smaller stratified subset). One JSON line per source is appended to ``--out``.

    python benchmarks/transfer.py --data <CIFAKE data/processed>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _results import emit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRETRAINED = Path(__file__).resolve().parents[1] / "models" / "pretrained"
SOURCES = {"clean": PRETRAINED / "cifake-clean.keras", "clean_only": PRETRAINED / "cifake-clean-only.keras"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="data/processed folder of a CIFAKE preprocess run")
    ap.add_argument("--target", type=Path, default=PRETRAINED / "cifake-robust.keras")
    ap.add_argument("--images", type=int, default=2000, help="evaluate's subset size (fewer: a smaller subset)")
    ap.add_argument("--epsilons", default="1,2,4,8", help="in grey levels of 255, comma-separated")
    ap.add_argument("--seed", type=int, default=42, help="evaluate's subset seed (params.yaml seed)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "transfer.jsonl")
    args = ap.parse_args()

    from cifake.dataset import Split
    from cifake.determinism import set_determinism
    from cifake.evaluation import pgd_images, transfer_scores
    from cifake.metrics import stratified_subset
    from cifake.model import load_model

    set_determinism(args.seed)
    test = Split.load(args.data / "test.npz")
    subset = stratified_subset(test.y, args.images, args.seed)
    x, y = test.x[subset], test.y[subset]
    target = load_model(args.target)
    for name, path in SOURCES.items():
        start = time.perf_counter()
        epsilons = [float(e) / 255 for e in args.epsilons.split(",")]
        crafted = pgd_images(load_model(path), x, y, epsilons, pgd_steps=20, step_fraction=0.25)
        row = {
            "measured": time.strftime("%Y-%m-%d %H:%M"),
            "source": name,
            "source_model": str(path.relative_to(PRETRAINED.parents[1])),
            "target_model": str(args.target),
            "images": int(len(y)),
            "attack": "pgd-20, random start, step eps/4",
            "scores": transfer_scores(target, crafted, y),
            "seconds": round(time.perf_counter() - start, 1),
        }
        emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
