"""MLflow tracking: unreachable servers are caught up front; runs carry params, tags and models."""

import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifake import tracking

pytestmark = pytest.mark.code


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes


def test_unreachable_server_is_reported_fast(monkeypatch):
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.perf_counter()
    with pytest.raises(tracking.TrackingError, match="unreachable"):
        tracking.check_tracking_server()
    assert time.perf_counter() - start < 10


def test_local_uris_need_no_server(monkeypatch, tmp_path):
    import urllib.request

    asked = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: asked.append(a) or (_ for _ in ()).throw(OSError()))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    tracking.check_tracking_server()
    assert asked == []  # a local store is never probed over HTTP ...
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(tracking.TrackingError):
        tracking.check_tracking_server()
    assert len(asked) == 1  # ... while a server is
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == "sqlite:///mlflow.db"


def test_a_resumed_run_records_the_commit_that_finished_it(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    commits = iter(["aaa111", "aaa111", "bbb222"])
    monkeypatch.setattr(tracking, "git_commit", lambda: next(commits))
    run_id = tracking.open_run("train", "cifake-test", {}, {"dataset": "sample", "dataset_sha256": "abc"})
    client = mlflow.MlflowClient()
    assert tracking.reopen_run(run_id)  # same commit: nothing added
    assert "git_commit_resumed" not in client.get_run(run_id).data.tags
    assert tracking.reopen_run(run_id)  # the code moved on while the run was stopped
    tags = client.get_run(run_id).data.tags
    assert tags["git_commit"] == "aaa111" and tags["git_commit_resumed"] == "bbb222"
    assert client.get_run(run_id).info.status == "RUNNING"
    client.delete_run(run_id)
    assert not tracking.reopen_run(run_id)  # a deleted run is not resumed
    assert not tracking.reopen_run("0" * 32)  # nor one the server never had


def test_stage_run_logs_and_registers(monkeypatch, tmp_path, tiny_model, tiny_model_path):
    import mlflow
    import pandas as pd

    from cifake import registry, serving

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    with tracking.stage_run(
        "train", "cifake-test", {"train": {"epochs": 2}}, {"dataset": "sample", "dataset_sha256": "abc"}
    ) as run:
        tracking.log_epoch({"epoch": 1, "loss": 0.5, "val_accuracy": 0.75})
        tracking.log_metrics({"clean": {"accuracy": 0.9, "n": 10}, "label": "x"})
        version = registry.register_model(tiny_model_path, "cifake-test-model", "a test model", alias="champion")
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert data.params["train.epochs"] == "2"
    assert data.tags["stage"] == "train" and data.tags["dataset.sha256"] == "abc"
    assert data.tags["dataset.source"] == "sample"
    assert client.get_run(run.info.run_id).info.run_name == "train-sample-exp-test"
    experiment = client.get_experiment_by_name("cifake-test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # UI opens on the runs
    assert data.tags["dvc_experiment"] == "exp-test"
    assert data.metrics["clean.accuracy"] == 0.9 and data.metrics["val_accuracy"] == 0.75
    mv = client.get_model_version_by_alias("cifake-test-model", "champion")
    assert int(mv.version) == version and mv.description == "a test model" and mv.tags["serves"] == "images"
    requirements = mlflow.artifacts.download_artifacts(f"models:/cifake-test-model/{version}/requirements.txt")
    pinned = Path(requirements).read_text().split()
    import keras

    assert f"keras=={keras.__version__}" in pinned and len(pinned) == len(serving.MODEL_IMPORTS)
    assert any(line.startswith("tensorflow") for line in pinned)  # tensorflow or tensorflow-cpu, as installed
    # a Keras user gets the very Keras model ...
    loaded = mlflow.keras.load_model("models:/cifake-test-model@champion")
    x = np.zeros((1, 32, 32, 3), np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(tiny_model(x)), rtol=1e-5)
    # ... and a pyfunc user a model that takes image files, one copy of the weights serving both
    pyfunc = mlflow.pyfunc.load_model("models:/cifake-test-model@champion")
    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, format="PNG")
    out = pyfunc.predict(pd.DataFrame({"content": [png.getvalue(), b"not an image"]}))
    assert list(out.columns) == ["label", "p_fake", "error"]
    assert out["p_fake"][0] == pytest.approx(float(np.asarray(tiny_model(x))[0, 0]), abs=1e-2)  # bf16 where native
    assert out["label"][1] == "" and np.isnan(out["p_fake"][1]) and "not an image" in out["error"][1]
    files = mlflow.artifacts.download_artifacts(f"models:/cifake-test-model/{version}")
    assert [p.name for p in Path(files).rglob("*.keras")] == ["tiny.keras"]
