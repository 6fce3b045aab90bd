"""Predict throughput: `cifake predict` against a per-image loop and against decoding alone.

    python benchmarks/predict_throughput.py FOLDER [--model PATH] [--loop-images 1000] \
        [-o benchmarks/predict_throughput.json]

FOLDER is any folder of images, e.g. the extracted CIFAKE `test/` (20 000 JPEGs). Measured in one run:
(a) the per-image loop most CIFAKE projects use (open one file, `model.predict` on it alone), on the
first ``--loop-images`` files; (b) decoding only (the ceiling: no model, no CSV); (c) `predict_folder`,
folder to finished CSV; and, to show where the time goes, inference alone on 4 096 already decoded images
in batches of 256, through the traced graph `predict` uses and through eager Keras calls. Writes JSON
with images/s and the ratios the performance issue asks for.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from cifake.cli import DEFAULT_MODEL
    from cifake.images import load_image
    from cifake.model import load_model, predict_proba
    from cifake.predict import iter_files, predict_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--loop-images", type=int, default=1000)
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/predict_throughput.json"))
    args = parser.parse_args()

    model = load_model(args.model)
    paths = [p for _, p, problem in iter_files(args.folder) if problem is None]
    model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)  # warm-up

    start = time.perf_counter()
    for path in paths[: args.loop_images]:
        model.predict(load_image(path)[None].astype(np.float32), verbose=0)
    loop_rate = min(args.loop_images, len(paths)) / (time.perf_counter() - start)

    start = time.perf_counter()
    decoded = [load_image(path) for path in paths]
    decode_rate = len(paths) / (time.perf_counter() - start)

    x = np.stack(decoded[:4096]).astype(np.float32)
    del decoded
    predict_proba(model, x[:256], 256)  # trace once
    start = time.perf_counter()
    predict_proba(model, x, 256)
    traced_rate = len(x) / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(0, len(x), 256):
        np.asarray(model(x[i : i + 256], training=False))
    eager_rate = len(x) / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        summary = predict_folder(model, args.folder, Path(tmp) / "out.csv")
    predict_rate = summary.classified / summary.seconds

    result = {
        "images": len(paths),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "per_image_loop_images_per_s": round(loop_rate, 1),
        "per_image_loop_measured_on": min(args.loop_images, len(paths)),
        "decode_only_images_per_s": round(decode_rate, 1),
        "cifake_predict_images_per_s": round(predict_rate, 1),
        "inference_only_traced_images_per_s": round(traced_rate, 1),
        "inference_only_eager_images_per_s": round(eager_rate, 1),
        "speedup_vs_per_image_loop": round(predict_rate / loop_rate, 1),
        "fraction_of_decode_ceiling": round(predict_rate / decode_rate, 3),
        "targets": {"speedup_vs_per_image_loop": 10, "fraction_of_decode_ceiling": 0.5},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
