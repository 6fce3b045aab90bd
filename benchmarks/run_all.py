"""Run every benchmark and write one summary with each target met or missed.

    python benchmarks/run_all.py --cifake-test path/to/cifake/test [-o benchmarks/summary.json]

Each benchmark runs in its own process and writes its own JSON in benchmarks/:
predict_throughput (needs the CIFAKE test folder), predict_memory (generated JPEGs),
train_throughput (training and attack rates per architecture), repro_time (fresh-clone
`dvc repro` on the sample). About 20 minutes on 2 CPU cores. Run it from the project root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict:
    out = HERE / f"{script}.json"
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
    parser.add_argument("-o", "--output", type=Path, default=HERE / "summary.json")
    args = parser.parse_args()

    throughput = run("predict_throughput", str(args.cifake_test))
    memory = run("predict_memory")
    training = run("train_throughput")
    repro = run("repro_time")
    summary = {
        "targets": [
            target("predict speedup over the per-image loop", throughput["speedup_vs_per_image_loop"], 10),
            target("predict rate as a fraction of decode-only", throughput["fraction_of_decode_ceiling"], 0.5),
            target("peak memory ratio, 10x the images (streaming)", memory["peak_memory_ratio"], 1.2, False),
            target("fresh-clone dvc repro on the sample, seconds", repro["first_repro_seconds"], 180, False),
        ],
        "predict_images_per_s": throughput["cifake_predict_images_per_s"],
        "training": {
            name: {k: v for k, v in row.items() if k.endswith("_per_s") or k.startswith("minutes")}
            for name, row in training["architectures"].items()
        },
        "files": ["predict_throughput.json", "predict_memory.json", "train_throughput.json", "repro_time.json"],
    }
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
