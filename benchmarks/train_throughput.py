"""Training and attack throughput for each architecture: clean and adversarial images/s, FGSM and PGD images/s.

    python benchmarks/train_throughput.py [--images 4096] [--arch NAME ...] [--precision mixed_bfloat16] \
        [-o benchmarks/train_throughput.json]

Uses the project's own `fit` and `Attacker` (the code the pipeline runs) with the batch size,
random-start FGSM settings and PGD steps of params.yaml, on the preprocessed training images in
data/processed/train.npz when present (else random pixels: the rate does not depend on content).
Each training rate is that of the second epoch, so graph tracing is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ARCHITECTURES = {  # name -> model section; the first two are the choices params.yaml offers by default
    "seed_cnn 32-64": dict(architecture="seed_cnn", widths=(32, 64), blocks_per_stage=1, dense_units=64, dropout=0.2),
    "resnet 16-32-64": dict(
        architecture="resnet", widths=(16, 32, 64), blocks_per_stage=2, dense_units=64, dropout=0.2
    ),
    "resnet 32-64-128": dict(
        architecture="resnet", widths=(32, 64, 128), blocks_per_stage=2, dense_units=64, dropout=0.2
    ),
    # the full runs' stride-2-stem network (1.23 M params) and the same with two blocks per stage; only with --arch
    "resnet stem2 64-128-256 x1": dict(
        architecture="resnet", widths=(64, 128, 256), blocks_per_stage=1, stem_stride=2, dense_units=64, dropout=0.1
    ),
    "resnet stem2 64-128-256 x2": dict(
        architecture="resnet", widths=(64, 128, 256), blocks_per_stage=2, stem_stride=2, dense_units=64, dropout=0.1
    ),
    # ResNet-18's widths and depth (11.2 M params), the size of the published references; only with --arch
    "resnet 64-128-256-512": dict(
        architecture="resnet", widths=(64, 128, 256, 512), blocks_per_stage=2, dense_units=64, dropout=0.2
    ),
}
DEFAULT_ARCHITECTURES = ["seed_cnn 32-64", "resnet 16-32-64", "resnet 32-64-128"]


def _images(n: int, seed: int):
    from cifake.dataset import Split

    path = Path("data/processed/train.npz")
    if path.is_file():
        split = Split.load(path)
        if len(split.y) >= n:
            idx = np.random.default_rng(seed).choice(len(split.y), n, replace=False)
            return Split(x=split.x[idx], y=split.y[idx], names=split.names[idx]), "data/processed/train.npz"
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.uint8)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(x=x, y=y, names=np.array([f"{i}" for i in range(n)])), "random pixels"


def main() -> None:
    import tensorflow as tf

    from cifake.attacks import Attacker, attack_images
    from cifake.config import ModelParams, load_params
    from cifake.determinism import set_determinism
    from cifake.fitconfig import Adversarial, FitConfig
    from cifake.model import build_model
    from cifake.training import fit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--attack-images", type=int, default=512)
    parser.add_argument(
        "--arch",
        action="append",
        choices=list(ARCHITECTURES),
        help=f"architectures to measure (repeatable; default: {', '.join(DEFAULT_ARCHITECTURES)})",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_bfloat16"],
        help="training precision (attacks in the saved float32 model, as evaluate runs them)",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/train_throughput.json"))
    args = parser.parse_args()

    params = load_params()
    ft, ev = params.fgsm_finetune, params.evaluate
    train, source = _images(args.images, params.seed)
    val = type(train)(x=train.x[:256], y=train.y[:256], names=train.names[:256])
    adversarial = Adversarial(
        epsilon=ft.epsilon,
        step=ft.step,
        random_start=ft.random_start,
        clean_fraction=ft.clean_fraction,
        val_pgd_steps=1,
        val_subset=64,
    )
    results = {}
    for name in args.arch or DEFAULT_ARCHITECTURES:
        spec = ARCHITECTURES[name]
        set_determinism(params.seed)
        model = build_model(ModelParams.model_validate(spec))
        row: dict[str, float] = {"parameters": int(model.count_params())}
        for mode, adv in (("clean", None), ("adversarial", adversarial)):
            config = FitConfig(
                epochs=2,
                batch_size=params.train.batch_size,
                learning_rate=1e-3,
                weight_decay=0.0,
                patience=10,
                augment=True,
                seed=params.seed,
                adversarial=adv,
                precision=args.precision,
            )
            result = fit(model, train, val, config)
            model, history = result.model, result.history
            row[f"train_{mode}_images_per_s"] = round(history[-1]["images_per_second"], 1)
        attacker = Attacker(model)
        x, y = train.x[: args.attack_images], train.y[: args.attack_images]
        for method, steps in (("fgsm", 1), ("pgd", ev.pgd_steps)):
            attack_images(attacker, x[:64], y[:64], method=method, eps=ft.epsilon, steps=steps)  # trace
            start = time.perf_counter()
            attack_images(attacker, x, y, method=method, eps=ft.epsilon, steps=steps, batch_size=ev.batch_size)
            key = f"{method}{'-' + str(steps) if method == 'pgd' else ''}_images_per_s"
            row[key] = round(len(y) / (time.perf_counter() - start), 1)
        row["minutes_per_100k_epoch_clean"] = round(100_000 / row["train_clean_images_per_s"] / 60, 1)
        row["minutes_per_100k_epoch_adversarial"] = round(100_000 / row["train_adversarial_images_per_s"] / 60, 1)
        results[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)

    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}",
        "images": source,
        "batch_size": params.train.batch_size,
        "precision": args.precision,
        "adversarial": f"random-start FGSM eps={ft.epsilon:.4f} step={ft.step:.4f}, "
        f"{1 - ft.clean_fraction:.0%} of each batch attacked",
        "architectures": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
