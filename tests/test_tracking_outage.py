"""A real MLflow server that stops during training costs no time and loses no figure (issue 27).

A tracked training run (cifake.runs.train_and_register, as the `train` stage calls it) logs to `mlflow server`
on a loopback port. The server is stopped after epoch 2 and, in the first test, started again at epoch 4; in
the second it is still down when training ends, comes back, and `cifake sync-tracking` sends what waited.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest

from cifake import cli, runs
from cifake.config import ModelParams
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.fitconfig import FitConfig
from cifake.model import build_model

from .conftest import add_callbacks

pytestmark = pytest.mark.e2e

EPOCHS = 6
MAX_EXTRA_SECONDS = 20  # the bound: no epoch takes more than 20 s longer than its neighbours


class Server:
    """`mlflow server` on a fixed loopback port with a SQLite backend; can be stopped and started again."""

    def __init__(self, root: Path):
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> float:
        """Start the server and wait until it answers; returns the seconds spent waiting."""
        began = time.perf_counter()
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - the server writes to it while it runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
            + ["--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/backend.db"]
            + ["--artifacts-destination", str(self.root / "artifacts")],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - began
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mlflow server did not start:\n{(self.root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> float:
        """Stop the server (and wait until it is gone); returns the seconds spent."""
        began = time.perf_counter()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.perf_counter() - began


class Outage(keras.callbacks.Callback):
    """Stops the server after epoch ``stop_after``, starts it at the beginning of ``start_at`` (if given),
    and times every epoch from one epoch's end to the next, its MLflow calls included and this test's
    own waits for the server left out. List it last."""

    def __init__(self, server: Server, stop_after: int, start_at: int | None):
        super().__init__()
        self.server, self.stop_after, self.start_at = server, stop_after, start_at
        self.ends: list[float] = []
        self.harness = {}  # epoch -> seconds this callback spent stopping/starting the server

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.start_at:
            self.harness[epoch + 1] = self.server.start()

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.stop_after:
            self.harness[epoch + 1] = self.server.stop()
        self.ends.append(time.perf_counter() - sum(self.harness.values()))

    def seconds(self) -> list[float]:
        """Epochs 2.. (epoch 1 includes building the graphs)."""
        return list(np.diff(self.ends))


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.uint8)
    x = rng.integers(0, 160, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1] += 60
    return Split(x, y, np.array([f"{i}.png" for i in range(n)]))


def _train(tmp_path: Path, server: Server, start_at: int | None, monkeypatch) -> tuple[runs.RunFiles, Outage]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    outage = Outage(server, stop_after=2, start_at=start_at)
    add_callbacks(monkeypatch, after=[outage])
    files = runs.RunFiles(
        model=tmp_path / "models/model.keras",
        metrics=tmp_path / "metrics/train.json",
        history=tmp_path / "metrics/plots/train_history.csv",
        checkpoints=tmp_path / "checkpoints/train",
        outbox=tmp_path / "checkpoints/mlflow-outbox",
    )
    config = FitConfig(
        epochs=EPOCHS, batch_size=16, learning_rate=3e-3, weight_decay=0.0, patience=EPOCHS, augment=False, seed=0
    )
    set_determinism(0)
    params = ModelParams(architecture="seed_cnn", widths=(4,), blocks_per_stage=1, dense_units=4, dropout=0.0)
    runs.train_and_register(
        build_model(params),
        _split(64, 0),
        _split(32, 1),
        config,
        stage="train",
        stage_params={"seed": 0},
        meta={"dataset": "sample", "dataset_sha256": "x"},
        files=files,
        experiment="outage",
        registered_model="outage-model",
        alias="champion",
        strategy=None,
        key="k",
    )
    monkeypatch.undo()
    return files, outage


def _server_view(uri: str) -> dict:
    """The run's val_accuracy steps, the registered versions and the alias, read back over HTTP."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    (run,) = mlflow.search_runs(experiment_names=["outage"], output_format="list")
    return {
        "steps": sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")),
        "seconds_steps": sorted(m.step for m in client.get_metric_history(run.info.run_id, "seconds")),
        "versions": sorted(str(v.version) for v in client.search_model_versions("name = 'outage-model'")),
        "champion": str(client.get_model_version_by_alias("outage-model", "champion").version),
        "version_run": client.get_model_version("outage-model", "1").run_id,
        "run_id": run.info.run_id,
        "status": client.get_run(run.info.run_id).info.status,
        "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
    }


def _assert_no_epoch_stalled(outage: Outage) -> None:
    seconds = outage.seconds()
    assert len(seconds) == EPOCHS - 1
    for i, s in enumerate(seconds):
        neighbours = [seconds[j] for j in (i - 1, i + 1) if 0 <= j < len(seconds)]
        assert s - min(neighbours) < MAX_EXTRA_SECONDS, f"epoch {i + 2} took {s:.1f} s: {seconds}"


def test_a_server_stopped_after_epoch_2_and_back_at_epoch_4_costs_no_time_and_no_figure(tmp_path, monkeypatch):
    server = Server(tmp_path)
    server.start()
    try:
        files, outage = _train(tmp_path, server, start_at=4, monkeypatch=monkeypatch)
        _assert_no_epoch_stalled(outage)
        view = _server_view(server.uri)
    finally:
        server.stop()
    assert view["steps"] == list(range(1, EPOCHS + 1))  # every epoch, exactly once (epoch 3 was sent at epoch 4)
    assert view["seconds_steps"] == list(range(1, EPOCHS + 1))
    assert view["versions"] == ["1"] and view["champion"] == "1" and view["version_run"] == view["run_id"]
    assert view["status"] == "FINISHED" and {"train.json", "train_history.csv"} <= set(view["artifacts"])
    assert files.model.is_file() and not files.outbox.exists() and not files.checkpoints.exists()


def test_a_server_still_down_at_the_end_gets_everything_from_sync_tracking(tmp_path, monkeypatch, capsys):
    server = Server(tmp_path)
    server.start()
    try:
        files, outage = _train(tmp_path, server, start_at=None, monkeypatch=monkeypatch)
        _assert_no_epoch_stalled(outage)
        out = capsys.readouterr().out
        (line,) = [x for x in out.splitlines() if "still to send" in x]  # one line says what waits, and where
        assert "the metrics of epochs 3, 4, 5, 6" in line and "outage-model with the alias champion" in line
        assert files.model.is_file() and files.metrics.is_file() and files.history.is_file()  # DVC outputs written
        assert cli.main(["sync-tracking", "--outbox", str(files.outbox)]) == 1  # still down: says so, exit 1
        (waiting,) = files.outbox.iterdir()
        copy = tmp_path / "copy"
        shutil.copytree(waiting, copy)

        server.start()  # back
        assert cli.main(["sync-tracking", "--outbox", str(files.outbox)]) == 0
        assert "outage-model v1 is champion" in capsys.readouterr().out
        assert not files.outbox.exists()
        assert cli.main(["sync-tracking", "--outbox", str(files.outbox)]) == 0  # nothing left: nothing sent twice
        assert "nothing waiting" in capsys.readouterr().out
        shutil.copytree(copy, waiting)  # as if the first sync's answers had been lost: it all goes again
        assert cli.main(["sync-tracking", "--outbox", str(files.outbox)]) == 0
        view = _server_view(server.uri)
    finally:
        server.stop()
    assert view["steps"] == list(range(1, EPOCHS + 1))  # every epoch exactly once, even after a double send
    assert view["versions"] == ["1"] and view["champion"] == "1" and view["version_run"] == view["run_id"]
    assert view["status"] == "FINISHED" and {"train.json", "train_history.csv"} <= set(view["artifacts"])
