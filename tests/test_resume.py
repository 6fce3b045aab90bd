"""A training stage killed with SIGKILL resumes after its last finished epoch on the next `dvc repro`."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import TINY, copy_project, git_commit_all, run_ok

pytestmark = pytest.mark.e2e


def _run_until(args, cwd, env, marker: str, timeout: float = 600) -> str:
    """Start ``args`` in its own process group; SIGKILL the whole group once ``marker`` is printed."""
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen, deadline = [], time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return "".join(seen)


def test_killed_training_resumes_after_its_last_epoch(tmp_path):
    copy_project(tmp_path, {**TINY, ("train", "epochs"): 4, ("train", "patience"): 10})
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    git_commit_all(tmp_path, env)
    dvc = [sys.executable, "-m", "dvc"]
    log = _run_until(dvc + ["repro", "train"], tmp_path, env, marker="checkpoint after epoch 2 saved")
    assert "epoch 2/4:" in log and "epoch 3/4:" not in log
    assert not (tmp_path / "models/model.keras").exists()
    assert (tmp_path / "checkpoints/train/epoch-0002/state.json").is_file()

    resumed = run_ok(dvc + ["repro", "train"], tmp_path, env)
    assert "resuming from the checkpoint after epoch 2 of 4" in resumed
    assert "epoch 1/4:" not in resumed and "epoch 2/4:" not in resumed  # nothing redone ...
    assert "epoch 3/4:" in resumed and "epoch 4/4:" in resumed  # ... and nothing skipped
    with open(tmp_path / "metrics/plots/train_history.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]
    assert (tmp_path / "models/model.keras").stat().st_size > 0
    assert not (tmp_path / "checkpoints/train").exists()  # removed once the stage completed
