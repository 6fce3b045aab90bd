"""Tracking against a real MLflow server, as on a team's shared machine.

Starts `mlflow server` on a loopback port with a SQLite backend and its own
artifact folder, runs the tracked stages of a tiny pipeline with
MLFLOW_TRACKING_URI pointing at it, and reads runs, artifacts and registered
versions back through the client over HTTP.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import TINY, copy_project, git_commit_all, run_ok

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/backend.db", "--artifacts-destination", str(root / "artifacts")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield uri, root
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def tracked(server, tmp_path_factory):
    uri, root = server
    dest = tmp_path_factory.mktemp("project_server")
    copy_project(dest, {**TINY, ("train", "epochs"): 1})
    env = {**os.environ, "PYTHONPATH": str(dest / "src"), "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "2"}
    git_commit_all(dest, env)
    run_ok([sys.executable, "-m", "dvc", "repro", "evaluate"], dest, env)
    script = (
        "import json, mlflow; c = mlflow.MlflowClient();"
        "runs = mlflow.search_runs(experiment_names=['cifake'], output_format='list');"
        "ev = next(r for r in runs if r.data.tags['stage'] == 'evaluate');"
        "vs = c.search_model_versions(\"name='cifake-detector'\");"
        "print(json.dumps({'runs': {r.data.tags['stage']: {'name': r.info.run_name, 'metrics': sorted(r.data.metrics),"
        " 'tags': r.data.tags} for r in runs},"
        " 'evaluate_artifacts': sorted(a.path for a in c.list_artifacts(ev.info.run_id, 'plots')),"
        " 'versions': {v.version: {'description': v.description, 'tags': v.tags} for v in vs},"
        " 'champion': c.get_model_version_by_alias('cifake-detector', 'champion').version}))"
    )
    out = run_ok([sys.executable, "-c", script], dest, env)
    return json.loads(out.strip().splitlines()[-1]), root


def test_runs_are_on_the_server_with_names_and_tags(tracked):
    info, _ = tracked
    assert set(info["runs"]) == {"train", "fgsm_finetune", "evaluate"}
    for stage, run in info["runs"].items():
        assert run["name"].startswith(f"{stage}-sample-")
        assert {"git_commit", "dataset.source", "dataset.sha256"} <= set(run["tags"])
    assert "val_accuracy" in info["runs"]["train"]["metrics"]
    assert "val_pgd_accuracy" in info["runs"]["fgsm_finetune"]["metrics"]
    assert "robust_model.clean.accuracy" in info["runs"]["evaluate"]["metrics"]


def test_artifacts_are_stored_by_the_server(tracked):
    info, root = tracked
    assert "plots/adversarial_examples.png" in info["evaluate_artifacts"]
    assert "plots/pr_robust_model.csv" in info["evaluate_artifacts"]
    assert any(p.name == "adversarial_examples.png" for p in (root / "artifacts").rglob("*.png"))


def test_registered_versions_carry_their_test_figures(tracked):
    info, _ = tracked
    versions = info["versions"]
    assert sorted(versions) == ["1", "2"] and info["champion"] == "2"
    assert versions["1"]["tags"]["stage"] == "train" and versions["2"]["tags"]["stage"] == "fgsm_finetune"
    for v in versions.values():
        assert "Test set (40 images): accuracy" in v["description"]
        assert "PGD-3 accuracy on 16 images" in v["description"]
    assert "Test_dataset_2" in versions["2"]["description"]
