"""Run every benchmark and write one summary with each target met or missed.

    python benchmarks/run_all.py --cifake-test path/to/cifake/test [--baseline REV] [--extra-path DIR] \
        [--reuse NAME ...] [-o benchmarks/summary.json]

Each benchmark runs in its own process and writes its own JSON in benchmarks/:
predict_throughput (needs the CIFAKE test folder; with ``--baseline``, `cifake predict` at REV in the same
run), inference_ceiling (every way of running the network, as ratios to today's; ``--extra-path`` lends it
onnxruntime/tf2onnx/openvino), predict_memory (generated JPEGs), train_throughput (training and attack
rates per architecture), repro_time (fresh-clone `dvc repro` on the sample, and at REV with ``--baseline``).
``--reuse NAME`` takes that benchmark's existing JSON instead of running it (the summary says which).
About 40 minutes on 2 idle CPU cores. Run it from the project root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("predict_throughput", "inference_ceiling", "predict_memory", "train_throughput", "repro_time")


def run(script: str, *args: str, reuse: tuple[str, ...] = ()) -> dict:
    out = HERE / f"{script}.json"
    if script in reuse:
        print(f"== {script}: reusing {out}", file=sys.stderr, flush=True)
        return json.loads(out.read_text())
    print(f"== {script}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(HERE / f"{script}.py"), *args, "-o", str(out)], check=True)
    return json.loads(out.read_text())


def target(name: str, value: float, goal: float, higher_is_better: bool = True) -> dict:
    met = value >= goal if higher_is_better else value <= goal
    return {
        "target": name,
        "value": value,
        "goal": goal,
        "met": met,
        "missed_by": 0.0 if met else round(abs(goal - value), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifake-test", type=Path, required=True, help="the extracted CIFAKE test/ folder")
    parser.add_argument("--baseline", default=None, help="git revision of today's code, measured in the same run")
    parser.add_argument("--extra-path", default=None, help="folder with onnxruntime/tf2onnx/openvino to try")
    parser.add_argument("--reuse", action="append", default=[], help="take this benchmark's existing JSON")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "summary.json")
    args = parser.parse_args()
    reuse, base = tuple(args.reuse), (("--baseline", args.baseline) if args.baseline else ())

    throughput = run("predict_throughput", str(args.cifake_test), *base, reuse=reuse)
    ceiling = run("inference_ceiling", *(("--extra-path", args.extra_path) if args.extra_path else ()), reuse=reuse)
    memory = run("predict_memory", reuse=reuse)
    training = run("train_throughput", reuse=reuse)
    repro = run("repro_time", *base, reuse=reuse)
    agree = throughput["bf16_agreement"]
    summary = {
        "targets": [
            target("predict speedup over the per-image loop", throughput["speedup_vs_per_image_loop"], 10),
            target(
                "predict (default path, flip-averaged) against the baseline", throughput["default_vs_baseline"], 1.4
            ),
            target("predict rate as a fraction of inference-only", throughput["fraction_of_inference_only"], 0.85),
            target("bf16 labels identical to float32 (whole test folder)", agree["identical_labels"], 0.999),
            target("peak memory ratio, 10x the images (streaming)", memory["peak_memory_ratio"], 1.2, False),
            target("fresh-clone dvc repro on the sample, seconds", repro["first_repro_seconds"], 180, False),
        ],
        "predict_default_path": throughput["default_path"],
        "bf16_max_abs_p_fake_difference": agree["max_abs_p_fake_difference"],
        "inference_ceiling_best_ratio_to_today": ceiling["best_ratio_to_today"],
        "reused": list(reuse),
        "predict_images_per_s": throughput["cifake_predict_images_per_s"],
        "repro_seconds": {
            "this": repro["first_repro_seconds"],
            "baseline": repro.get("baseline", {}).get("first_repro_seconds"),
        },
        "training": {
            name: {k: v for k, v in row.items() if k.endswith("_per_s") or k.startswith("minutes")}
            for name, row in training["architectures"].items()
        },
        "files": [f"{name}.json" for name in BENCHMARKS],
    }
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
