"""Predict throughput: `cifake predict` today against a baseline revision, the network's own rate, bf16 agreement.

    python benchmarks/predict_throughput.py FOLDER [--baseline REV] [--model PATH] [--loop-images 200] \
        [--rounds 2] [-o benchmarks/predict_throughput.json]

FOLDER is any folder of images, e.g. the extracted CIFAKE `test/` (20 000 JPEGs). Measured in one run:
(a) `cifake predict` folder to finished CSV, as a separate process, alternately from this checkout (default path,
then each ``--precision``) and, with ``--baseline``, from a clone at REV (today's code before a change): the
rate is the one predict prints, so process start and model loading are left out on both sides; best of
``--rounds``; (b) inference alone on 4 096 decoded images in batches of 256 (what predict does per batch),
in float32 and bfloat16, flip-averaged and single view, and the baseline's forward pass (the saved
graph's two calls); (c) float32 against bfloat16 labels and P(Fake) on every image of FOLDER; (d) decoding
alone and the per-image loop (`model.predict` on one file at a time). The machine's load average is written
beside the figures: this machine is shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"classified (\d+) images in ([\d.]+) s \((\d+) img/s\)")


def cli_rate(src: Path, folder: Path, model: Path, *extra: str) -> float:
    """The img/s that `cifake predict` (the package under ``src``) reports for ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(src), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "cifake.cli",
            "predict",
            str(folder),
            "-o",
            f"{tmp}/out.csv",
            "--model",
            str(model),
        ]
        proc = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True)
    match = RATE.search(proc.stderr)
    if proc.returncode not in (0, 3) or match is None:
        raise SystemExit(f"cifake predict failed ({src}):\n{proc.stderr[-2000:]}")
    return int(match.group(1)) / float(match.group(2))


def cli_rates(folder: Path, model: Path, baseline_src: Path | None, rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` rates of each `cifake predict` variant, the variants alternating within each round."""
    from cifake.inference import choose_precision

    variants: dict[str, tuple[Path, tuple[str, ...]]] = {"default": (ROOT / "src", ())}
    if baseline_src:
        variants["baseline"] = (baseline_src, ())
    other = "float32" if choose_precision()[0] == "mixed_bfloat16" else "bfloat16"  # the default is the other
    variants |= {
        other: (ROOT / "src", ("--precision", other)),
        "single_view_default": (ROOT / "src", ("--single-view",)),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (src, extra) in variants.items():
            best[name] = max(best.get(name, 0.0), cli_rate(src, folder, model, *extra))
            print(f"  cifake predict {name}: {best[name]:.0f} img/s (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    return {name: round(rate, 1) for name, rate in best.items()}


def timed(fn, x: np.ndarray, batch: int = 256) -> float:
    """Images per second of ``fn`` over ``x`` in batches (after one warm-up batch)."""
    fn(x[:batch])
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        fn(x[i : i + batch])
    return len(x) / (time.perf_counter() - start)


def inference_rates(model, x: np.ndarray, rounds: int) -> dict[str, float]:
    """Inference-only rates (best of ``rounds``, interleaved): today's two-call graph, and the new paths."""
    import tensorflow as tf

    from cifake.model import INPUT_SHAPE, predict_proba, with_precision, without_flip_average

    saved_graph = tf.function(lambda p: model(p, training=False), input_signature=[tf.TensorSpec((None, *INPUT_SHAPE))])
    single, _ = without_flip_average(model)
    models = {"flip_float32": model, "flip_bfloat16": with_precision(model, "mixed_bfloat16")}
    models |= {"single_float32": single, "single_bfloat16": with_precision(single, "mixed_bfloat16")}
    fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {"baseline_flip_float32": lambda b: saved_graph(b).numpy()}
    fns |= {name: partial(predict_proba, m, batch_size=256) for name, m in models.items()}
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = max(best.get(name, 0.0), timed(fn, x))
    return {name: round(rate, 1) for name, rate in best.items()}


def agreement(model, x: np.ndarray) -> dict:
    """float32 against bfloat16 on every image: identical labels (threshold 0.5) and the P(Fake) differences."""
    from cifake.model import predict_proba, with_precision

    p32 = predict_proba(model, x, 512)
    p16 = predict_proba(with_precision(model, "mixed_bfloat16"), x, 512)
    diff = np.abs(p32 - p16)
    return {
        "images": len(x),
        "identical_labels": round(float(np.mean((p32 >= 0.5) == (p16 >= 0.5))), 5),
        "labels_differing": int(np.sum((p32 >= 0.5) != (p16 >= 0.5))),
        "max_abs_p_fake_difference": round(float(diff.max()), 5),
        "mean_abs_p_fake_difference": round(float(diff.mean()), 6),
        "target_identical_labels": 0.999,
    }


def baseline_checkout(rev: str, tmp: str) -> Path:
    """A clone of this repository at ``rev``; returns its ``src`` folder."""
    clone = Path(tmp) / "baseline"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
    return clone / "src"


def main() -> None:
    from cifake.cli import DEFAULT_MODEL
    from cifake.images import load_image
    from cifake.inference import choose_precision
    from cifake.model import load_model
    from cifake.predict import iter_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--baseline", default=None, help="git revision of today's code, measured in the same run")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--loop-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/predict_throughput.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()

    model = load_model(args.model)
    paths = [p for _, p, _problem in iter_files(args.folder) if p is not None]  # no path: a problem
    start = time.perf_counter()
    for path in paths[: args.loop_images]:
        model.predict(load_image(path)[None].astype(np.float32), verbose=0)
    loop_rate = min(args.loop_images, len(paths)) / (time.perf_counter() - start)
    start = time.perf_counter()
    x = np.stack([load_image(path) for path in paths]).astype(np.float32)
    decode_rate = len(paths) / (time.perf_counter() - start)

    inference = inference_rates(model, x[:4096], args.rounds)
    agree = agreement(model, x)
    del x
    with tempfile.TemporaryDirectory() as tmp:
        base_src = baseline_checkout(args.baseline, tmp) if args.baseline else None
        cli = cli_rates(args.folder, args.model, base_src, args.rounds)
    precision, why = choose_precision()
    default_net = inference["flip_bfloat16" if precision == "mixed_bfloat16" else "flip_float32"]
    result = {
        "images": len(paths),
        "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} CPUs",
        "model": args.model.name,
        "baseline": args.baseline,
        "default_path": why,
        "load_average_1_5_15_min_start": [round(v, 2) for v in load_start],
        "load_average_1_5_15_min_end": [round(v, 2) for v in os.getloadavg()],
        "cifake_predict_images_per_s": cli,
        "inference_only_images_per_s": inference,
        "bf16_agreement": agree,
        "decode_only_images_per_s": round(decode_rate, 1),
        "per_image_loop_images_per_s": round(loop_rate, 1),
        "per_image_loop_measured_on": min(args.loop_images, len(paths)),
        "speedup_vs_per_image_loop": round(cli["default"] / loop_rate, 1),
        "default_vs_baseline": round(cli["default"] / cli["baseline"], 3) if args.baseline else None,
        "fraction_of_inference_only": round(cli["default"] / default_net, 3),
        "fraction_of_decode_only": round(cli["default"] / decode_rate, 3),
        "targets": {"speedup_vs_per_image_loop": 10, "default_vs_baseline": 1.4, "fraction_of_inference_only": 0.85},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
