"""A tracking server that fails mid-run costs no trained model: DVC outputs are written first."""

import numpy as np
import pytest

from cifake import pipeline, tracking
from cifake.config import load_params
from cifake.data import Split
from cifake.training import FitConfig

from .conftest import ROOT


def _tiny_split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.uint8)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(x, y, np.array([f"{i}.jpg" for i in range(n)]))


def test_model_is_saved_even_if_mlflow_dies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    _tiny_split(16, 0).save(processed / "train.npz")
    _tiny_split(8, 1).save(processed / "val.npz")
    (processed / "meta.json").write_text('{"dataset": "sample", "dataset_sha256": "x"}')

    def server_gone(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(tracking, "log_epoch", server_gone)  # dies during training ...
    monkeypatch.setattr(tracking, "register_model", server_gone)  # ... and is still gone at the end
    params = load_params(ROOT / "params.yaml")
    config = FitConfig(epochs=2, batch_size=8, learning_rate=1e-3, weight_decay=0.0, patience=2, augment=False, seed=0)
    with pytest.raises(ConnectionError):
        pipeline.train_and_record(
            params, stage="train", config=config, stage_params={}, init_model=None,
            out_model="models/model.keras", out_metrics="metrics/train.json",
            out_history="metrics/plots/train_history.csv", alias=None,
        )
    assert (tmp_path / "models" / "model.keras").stat().st_size > 0
    assert (tmp_path / "metrics" / "train.json").is_file()
    assert len((tmp_path / "metrics" / "plots" / "train_history.csv").read_text().splitlines()) == 3
