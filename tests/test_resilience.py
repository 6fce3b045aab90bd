"""A tracking server that fails mid-run costs no trained model: DVC outputs are written first, and what MLflow
missed waits in the outbox (tests/test_faults.py and test_tracking_outage.py send it once the server is back)."""

from pathlib import Path

import numpy as np
import pytest

from cifake import registry, runs
from cifake.config import ModelParams
from cifake.dataset import Split
from cifake.distribute import distribution_strategy
from cifake.fitconfig import FitConfig
from cifake.model import build_model

pytestmark = pytest.mark.code


def _tiny_split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.uint8)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(x, y, np.array([f"{i}.jpg" for i in range(n)]))


def test_model_is_saved_even_if_mlflow_dies(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")

    def server_gone(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", server_gone)  # dies during training ...
    monkeypatch.setattr(registry, "register_run_model", server_gone)  # ... and is still gone at the end
    config = FitConfig(epochs=2, batch_size=8, learning_rate=1e-3, weight_decay=0.0, patience=2, augment=False, seed=0)
    model = build_model(
        ModelParams(architecture="seed_cnn", widths=(4,), blocks_per_stage=1, dense_units=4, dropout=0.0)
    )
    files = runs.RunFiles(
        Path("models/model.keras"),
        Path("metrics/train.json"),
        Path("metrics/plots/train_history.csv"),
        Path("checkpoints/train"),
        Path("checkpoints/mlflow-outbox"),
    )
    runs.train_and_register(
        model,
        _tiny_split(16, 0),
        _tiny_split(8, 1),
        config,
        stage="train",
        stage_params={},
        meta={"dataset": "sample", "dataset_sha256": "x"},
        files=files,
        experiment="e",
        registered_model="m",
        alias=None,
        strategy=distribution_strategy("none"),
        key="k",
    )
    assert (tmp_path / "models" / "model.keras").stat().st_size > 0
    assert (tmp_path / "metrics" / "train.json").is_file()
    assert len((tmp_path / "metrics" / "plots" / "train_history.csv").read_text().splitlines()) == 3
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "still to send" in x]  # one line says what waits
    assert "the metrics of epochs 1, 2" in line and "the model version of m" in line and "sync-tracking" in line
    (waiting,) = (tmp_path / "checkpoints" / "mlflow-outbox").iterdir()
    assert (waiting / "model.keras").is_file() and not (tmp_path / "checkpoints" / "train").exists()
