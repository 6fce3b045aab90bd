"""Where the network's inference ceiling lies: every way of running it tried in one run, as ratios to today's.

    python benchmarks/inference_ceiling.py [--model PATH] [--images 4096] [--rounds 2] [--extra-path DIR] \
        [-o benchmarks/inference_ceiling.json]

Inference only (no decoding), on ``--images`` images of the shipped flip-averaged model. Each round runs one
process per environment (oneDNN on and off, intra-op and inter-op thread counts); the default environment's
process tries, in turn: today's forward pass (the saved graph's two views, batch 256), both views in one
batched call at batch 128-2048, XLA (``jit_compile``), bfloat16, and ONNX Runtime (through ``tf2onnx``) and
OpenVINO where they import (``--extra-path`` is put on their ``PYTHONPATH``, so they need not be installed
in the project). Every rate is divided by today's forward pass measured in the same round's default process;
the best of ``--rounds`` is kept. The load average is written beside the figures: this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {
    "default": {},
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "intra_op_1": {"TF_NUM_INTRAOP_THREADS": "1"},
    "inter_op_1": {"TF_NUM_INTEROP_THREADS": "1"},
    "intra_1_inter_1": {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
}


def rate(fn, x: np.ndarray, batch: int) -> float:
    """Images per second of ``fn`` over ``x`` in batches of ``batch`` (after one warm-up batch)."""
    fn(x[:batch])
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        np.asarray(fn(x[i : i + batch]))
    return len(x) / (time.perf_counter() - start)


def tensorflow_variants(model) -> dict:
    """name -> (function on a batch, batch size): today's path and the TensorFlow alternatives."""
    import tensorflow as tf

    from cifake.model import INPUT_SHAPE, SINGLE_VIEW, with_precision

    spec = [tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)]
    saved_graph = tf.function(lambda p: model(p, training=False), input_signature=spec)
    one_call, xla = (tf.function(both_views(model), input_signature=spec, jit_compile=j) for j in (False, True))
    bf16 = with_precision(model, "mixed_bfloat16")
    assert bf16.get_layer(SINGLE_VIEW).get_layer("stem_conv").compute_dtype == "bfloat16"
    bf16_call = tf.function(both_views(bf16), input_signature=spec)
    variants = {"today_saved_graph_b256": (saved_graph, 256)}
    variants |= {f"one_call_b{b}": (one_call, b) for b in (128, 256, 512, 1024, 2048)}
    return variants | {"one_call_xla_b256": (xla, 256), "one_call_bfloat16_b256": (bf16_call, 256)}


def both_views(model):
    """A flip-averaged model's P(Fake), its network run once on the images and their mirror images stacked."""
    import tensorflow as tf

    from cifake.model import SINGLE_VIEW

    view = model.get_layer(SINGLE_VIEW)

    def forward(pixels):
        n = tf.shape(pixels)[0]
        logits = tf.cast(view(tf.concat([pixels, tf.reverse(pixels, [2])], 0), training=False), tf.float32)
        return tf.sigmoid((logits[:n] + logits[n:]) / 2)

    return forward


def runtime_variants(model, x: np.ndarray) -> tuple[dict, dict]:
    """ONNX Runtime and OpenVINO variants where they import; and notes (versions, conversion, differences)."""
    import tensorflow as tf

    from cifake.model import INPUT_SHAPE, predict_proba

    spec = [tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name="pixels")]
    graph = tf.function(lambda p: model(p, training=False), input_signature=spec)
    reference, variants, notes = predict_proba(model, x[:256], 256), {}, {}
    for name, build in (("onnxruntime", _onnxruntime), ("openvino", _openvino)):
        try:
            start = time.perf_counter()
            fn, version = build(graph, spec)
            notes[name] = {"version": version, "conversion_seconds": round(time.perf_counter() - start, 1)}
            notes[name]["max_abs_p_fake_difference"] = float(np.abs(np.ravel(fn(x[:256])) - reference).max())
            variants[f"{name}_b256"] = (fn, 256)
        except Exception as exc:  # not installed, or the conversion failed: recorded, not fatal
            notes[name] = {"unavailable": f"{type(exc).__name__}: {exc}"[:300]}
    return variants, notes


def _onnxruntime(graph, spec):
    import onnxruntime as ort
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(graph, input_signature=spec, opset=17)
    options = ort.SessionOptions()
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), f"onnxruntime {ort.__version__}, tf2onnx {tf2onnx.__version__}"


def _openvino(graph, spec):
    import openvino as ov

    compiled = ov.Core().compile_model(
        ov.convert_model(graph, input=[(-1, 32, 32, 3)]), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}
    )
    return (lambda x: compiled(x)[0]), f"openvino {ov.__version__}"


def worker(env_name: str, model_path: Path, images: int) -> dict:
    """One environment's rates (run in its own process, since TensorFlow reads these settings at start)."""
    from cifake.model import load_model

    model = load_model(model_path)
    x = np.random.default_rng(0).uniform(0, 255, (images, 32, 32, 3)).astype(np.float32)
    variants = tensorflow_variants(model)
    if env_name != "default":
        variants = {k: variants[k] for k in ("today_saved_graph_b256", "one_call_b256")}
    rates = {f"{env_name}/{name}": round(rate(fn, x, batch), 1) for name, (fn, batch) in variants.items()}
    notes: dict = {}
    if env_name == "default":  # after TensorFlow's timings: the runtimes' thread pools must not compete with them
        extra, notes = runtime_variants(model, x)
        rates |= {f"{env_name}/{name}": round(rate(fn, x, batch), 1) for name, (fn, batch) in extra.items()}
    return {"rates": rates, "notes": notes, "load_average_1_min": round(os.getloadavg()[0], 2)}


def run_round(model: Path, images: int, extra_path: str | None) -> dict:
    """Every environment once, each in a fresh process; rates relative to today's forward pass in default."""
    rates: dict[str, float] = {}
    notes: dict[str, str] = {}
    loads: list[float] = []
    for env_name, settings in ENVIRONMENTS.items():
        paths = [str(ROOT / "src"), *([extra_path] if extra_path else [])]
        env = {**os.environ, **settings, "PYTHONPATH": os.pathsep.join(paths), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, __file__, "--worker", env_name, "--model", str(model), "--images", str(images)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rates |= row["rates"]
        notes |= row["notes"]
        loads.append(row["load_average_1_min"])
        print(f"  {env_name}: {row['rates']}", file=sys.stderr, flush=True)
    today = rates["default/today_saved_graph_b256"]
    return {
        "rates": rates,
        "ratios": {k: round(v / today, 3) for k, v in rates.items()},
        "notes": notes,
        "loads": loads,
    }


def main() -> None:
    from cifake.cli import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--extra-path", default=None, help="a folder with onnxruntime/tf2onnx/openvino to try")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/inference_ceiling.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.images)))
        return
    rounds = [run_round(args.model, args.images, args.extra_path) for _ in range(args.rounds)]
    names = rounds[0]["ratios"]
    result = {
        "model": args.model.name,
        "images": args.images,
        "cpu_flags_bf16": __import__("cifake.inference", fromlist=["x"]).native_bf16_flags(),
        "environments": ENVIRONMENTS,
        "best_ratio_to_today": {k: max(r["ratios"][k] for r in rounds) for k in names},
        "best_images_per_s": {k: max(r["rates"][k] for r in rounds) for k in names},
        "ratio_per_round": [r["ratios"] for r in rounds],
        "load_average_1_min_per_process": [r["loads"] for r in rounds],
        "runtimes": rounds[-1]["notes"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
