"""Tracking against a real MLflow server, as on a team's shared machine.

Starts `mlflow server` on a loopback port with a SQLite backend and its own
artifact folder, runs the tracked stages of a tiny pipeline with
MLFLOW_TRACKING_URI pointing at it, and reads runs, artifacts and registered
versions back through the client over HTTP.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import TINY, copy_project, git_commit_all, run_ok, stop_process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

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
    log = open(root / "server.log", "w")  # noqa: SIM115 - the server writes to it until the fixture ends
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/backend.db",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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
    stop_process(proc, timeout=20)
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
        " 'tags': r.data.tags, 'id': r.info.run_id, 'experiment_id': r.info.experiment_id} for r in runs},"
        " 'evaluate_artifacts': sorted(a.path for a in c.list_artifacts(ev.info.run_id, 'plots')),"
        " 'versions': {v.version: {'description': v.description, 'tags': v.tags} for v in vs},"
        " 'champion': c.get_model_version_by_alias('cifake-detector', 'champion').version}))"
    )
    out = run_ok([sys.executable, "-c", script], dest, env)
    return json.loads(out.strip().splitlines()[-1]), root


def test_runs_are_on_the_server_with_names_and_tags(tracked):
    info, _ = tracked
    assert set(info["runs"]) == {"fakes", "train", "fgsm_finetune", "evaluate"}
    for stage, run in info["runs"].items():
        assert run["name"].startswith(f"{stage}-sample-")
        assert {"git_commit", "dataset.source", "dataset.sha256"} <= set(run["tags"])
    assert "val_accuracy" in info["runs"]["train"]["metrics"]
    assert "val_pgd_accuracy" in info["runs"]["fgsm_finetune"]["metrics"]
    assert "robust_model.clean.accuracy" in info["runs"]["evaluate"]["metrics"]
    metrics = info["runs"]["fakes"]["metrics"]
    assert {"diff_nearest.noise_loss", "gan_nearest.g_loss", "gan_nearest.d_loss"} <= set(metrics)  # each one's losses


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


def _browse(url: str, profile, expect: list[str], screenshot=None) -> str:
    """The visible text of ``url`` after its JavaScript ran, in headless Chromium; optionally a screenshot.

    The UI loads its chart code lazily, over the network, which Chromium's virtual
    time does not wait for; so the page is visited up to five times with one
    profile (the code is cached after the first) until every ``expect`` string shows.
    Three visits were not always enough on a slower CPU (2026-12-02, an AVX2 machine:
    the metric charts' code had not arrived).
    """
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,800",
        "--virtual-time-budget=20000",
    ]
    for _ in range(5):
        dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        text = " ".join(
            re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)).split()
        )
        if all(e in text for e in expect):
            break
    if screenshot:
        subprocess.run([*args, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
def test_mlflow_ui_shows_runs_metric_charts_and_versions(server, tracked, tmp_path):
    """What a person sees in the MLflow UI, rendered by a real browser.

    Set CIFAKE_SCREENSHOTS=folder to keep screenshots of the three pages (the README's come from here).
    """
    uri, _ = server
    info, _ = tracked
    shots = os.environ.get("CIFAKE_SCREENSHOTS")
    shot = (lambda name: os.path.join(shots, f"mlflow_{name}.png")) if shots else (lambda name: None)
    train, finetune = info["runs"]["train"], info["runs"]["fgsm_finetune"]
    experiment = train["experiment_id"]

    names = [run["name"] for run in info["runs"].values()]
    # MLflow 3.17 opens experiments by the sidebar's workflow switch (default GenAI, then remembered):
    # the README's link selects "Model training", where the experiment opens on its training runs
    landing = _browse(
        f"{uri}/#/experiments/{experiment}?workflowType=machine_learning", tmp_path / "p0", names, shot("experiment")
    )
    assert all(name in landing for name in names) and "matching runs" in landing, landing[:2000]
    runs_page = _browse(f"{uri}/#/experiments/{experiment}/runs", tmp_path / "p1", names)
    for name in names:
        assert name in runs_page
    assert "cifake-detector v1" in runs_page and "cifake-detector v2" in runs_page

    metrics = ["accuracy", "loss", "best.val_pgd_accuracy", "Step"]  # Step: per-epoch metrics drawn over steps
    charts = _browse(
        f"{uri}/#/experiments/{experiment}/runs/{finetune['id']}/model-metrics",
        tmp_path / "p2",
        metrics,
        shot("metric_charts"),
    )
    assert "Model metrics" in charts and finetune["name"] in charts
    for metric in metrics:
        assert metric in charts

    versions = _browse(f"{uri}/#/models/cifake-detector", tmp_path / "p3", ["Version 2"], shot("registered_versions"))
    assert "Version 1" in versions and "Version 2" in versions and "champion" in versions

    version = _browse(
        f"{uri}/#/models/cifake-detector/versions/2", tmp_path / "p4", ["Test set"], shot("champion_version")
    )
    assert "Test set (40 images): accuracy" in version and "Test_dataset_2" in version
