"""Training through tf.distribute: `mirrored` on two logical CPU devices matches one device,
and `multi_worker` trains one model across two processes that read their cluster from TF_CONFIG.

Logical devices must be configured before TensorFlow starts, so the comparison
runs in a fresh Python process. The seed CNN without dropout has no per-replica
state (no batch statistics, no random masks), so splitting each batch over two
replicas must give the same training as one device, up to float rounding.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.model

# The training task both tests run: a small learnable problem for a seed CNN without dropout.
TASK = r"""
import numpy as np

from cifake.config import ModelParams
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.model import build_model
from cifake.distribute import distribution_strategy
from cifake.fitconfig import FitConfig
from cifake.training import fit

rng = np.random.default_rng(0)
def split(n):
    y = rng.integers(0, 2, n).astype(np.uint8)
    x = rng.integers(0, 160, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1] += 60                       # fakes are brighter: learnable in a few steps
    return Split(x=x, y=y, names=np.array([f"{i}.png" for i in range(n)]))
train, val = split(256), split(128)
params = ModelParams(architecture="seed_cnn", widths=(8, 16), blocks_per_stage=1, dense_units=16, dropout=0.0)
config = FitConfig(epochs=4, batch_size=32, learning_rate=3e-3, weight_decay=0.0, patience=5, augment=False, seed=0)
"""

SCRIPT = (
    r"""
import json
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
    + TASK
    + r"""
out = {}
for name in ("none", "mirrored"):
    set_determinism(0)
    strategy = distribution_strategy(name)
    with strategy.scope():
        model = build_model(params)
    history = fit(model, train, val, config, strategy=strategy).history
    out[name] = {
        "replicas": strategy.num_replicas_in_sync,
        "loss": [h["loss"] for h in history],
        "val_accuracy": [h["val_accuracy"] for h in history],
        "weights": float(sum(np.abs(w).sum() for w in model.get_weights())),
        "p": model(val.x[:8].astype("float32")).numpy().ravel().tolist(),
    }
print("RESULT " + json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def runs():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(row for row in result.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_mirrored_uses_both_logical_devices(runs):
    assert runs["none"]["replicas"] == 1
    assert runs["mirrored"]["replicas"] == 2


def test_mirrored_training_matches_one_device(runs):
    one, two = runs["none"], runs["mirrored"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3)
    assert two["val_accuracy"] == pytest.approx(one["val_accuracy"], abs=1 / 128)
    assert two["weights"] == pytest.approx(one["weights"], rel=1e-3)
    assert two["p"] == pytest.approx(one["p"], abs=1e-3)


def test_training_learned_something(runs):
    """Guards the comparison above against two runs that both did nothing."""
    loss = runs["none"]["loss"]
    assert loss[-1] < loss[0]
    assert runs["none"]["val_accuracy"][-1] > 0.9


def test_unknown_strategy_is_refused():
    from cifake.distribute import distribution_strategy

    with pytest.raises(ValueError, match="unknown strategy"):
        distribution_strategy("parameter_server")


MULTI_WORKER_SCRIPT = (
    TASK
    + r"""
import dataclasses
import json

from cifake.distribute import is_chief

config = dataclasses.replace(config, epochs=3)
set_determinism(0)
strategy = distribution_strategy("multi_worker")
with strategy.scope():
    model = build_model(params)
history = fit(model, train, val, config, strategy=strategy).history
print("RESULT " + json.dumps({
    "chief": is_chief(strategy),
    "replicas": strategy.num_replicas_in_sync,
    "loss": [h["loss"] for h in history],
    "val_accuracy": history[-1]["val_accuracy"],
    "weights": [float(np.abs(w).sum()) for w in model.get_weights()],
}))
"""
)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_trains_one_model_across_two_processes():
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", MULTI_WORKER_SCRIPT],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for proc in workers:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-4000:]
            line = next(row for row in out.splitlines() if row.startswith("RESULT "))
            results.append(json.loads(line.removeprefix("RESULT ")))
    finally:
        for proc in workers:
            proc.kill()
    chief, helper = results
    assert chief["chief"] is True and helper["chief"] is False  # worker 0 saves and logs, worker 1 does not
    assert chief["replicas"] == helper["replicas"] == 2
    assert helper["weights"] == pytest.approx(chief["weights"], rel=1e-6)  # one model, kept in sync
    assert chief["loss"][-1] < chief["loss"][0] and chief["val_accuracy"] > 0.9


def test_is_chief_without_a_cluster():
    import tensorflow as tf

    from cifake.distribute import is_chief

    assert is_chief(tf.distribute.get_strategy())
