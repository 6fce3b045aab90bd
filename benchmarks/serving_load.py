"""A bounded load on `mlflow models serve` of the registered champion: latency, images/s, failures.

    python benchmarks/serving_load.py [IMAGES] [--requests 1000] [--batch 8] [--concurrency 4] \
        [--model models/pretrained/cifake-robust.keras] [-o benchmarks/serving_load.json]

Registers MODEL with `cifake register` into a temporary SQLite tracking store, serves `models:/cifake-detector@
champion` with `mlflow models serve --env-manager local` on a free loopback port (127.0.0.1 only), and sends
REQUESTS requests of BATCH images each (dataframe_split, base64), CONCURRENCY at a time, then stops the server.
Images are the files of IMAGES (e.g. the extracted CIFAKE `test/`), cycled; without IMAGES, 1 000 generated
32x32 JPEGs. A failure is a request that does not answer 200 with one labelled row per image. Reports p50/p95/p99
latency, images/s over the whole load, failures, the server's peak memory, the CPU and the load average.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from _results import cpu_name, write_result

from cifake.inference import native_bf16_flags

ROOT = Path(__file__).resolve().parents[1]


def images(folder: Path | None, limit: int = 4096) -> list[bytes]:
    """Up to ``limit`` files of ``folder`` (sorted), or 1 000 generated JPEGs."""
    if folder is not None:
        return [p.read_bytes() for p in sorted(p for p in folder.rglob("*") if p.is_file())[:limit]]
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(1000):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    """Register ``model`` and start the server; returns it and its URL once it answers /ping."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "cifake.cli", "register", str(model)], cwd=workdir, env=env, check=True)
    port = free_port()
    command = ["models", "serve", "-m", "models:/cifake-detector@champion", "--env-manager", "local"]
    log = open(workdir / "serve.log", "w")  # noqa: SIM115 - the server writes to it until it stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", *command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{(workdir / 'serve.log').read_text()[-3000:]}")


def request(url: str, batch: list[bytes]) -> tuple[float, bool]:
    """POST one batch; (seconds, ok). ok: HTTP 200 and one labelled row per image."""
    body = {"dataframe_split": {"columns": ["content"], "data": [[base64.b64encode(b).decode()] for b in batch]}}
    req = urllib.request.Request(
        url + "/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            rows = json.loads(r.read())["predictions"]
            ok = r.status == 200 and len(rows) == len(batch) and all(row["label"] for row in rows)
    except (OSError, ValueError, KeyError):
        ok = False
    return time.perf_counter() - start, ok


def peak_memory(proc: subprocess.Popen, stop: threading.Event, peak: list[float]) -> None:
    """Sample the resident memory of ``proc`` and its children (MiB) until ``stop``; keep the peak in ``peak``."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak[0] = max(peak[0], rss / 2**20)
        except psutil.Error:
            pass
        stop.wait(0.5)


def load(url: str, blobs: list[bytes], n: int, batch: int, concurrency: int) -> tuple[list[float], int, float]:
    """``n`` requests of ``batch`` images, ``concurrency`` at a time: (latencies, failures, wall seconds)."""
    batches = [[blobs[(i * batch + j) % len(blobs)] for j in range(batch)] for i in range(n)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda b: request(url, b), batches))
    return [s for s, _ in results], sum(not ok for _, ok in results), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", type=Path, nargs="?", default=None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "pretrained" / "cifake-robust.keras")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "serving_load.json")
    args = parser.parse_args()
    blobs = images(args.images)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = serve(args.model, Path(tmp))
        stop, peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=peak_memory, args=(proc, stop, peak), daemon=True)
        sampler.start()
        try:
            load(url, blobs, 5, args.batch, 1)  # warm-up: the first calls trace the graph
            latencies, failures, wall = load(url, blobs, args.requests, args.batch, args.concurrency)
        finally:
            stop.set()
            proc.terminate()
            proc.wait(timeout=60)
    ms = np.array(latencies) * 1000
    result = {
        "command": f"mlflow models serve -m models:/cifake-detector@champion --env-manager local ({args.model.name})",
        "requests": args.requests,
        "images_per_request": args.batch,
        "concurrency": args.concurrency,
        "images": "generated 32x32 JPEGs" if args.images is None else f"{len(blobs)} files of {args.images}",
        "failures": failures,
        "latency_ms": {q: round(float(np.percentile(ms, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))},
        "images_per_s": round(args.requests * args.batch / wall, 1),
        "seconds": round(wall, 1),
        "server_peak_rss_mib": round(peak[0]),
        "cpu": cpu_name(),
        "bf16_flags": native_bf16_flags(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    write_result(result, args.output)


if __name__ == "__main__":
    main()
