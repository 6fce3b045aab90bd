"""Wall time of `dvc repro` on the offline sample from a fresh clone, and of the no-op second run.

    python benchmarks/repro_time.py [--baseline REV] [-o benchmarks/repro_time.json]

Clones the repository's committed HEAD into a temporary folder (uncommitted changes are not
measured), runs `dvc repro` there with its own MLflow database, then `dvc repro` again, and
records both wall times and the time of each stage (from DVC's "Running stage" lines). With
``--baseline REV`` the same is first done for a clone checked out at REV, in the same run, so that the
two times can be compared on a shared machine whose speed drifts; the load average is recorded beside each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_repro(clone: Path, env: dict) -> tuple[float, dict[str, float]]:
    """Run `dvc repro` in ``clone``; return its wall time and the seconds spent in each stage."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None  # stdout=PIPE
    start = last = time.perf_counter()
    stages, current, output = {}, None, []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("Running stage '"):
            now = time.perf_counter()
            if current:
                stages[current] = round(now - last, 1)
            current, last = line.split("'")[1], now
    if proc.wait() != 0:
        raise SystemExit("dvc repro failed:\n" + "".join(output[-40:]))
    end = time.perf_counter()
    if current:
        stages[current] = round(end - last, 1)
    return end - start, stages


def fresh_clone_repro(rev: str | None) -> dict:
    """Clone the repository (at ``rev``, or HEAD), run `dvc repro` twice there; times and load averages."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "cifake"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        if rev:
            subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
        env = {**os.environ, "PYTHONPATH": str(clone / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{clone}/mlflow.db"}
        load_before = os.getloadavg()
        first, stages = timed_repro(clone, env)
        load_after = os.getloadavg()
        second, _ = timed_repro(clone, env)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True)
    return {
        "checked_out": head.stdout.strip(),
        "first_repro_seconds": round(first, 1),
        "stage_seconds": stages,
        "second_repro_seconds": round(second, 1),
        "load_average_1_5_15_min_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_min_after": [round(v, 2) for v in load_after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=None, help="also time a clone checked out at this revision, first")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/repro_time.json"))
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    baseline = fresh_clone_repro(args.baseline) if args.baseline else None
    result = {
        "commit": commit,
        "command": "dvc repro (offline sample, params.yaml as committed) in a fresh clone",
        "cpus": os.cpu_count(),
        **fresh_clone_repro(None),
        "target_first_repro_seconds": 180,
    }
    if baseline:
        result["baseline"] = baseline
        result["ratio_to_baseline"] = round(result["first_repro_seconds"] / baseline["first_repro_seconds"], 3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
