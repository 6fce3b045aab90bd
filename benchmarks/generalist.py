"""Make the generalist file (issue 40): the shipped robust detector joined with a CIFAR-10 classifier's doubt.

    python benchmarks/generalisation_probe.py semantic --name semantic-airbench-b8-held --arch airbench \\
        --widths 64 256 256 --activation relu --epochs 16 --lr 0.75 --batch 512 --smoothing 0.2 --bias-scale 8 \\
        --holdout shipped-val
    python benchmarks/generalist.py --classifier probes/semantic-airbench-b8-held/classifier.keras
    python benchmarks/generalisation.py --real <CIFAKE>/test/REAL models/pretrained/cifake-generalist.keras

The classifier is trained on CIFAKE train/REAL without the 5 000 photographs of ``preprocess``'s validation split,
which the shipped detector never trained on either; they calibrate the join (cifake.generalist.joined_detector):
a seeded half gives each score's CDF, the other half the threshold that calls 95 % of them Real. The file is
written whole and its checksum replaced in the SHA256SUMS beside it, if there is one.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRETRAINED = Path(__file__).resolve().parents[1] / "models" / "pretrained"


def calibration_photographs(cifake: Path) -> np.ndarray:
    """train/REAL's photographs in ``preprocess``'s validation split, decoded, in a seeded order."""
    from probe.classifier import shipped_val_reals

    from cifake.generalisation import load_folder

    chosen = shipped_val_reals(argparse.Namespace(cifake=cifake))
    images = load_folder(cifake / "train" / "REAL")[0][chosen].astype(np.float32)  # file-name order, as the probe's
    return images[np.random.default_rng(0).permutation(len(images))]


def plain_classifier(path: Path):
    """The probe's classifier in built-in layers only and without random layers, checked to compute what the
    trained one computes in inference."""
    from probe.classifier import for_inference, load_classifier

    trained = load_classifier(path)
    plain = for_inference(trained)
    probe = np.random.default_rng(1).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
    gap = float(np.abs(np.asarray(trained(probe, training=False)) - np.asarray(plain(probe))).max())
    if gap > 1.0e-3:
        raise SystemExit(f"{path}: the built-in copy differs from the trained classifier by {gap}")
    return plain


def replace_checksum(folder: Path, name: str) -> str:
    from cifake.fileio import atomic_path, sha256_file

    digest = sha256_file(folder / name)
    lines = [line for line in (folder / "SHA256SUMS").read_text().splitlines() if not line.endswith(f"  {name}")]
    with atomic_path(folder / "SHA256SUMS") as tmp:
        Path(tmp).write_text("\n".join([*lines, f"{digest}  {name}"]) + "\n")
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, required=True, help="a probe semantic step's classifier.keras")
    parser.add_argument("--detector", type=Path, default=PRETRAINED / "cifake-robust.keras")
    parser.add_argument("--cifake", type=Path, default=Path("/tmp/cifake"), help="an extracted CIFAKE folder")
    parser.add_argument("--out", type=Path, default=PRETRAINED / "cifake-generalist.keras")
    parser.add_argument("--real-share", type=float, default=0.95)
    args = parser.parse_args()
    from cifake.fileio import sha256_file
    from cifake.generalist import joined_detector
    from cifake.model import load_model, predict_proba, save_model

    start = time.time()
    photographs = calibration_photographs(args.cifake)
    half = len(photographs) // 2
    model = joined_detector(
        load_model(args.detector), plain_classifier(args.classifier), photographs[:half], photographs[half:],
        real_share=args.real_share,
    )  # fmt: skip
    save_model(model, args.out)
    sums = (args.out.parent / "SHA256SUMS").exists()
    digest = replace_checksum(args.out.parent, args.out.name) if sums else sha256_file(args.out)
    called_real = float((predict_proba(load_model(args.out), photographs[half:]) < 0.5).mean())
    seconds = time.time() - start
    print(f"{args.out} ({digest[:12]}): threshold photographs called Real {called_real:.4f} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
