"""Faults cost nothing: a damaged checkpoint, a full disk, a tracking server that is down at the end (issue 27).

The real-server outage during training is in test_tracking_outage.py.
"""

import dataclasses
import errno
import json
import logging
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from cifake import checkpoint, runs, tracking
from cifake.config import ModelParams
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.errors import CifakeError
from cifake.fitconfig import FitConfig
from cifake.model import build_model, load_model, save_model
from cifake.outbox import Outbox, send_waiting
from cifake.training import fit

from .conftest import add_callbacks

pytestmark = pytest.mark.model

PARAMS = ModelParams(architecture="seed_cnn", widths=(4,), blocks_per_stage=1, dense_units=4, dropout=0.0)
EPOCHS = 4
FILES = ("state.json", "trainer.weights.h5", "best_weights.npz", "SHA256SUMS")


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.uint8)
    x = rng.integers(0, 160, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1] += 60
    return Split(x, y, np.array([f"{i}.png" for i in range(n)]))


CONFIG = FitConfig(
    epochs=EPOCHS, batch_size=16, learning_rate=3e-3, weight_decay=0.0, patience=10, augment=False, seed=0
)


class Killed(Exception):
    pass


class KillAfter(keras.callbacks.Callback):
    """Ends the run (as a SIGKILL would) after epoch ``last`` (1-based) was checkpointed."""

    def __init__(self, last):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.last:
            raise Killed


def _fit(directory, kill_after=None):
    """A seeded tiny run of EPOCHS epochs, checkpointed in ``directory``; killed after an epoch if asked."""
    set_determinism(0)
    with pytest.MonkeyPatch.context() as patch:
        if kill_after:
            add_callbacks(patch, after=[KillAfter(kill_after)])
        return fit(build_model(PARAMS), _split(64, 0), _split(32, 1), CONFIG, checkpoint_dir=directory, fingerprint="f")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's weights, and the checkpoints of a run killed after epoch 3 (epochs 2 and 3 kept)."""
    whole = _fit(tmp_path_factory.mktemp("whole")).model.get_weights()
    killed = tmp_path_factory.mktemp("killed") / "ck"
    with pytest.raises(Killed):
        _fit(killed, kill_after=3)
    assert sorted(p.name for p in killed.iterdir()) == ["epoch-0002", "epoch-0003"]  # the last two are kept
    return whole, killed


def _same(weights, reference_weights):
    return all(np.allclose(a, b, atol=1e-5) for a, b in zip(weights, reference_weights, strict=True))


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == checkpoint.__name__]


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(reference, tmp_path, caplog, name, how):
    whole, killed = reference
    directory = tmp_path / "ck"
    shutil.copytree(killed, directory)
    _damage(directory / "epoch-0003" / name, how)
    with caplog.at_level(logging.INFO):
        resumed = _fit(directory)
    assert resumed.resumed_at_epoch == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert _same(resumed.model.get_weights(), whole)  # as if nothing had happened
    (line,) = _warnings(caplog)  # one line: which epoch, which file
    assert "checkpoint after epoch 3 is damaged" in line and "epoch-0003.damaged" in line
    if name != "SHA256SUMS":  # (a damaged list of sums may name the file it no longer vouches for)
        assert name in line
    assert (directory / "epoch-0003.damaged" / name).is_file()  # set aside, not lost
    assert not list(directory.glob("*.partial"))


def test_with_no_good_checkpoint_training_starts_from_epoch_0(reference, tmp_path, caplog):
    whole, killed = reference
    directory = tmp_path / "ck"
    shutil.copytree(killed, directory)
    _damage(directory / "epoch-0003" / "trainer.weights.h5", "flip")
    (directory / "epoch-0002" / "SHA256SUMS").unlink()
    with caplog.at_level(logging.INFO):
        again = _fit(directory)
    assert again.resumed_at_epoch == 0 and [r["epoch"] for r in again.history] == [1, 2, 3, 4]
    assert _same(again.model.get_weights(), whole)
    lines = _warnings(caplog)
    assert len(lines) == 3 and "starts from epoch 0" in lines[-1]
    assert "epoch 3" in lines[0] and "epoch 2" in lines[1] and "SHA256SUMS" in lines[1]


def test_a_checkpoint_from_before_sums_still_resumes(reference, tmp_path):
    """A run started with older code (no SHA256SUMS, nor the state's word that there are sums) resumes."""
    whole, killed = reference
    directory = tmp_path / "ck"
    shutil.copytree(killed, directory)
    latest = directory / "epoch-0003"
    (latest / "SHA256SUMS").unlink()
    state = json.loads((latest / "state.json").read_text())
    del state["sums"]
    (latest / "state.json").write_text(json.dumps(state))
    resumed = _fit(directory)
    assert resumed.resumed_at_epoch == 3 and _same(resumed.model.get_weights(), whole)


def test_a_checkpoint_that_verifies_but_does_not_load_leaves_the_model_untouched(reference, tmp_path, caplog):
    """Sums that match a bad file (e.g. written by other code): reported, and training starts clean."""
    whole, killed = reference
    directory = tmp_path / "ck"
    shutil.copytree(killed, directory)
    for folder in directory.iterdir():
        (folder / "trainer.weights.h5").write_bytes(b"not an h5 file")
        sums = "".join(
            f"{checkpoint.sha256_file(f)}  {f.name}\n" for f in sorted(folder.iterdir()) if f.name != "SHA256SUMS"
        )
        (folder / "SHA256SUMS").write_text(sums)
    with caplog.at_level(logging.INFO):
        again = _fit(directory)
    assert again.resumed_at_epoch == 0 and _same(again.model.get_weights(), whole)
    assert any("trainer.weights.h5 does not load" in line for line in _warnings(caplog))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoints(reference, tmp_path, monkeypatch):
    whole, _ = reference
    directory = tmp_path / "ck"
    original = keras.Model.save_weights

    def save_weights(self, path, *a, **k):
        if "epoch-0003" in str(path):  # the disk fills up half-way through epoch 3's checkpoint
            Path(path).write_bytes(b"\x89HDF" * 100)
            _no_space()
        return original(self, path, *a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save_weights", save_weights)
        with pytest.raises(CifakeError) as caught:
            _fit(directory)
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message
    assert "checkpoint after epoch 3" in message and "earlier checkpoints are kept" in message
    assert sorted(p.name for p in directory.iterdir()) == ["epoch-0001", "epoch-0002"]  # no .partial debris
    for folder in directory.iterdir():
        checkpoint.verify(folder)
    resumed = _fit(directory)  # space freed: the next run resumes and ends where the uninterrupted one does
    assert resumed.resumed_at_epoch == 2 and _same(resumed.model.get_weights(), whole)


def _run_files(root: Path) -> runs.RunFiles:
    return runs.RunFiles(
        model=root / "models/model.keras",
        metrics=root / "metrics/train.json",
        history=root / "metrics/plots/train_history.csv",
        checkpoints=root / "checkpoints/train",
        outbox=root / "checkpoints/mlflow-outbox",
    )


def _train_and_register(files, **kw):
    set_determinism(0)
    return runs.train_and_register(
        build_model(PARAMS),
        _split(64, 0),
        _split(32, 1),
        kw.pop("config", CONFIG),
        stage="train",
        stage_params={"seed": 0},
        meta={"dataset": "sample", "dataset_sha256": "x"},
        files=files,
        experiment="faults",
        registered_model="faults-model",
        alias="champion",
        strategy=None,
        key="k",
        **kw,
    )


def test_a_full_disk_while_saving_the_model_keeps_the_old_one(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    files = _run_files(tmp_path)
    save_model(tiny_model, files.model)  # the previous run's model
    before = files.model.read_bytes()

    def save(self, path, *a, **k):
        Path(path).write_bytes(b"PK\x03\x04" * 100)  # half a file, then the disk is full
        _no_space()

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", save)
        with pytest.raises(CifakeError) as caught:
            _train_and_register(files)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"cannot write {files.model}: No space left on device")
    assert "previous file is unchanged" in message
    assert files.model.read_bytes() == before  # the previous output is intact ...
    assert [p.name for p in files.model.parent.iterdir()] == ["model.keras"]  # ... and no temporary file is left
    assert (files.checkpoints / f"epoch-{EPOCHS:04d}").is_dir()  # the training is kept too
    metrics = _train_and_register(files)  # space freed: the next run only saves (no epoch is trained again)
    assert metrics["epochs_run"] == EPOCHS and load_model(files.model) is not None
    assert not files.checkpoints.exists() and not files.outbox.exists()


def test_a_full_disk_while_writing_a_results_file_is_one_clear_message(tmp_path, monkeypatch):
    from cifake import fileio

    target = tmp_path / "results" / "Test_1_results.csv"
    fileio.write_rows(target, [{"Image Name": "a.png", "Predicted Label": "Real"}])
    before = target.read_bytes()
    monkeypatch.setattr(fileio.csv, "writer", _no_space)
    with pytest.raises(fileio.OutputError, match=r"^cannot write .*Test_1_results.csv: No space left on device"):
        fileio.write_rows(target, [{"Image Name": "b.png", "Predicted Label": "Fake"}])
    assert target.read_bytes() == before and [p.name for p in target.parent.iterdir()] == ["Test_1_results.csv"]


def test_a_read_only_folder_is_one_clear_message(tmp_path, monkeypatch):
    """(Injected: the tests may run as root, who can write into a read-only folder.)"""
    from cifake import fileio

    fileio.write_json(tmp_path / "m.json", {"a": 1})

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    with pytest.raises(fileio.OutputError, match="^cannot write .*m.json: Read-only file system; the previous"):
        fileio.write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}


def test_mlflow_down_until_the_end_loses_nothing_and_a_second_send_duplicates_nothing(tmp_path, monkeypatch, capsys):
    """Every send fails (server gone after the run started): outputs are written, one line says what waits;
    once the server answers, the outbox is sent; sending the same records again changes nothing."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    files = _run_files(tmp_path)

    def down(self):
        raise ConnectionError("tracking server went away")

    with monkeypatch.context() as patch:
        patch.setattr(Outbox, "_send", down)
        metrics = _train_and_register(files, config=CONFIG)
    out = capsys.readouterr().out
    assert files.model.is_file() and metrics["epochs_run"] == EPOCHS  # outputs written
    assert not files.checkpoints.exists()
    (line,) = [x for x in out.splitlines() if "still to send" in x]
    assert "epochs 1, 2, 3, 4" in line and "faults-model with the alias champion" in line
    assert "cifake sync-tracking" in line
    (folder,) = list(files.outbox.iterdir())
    kept = tmp_path / "copy"
    shutil.copytree(folder, kept)

    sent, left = send_waiting(files.outbox)  # the server answers again
    assert len(sent) == 1 and not left and not files.outbox.exists()
    shutil.copytree(kept, folder)  # as if the first send's answer had been lost: everything goes again
    sent, left = send_waiting(files.outbox)
    assert len(sent) == 1 and not left

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run_id = folder.name
    steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
    assert sorted(steps) == [1, 2, 3, 4]  # every epoch, exactly once
    assert len(client.get_metric_history(run_id, "best.val_accuracy")) == 1
    versions = client.search_model_versions("name = 'faults-model'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == run_id
    assert str(client.get_model_version_by_alias("faults-model", "champion").version) == "1"
    assert client.get_run(run_id).info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run_id)} >= {"train.json", "train_history.csv"}
    assert tracking.QUICK[0] == 0  # per-epoch calls never retry


@pytest.mark.parametrize("how", ["killed", "interrupted"])
def test_a_resumed_stage_continues_its_own_mlflow_run(tmp_path, monkeypatch, how):
    """A stage stopped mid-training and run again is one MLflow run (FINISHED, every epoch once), whether a
    SIGKILL left it RUNNING or Ctrl-C marked it FAILED; a run with other settings opens a run of its own."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    files = _run_files(tmp_path)

    with monkeypatch.context() as patch:
        add_callbacks(patch, after=[KillAfter(2)])
        if how == "killed":  # a SIGKILL runs no cleanup
            patch.setattr(runs, "_end_failed", lambda outbox: None)
        with pytest.raises(Killed):
            _train_and_register(files)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    (first,) = client.search_runs(client.get_experiment_by_name("faults").experiment_id)
    assert first.info.status == ("RUNNING" if how == "killed" else "FAILED")

    metrics = _train_and_register(files)
    (run,) = client.search_runs(first.info.experiment_id)
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")) == [1, 2, 3, 4]
    assert client.get_metric_history(run.info.run_id, "resumed_at_epoch")[0].value == 2
    assert metrics["epochs_run"] == EPOCHS and not list(files.checkpoints.parent.glob("train*"))

    _train_and_register(files, config=dataclasses.replace(CONFIG, epochs=1))  # other settings, same files
    assert len(client.search_runs(first.info.experiment_id)) == 2
