"""Peak memory of `cifake predict` on two folder sizes: it streams, so memory must not grow with the folder.

    python benchmarks/predict_memory.py [--sizes 20000 200000] [-o benchmarks/predict_memory.json]

Writes generated 32x32 JPEGs (1 000 distinct random images, repeated under new names;
nothing from CIFAKE) into temporary folders, runs the `cifake predict` command on each in
a fresh process, and records that process's peak resident memory (ru_maxrss) and rate.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, n: int, distinct: int = 1000, per_dir: int = 10_000) -> None:
    """``n`` JPEGs under ``root``, in subfolders of ``per_dir`` files."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(distinct):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    for i in range(n):
        folder = root / f"part{i // per_dir:03d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:07d}.jpg").write_bytes(blobs[i % distinct])


def measure(folder: Path, output: Path) -> dict:
    """Run `cifake predict` in a child process; its peak RSS comes from getrusage(RUSAGE_CHILDREN)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cifake.cli", "predict", str(folder), "-o", str(output)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"cifake predict failed:\n{result.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:  # ru_maxrss of children is a maximum over all children so far
        print(
            "warning: this run's peak did not exceed an earlier child's; run sizes in increasing order", file=sys.stderr
        )
    with open(output, encoding="utf-8") as fh:
        rows = sum(1 for _ in fh) - 1
    return {
        "images": rows,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "seconds": round(seconds, 1),
        "images_per_s_incl_startup": round(rows / seconds, 1),
        "summary": result.stderr.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/predict_memory.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            folder = Path(tmp) / f"images_{n}"
            start = time.perf_counter()
            make_folder(folder, n)
            print(f"wrote {n:,} JPEGs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            runs.append(measure(folder, Path(tmp) / f"out_{n}.csv"))
            print(json.dumps(runs[-1]), file=sys.stderr)
    small, large = runs[0], runs[-1]
    result = {
        "command": "cifake predict FOLDER -o OUT.csv (default model, batch 256)",
        "runs": runs,
        "folder_size_ratio": round(large["images"] / small["images"], 1),
        "peak_memory_ratio": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "streams": large["peak_rss_mib"] < 1.2 * small["peak_rss_mib"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
