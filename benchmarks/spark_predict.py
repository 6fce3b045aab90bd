"""`cifake predict --spark local[2]` against `cifake predict` on the same folder, in one run: rate and memory.

    python benchmarks/spark_predict.py FOLDER [--master local[2]] [--rounds 1] [-o benchmarks/spark_predict.json]

FOLDER is e.g. the extracted CIFAKE `test/` (20 000 JPEGs). Each round runs both commands as separate processes,
alternating which goes first, and times them end to end (process start, JVM and workers, model loading, the
finished CSV); the rate is images / wall seconds. Peak memory is the largest sum of the resident memory of the
command and all its child processes (Spark's JVM and Python workers), sampled every 0.2 s. The two CSVs must
agree on every label. Needs pyspark (requirements-spark.txt) and Java. The machine's load average is written
beside the figures: this machine is shared, so compare the ratio, measured within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _results import cpu_name, write_result

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, output: Path, *extra: str) -> dict:
    """Run `cifake predict` on ``folder``; wall seconds, images classified, peak memory of its process tree."""
    cmd = [sys.executable, "-m", "cifake.cli", "predict", str(folder), "-o", str(output), *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, stop = [0.0], threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak[0] = max(peak[0], rss / 2**20)
            except psutil.Error:
                pass
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    with open(output, newline="", encoding="utf-8") as fh:
        labels = {r["Image Name"]: r["Predicted Label"] for r in csv.DictReader(fh)}
    return {
        "command": " ".join(["cifake predict FOLDER -o OUT.csv", *extra]),
        "images": len(labels),
        "seconds": round(seconds, 1),
        "images_per_s": round(len(labels) / seconds, 1),
        "peak_rss_mib": round(peak[0]),
        "summary": [line for line in stderr.splitlines() if line.startswith("classified")][-1],
        "labels": labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "spark_predict.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {"predict": [], "spark": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["predict", "spark"] if r % 2 == 0 else ["spark", "predict"]
            for name in order:
                extra = ["--spark", args.master] if name == "spark" else []
                runs[name].append(run(args.folder, Path(tmp) / f"{name}{r}.csv", *extra))
                print(json.dumps({k: v for k, v in runs[name][-1].items() if k != "labels"}), file=sys.stderr)
    same = all(s["labels"] == p["labels"] for s, p in zip(runs["spark"], runs["predict"], strict=True))
    best = {name: max(rs, key=lambda x: x["images_per_s"]) for name, rs in runs.items()}
    result = {
        "folder": str(args.folder),
        "master": args.master,
        "rounds": args.rounds,
        "runs": {name: [{k: v for k, v in x.items() if k != "labels"} for x in rs] for name, rs in runs.items()},
        "spark_to_predict_rate": round(best["spark"]["images_per_s"] / best["predict"]["images_per_s"], 3),
        "identical_labels": same,
        "cpu": cpu_name(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    write_result(result, args.output)


if __name__ == "__main__":
    main()
