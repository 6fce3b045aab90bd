"""Generalisation probes (issue 40): which training fakes teach a small detector to catch generators it never saw.

Steps, each resumable (outputs written whole under --root, a finished step is skipped, diffusion training
resumes after its last finished epoch):

    python benchmarks/generalisation_probe.py data                      # decode CIFAKE once (train REAL/FAKE, test)
    python benchmarks/generalisation_probe.py diffusion --name diff-nearest --epochs 8 --upsample nearest
    python benchmarks/generalisation_probe.py fakes --name diff-nearest --count 12000
    python benchmarks/generalisation_probe.py gan --name gan-transpose --epochs 8 --upsample transpose --loss ns
    python benchmarks/generalisation_probe.py ae --name ae-transpose --epochs 5 --upsample transpose --lr 1e-3
    python benchmarks/generalisation_probe.py semantic --name semantic-small --widths 32 64 128 --epochs 10 --lr 3e-3
    python benchmarks/generalisation_probe.py semantic --name semantic-airbench-s0 --arch airbench \\
        --widths 64 256 256 --activation relu --epochs 16 --lr 0.75 --batch 512 --smoothing 0.2 [--bias-scale 8] \\
        [--holdout shipped-val] [--coarse 2] [--mixup 0.4] [--adversarial 2] \\
        [--fine 5 --fine-from semantic-airbench-b8-held-v2] [--sd-classes]
    python benchmarks/generalisation_probe.py extract --name semantic-generalist   # the shipped generalist's classifier
    python benchmarks/generalisation_probe.py ensemble --name ensemble-airbench2 \\
        --members semantic-airbench-s0 semantic-airbench-s1 [--pixel pixel-w64] \\
        [--denoiser diff-nearest --strengths 0.1 [--smooth-share 0.2]]
    python benchmarks/generalisation_probe.py linear --name semantic-airbench-b8-held-v2 \\
        --fakes gan-transpose/sample=3000,diff-nearest-12/sample=3000        # frozen features, own fakes
    python benchmarks/generalisation_probe.py joint --name semantic-airbench-b8-held-v2   # three scores together
    python benchmarks/generalisation_probe.py joint --name pair-b8-held-v2-generalist \\
        --members semantic-airbench-b8-held-v2 semantic-generalist
    python benchmarks/generalisation_probe.py pixel --name pixel-w64 --widths 64 --blocks 4 --epochs 6 --batch 64
    python benchmarks/generalisation_probe.py spectrum \\
        --fakes gan-transpose-long/sample=4000,ae-transpose/recon=4000,warp-a3g4/warped=4000
    python benchmarks/generalisation_probe.py detect --name sd-only --fakes sd=24000
    python benchmarks/generalisation_probe.py detect --name sd+diff --fakes sd=12000,diff-nearest/resynth=12000
    python benchmarks/generalisation_probe.py file --name cifake-robust          # a shipped file, at its 0.5
    python benchmarks/generalisation_probe.py lowlevel                           # colour, nearest photographs
    python benchmarks/generalisation_probe.py layers --name semantic-airbench-b8-held   # hidden layers' statistics
    python benchmarks/generalisation_probe.py patches --name semantic-airbench-b8-held-v2   # local novelty
    python benchmarks/generalisation_probe.py manifold --name diff-nearest --strengths 0 0.1 0.25 0.4 0.6
    python benchmarks/generalisation_probe.py stability --name semantic-airbench-b8-held-v2 --denoiser diff-nearest \\
        --strengths 0.3 0.5

``detect`` trains a small ResNet with the project's own ``training.fit`` (flips, shifts, everyday changes on half
of the images) on 24 000 CIFAKE train/REAL images against the named fakes, then scores every folder of the
validation set (``--validation``, never trained on) and of the project's own generators not in training
(leave-one-out), and CIFAKE test REAL/FAKE; one JSON line per run goes to benchmarks/results/generalisation.jsonl.
Every fake is saved through JPEG quality 75, the encoding of every CIFAKE image.

The steps live in ``benchmarks/probe/``, a module per concept: ``common`` (data, results rows), ``generators``
(own fakes), ``classifier`` and ``semantic`` (CIFAR-10 classifiers and their scores), ``pixel`` (code lengths),
``lowlevel`` (statistics without a network, and a denoiser's error) and ``detect`` (trained detectors, shipped files).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from probe.classifier import cmd_extract
from probe.common import ROOT
from probe.detect import cmd_detect, cmd_file
from probe.generators import cmd_ae, cmd_data, cmd_diffusion, cmd_fakes, cmd_gan, cmd_warp
from probe.joint import cmd_joint
from probe.linear import cmd_linear
from probe.lowlevel import cmd_lowlevel, cmd_manifold, cmd_spectrum
from probe.pixel import cmd_pixel
from probe.semantic import cmd_ensemble, cmd_layers, cmd_patches, cmd_semantic, cmd_stability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = {
        "data": cmd_data, "diffusion": cmd_diffusion, "fakes": cmd_fakes, "gan": cmd_gan, "ae": cmd_ae,
        "warp": cmd_warp, "semantic": cmd_semantic, "ensemble": cmd_ensemble, "pixel": cmd_pixel,
        "spectrum": cmd_spectrum, "lowlevel": cmd_lowlevel, "layers": cmd_layers, "detect": cmd_detect,
        "file": cmd_file, "manifold": cmd_manifold, "stability": cmd_stability, "patches": cmd_patches,
        "extract": cmd_extract, "linear": cmd_linear, "joint": cmd_joint,
    }  # fmt: skip
    parser.add_argument("step", choices=list(steps))
    parser.add_argument("--root", type=Path, default=ROOT / "probes")
    parser.add_argument("--cifake", type=Path, default=Path("/tmp/cifake"), help="an extracted CIFAKE folder")
    parser.add_argument("--validation", type=Path, default=ROOT.parent / "shared" / "generators32" / "fakes")
    parser.add_argument("--name", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=2.0e-3)
    parser.add_argument("--widths", type=int, nargs="+", default=None)
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--upsample", default="nearest")
    parser.add_argument("--loss", default="ns", help="GAN loss: ns or hinge")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--count", type=int, default=12000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--strengths", type=float, nargs="+", default=[0.3, 0.45, 0.6],
        help="fakes: SDEdit's diffusion times; manifold: the diffusion times scored",
    )  # fmt: skip
    parser.add_argument("--amplitude", type=float, default=3.0, help="warp: largest displacement in pixels")
    parser.add_argument("--grid", type=int, default=4, help="warp: lattice the displacement field is drawn on")
    parser.add_argument("--fakes", default="sd=24000")
    parser.add_argument("--reals", type=int, default=24000)
    parser.add_argument("--outliers", default="", help="semantic: images to be unsure of, as --fakes")
    parser.add_argument(
        "--holdout", choices=["none", "shipped-val"], default="none",
        help="semantic: train/REAL images kept out of training (shipped-val: those the shipped models never saw)",
    )  # fmt: skip
    parser.add_argument("--rotation", action="store_true", help="semantic: also name each image's quarter turn")
    parser.add_argument("--activation", default="gelu", help="semantic: the classifier's activation")
    parser.add_argument("--members", nargs="+", default=[], help="ensemble: the semantic steps' names")
    parser.add_argument("--pixel", default="", help="ensemble: a pixel step's name, its code length joined in")
    parser.add_argument("--denoiser", default="", help="stability, ensemble: a diffusion step's name")
    parser.add_argument(
        "--smooth-share", type=float, default=0.0,
        help="ensemble: the --pixel or --denoiser score's share of the false alarms (0: equal shares only)",
    )  # fmt: skip
    parser.add_argument("--arch", choices=["vgg", "airbench"], default="vgg", help="semantic: the classifier")
    parser.add_argument("--batch", type=int, default=256, help="semantic, pixel: batch size")
    parser.add_argument("--bias-scale", type=float, default=1.0, help="semantic airbench: batch-norm bias scale")
    parser.add_argument("--smoothing", type=float, default=0.0, help="semantic: label smoothing")
    parser.add_argument("--mixup", type=float, default=0.0, help="semantic: mixup's Beta alpha (0: off)")
    parser.add_argument(
        "--adversarial", type=float, default=0.0, help="semantic airbench: FGSM training's eps in grey levels (0: off)"
    )
    parser.add_argument("--coarse", type=int, default=1, help="semantic airbench: sees k x k block means only")
    parser.add_argument("--fine", type=int, default=1, help="semantic airbench: k sub-classes of each class")
    parser.add_argument(
        "--fine-from", default="", help="semantic --fine: the semantic step whose features are clustered"
    )
    parser.add_argument(
        "--sd-classes", action="store_true", help="semantic airbench: SD's images join as ten classes of their own"
    )
    parser.add_argument("--oe", type=float, default=0.5, help="semantic: weight of the outlier-exposure loss")
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--everyday", type=float, default=0.5)
    parser.add_argument("--input", choices=["pixels", "residual"], default="pixels", help="what the detector sees")
    args = parser.parse_args()
    if args.widths is None:
        defaults = {"diffusion": [32, 64, 96], "gan": [256, 128, 64], "ae": [256, 128, 64], "semantic": [64, 128, 256]}
        args.widths = defaults.get(args.step, [32, 64, 128])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    (args.root / args.name).mkdir(parents=True, exist_ok=True)
    steps[args.step](args)


if __name__ == "__main__":
    main()
