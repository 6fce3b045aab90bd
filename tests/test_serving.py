"""The pyfunc that takes image files: the labels `cifake predict` gives, a bad image fails only its row, the model
loads once per process, `cifake register` registers files once, and `--spark` says what it needs."""

import base64
import csv
import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cifake import registry, serving
from cifake.cli import EXIT_FATAL, EXIT_OK, main

from .conftest import write_image

pytestmark = pytest.mark.code


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_each_bad_image_fails_its_own_row_and_good_ones_get_predicts_labels(tmp_path, tiny_model, tiny_model_path):
    good = [
        write_image(tmp_path / "in" / "a.jpg", seed=1),
        write_image(tmp_path / "in" / "big.png", size=(640, 480), fmt="PNG", seed=2),
        write_image(tmp_path / "in" / "grey.png", mode="L", fmt="PNG", seed=3),
    ]
    assert (
        main(
            [
                "predict",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "p.csv"),
                "--scores",
                "--model",
                str(tiny_model_path),
            ]
        )
        == 0
    )
    expected = {r["Image Name"]: (r["Predicted Label"], float(r["P(Fake)"])) for r in _rows(tmp_path / "p.csv")}
    bad = [b"", b"not an image at all", bomb_png(), good[0].read_bytes()[:200], "text, not bytes", None]
    contents = [bad[0], good[0].read_bytes(), *bad[1:4], good[1].read_bytes(), good[2].read_bytes(), *bad[4:]]
    out = serving.classify_contents(serving.inference_model(tiny_model_path), contents, threshold=0.5)
    assert list(out.columns) == list(serving.OUTPUTS) and len(out) == len(contents)
    for row, path in zip(
        out.itertuples(), [None, good[0], None, None, None, good[1], good[2], None, None], strict=True
    ):
        if path is None:
            assert row.label == "" and np.isnan(row.p_fake) and row.error
        else:
            assert (row.label, row.error) == (expected[path.name][0], "")
            assert row.p_fake == pytest.approx(expected[path.name][1], abs=2e-6)
    errors = list(out["error"])
    assert "empty file" in errors[0] and "not an image" in errors[2] and "decompression bomb" in errors[3]
    assert "corrupt or truncated" in errors[4] and "got str" in errors[7] and "got NoneType" in errors[8]


def test_base64_text_sent_undecoded_is_explained(tiny_model_path):
    png = write_image_bytes()
    out = serving.classify_contents(serving.inference_model(tiny_model_path), [base64.b64encode(png)])
    assert "looks like base64" in out["error"][0] and "dataframe_split" in out["error"][0]


def write_image_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_keras_model_is_loaded_once_per_process_and_threads_capped(tmp_path, tiny_model_path, monkeypatch):
    import cifake.model

    copy = tmp_path / "same.keras"
    copy.write_bytes(tiny_model_path.read_bytes())
    loads, capped = [], []
    real_load = cifake.model.load_model
    monkeypatch.setattr(cifake.model, "load_model", lambda p: loads.append(p) or real_load(p))
    monkeypatch.setattr(serving, "_MODELS", {})
    monkeypatch.setattr(serving, "limit_threads", lambda: capped.append(1))
    first = serving.inference_model(tiny_model_path)
    assert serving.inference_model(copy) is first  # the same file under another path (e.g. a Spark task's copy)
    assert len(loads) == 1 and capped == [1]
    serving.inference_model(tiny_model_path, precision="float32")  # another precision is another model
    assert len(loads) == 2


def test_the_pyfunc_checks_its_request(tmp_path, tiny_model_path):
    import mlflow
    from mlflow.exceptions import MlflowException

    serving.save_model(tmp_path / "m", tiny_model_path)
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    frame = pd.DataFrame({"content": [write_image_bytes()]})
    low, high = (model.predict(frame, params={"threshold": t})["label"][0] for t in (1e-6, 1 - 1e-6))
    assert (low, high) == ("Fake", "Real")
    with pytest.raises(MlflowException, match="threshold must be in"):
        model.predict(frame, params={"threshold": 2.0})
    with pytest.raises(MlflowException, match="content"):
        model.predict(pd.DataFrame({"image": [b"x"]}))
    assert mlflow.keras.load_model(str(tmp_path / "m")).count_params() > 0


def test_register_registers_each_file_once_and_moves_champion(tmp_path, tiny_model, monkeypatch, capsys):
    import keras
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    tiny_model.save(a)
    other = keras.models.clone_model(tiny_model)  # other weights: another file
    other.save(b)
    assert main(["register", str(a), str(b), "--champion", str(b), "--name", "det"]) == EXIT_OK
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("det", "champion").version) == 2
    assert main(["register", str(a), str(b), "--champion", str(a), "--name", "det"]) == EXIT_OK  # nothing new
    out = capsys.readouterr().out
    assert "registered: a.keras as det v1" in out and "already registered: a.keras as det v1 @champion" in out
    assert "mlflow models serve -m models:/det@champion --env-manager local" in out
    versions = client.search_model_versions("name = 'det'")
    assert sorted(int(v.version) for v in versions) == [1, 2] and {v.tags["serves"] for v in versions} == {"images"}
    assert int(client.get_model_version_by_alias("det", "champion").version) == 1
    assert [r.info.run_name for r in mlflow.search_runs(experiment_names=["cifake"], output_format="list")] == [
        "register-a"
    ]
    (tmp_path / "junk.keras").write_bytes(b"junk")
    assert main(["register", str(tmp_path / "junk.keras"), "--name", "det"]) == EXIT_FATAL
    assert len(client.search_model_versions("name = 'det'")) == 2
    assert registry.SERVES == "images"


@pytest.mark.parametrize("option", [["--precision", "float32"], ["--single-view"], ["--batch-size", "64"]])
def test_spark_refuses_options_it_does_not_take(tmp_path, option, capsys):
    (tmp_path / "in").mkdir()
    assert main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o.csv"), "--spark", "local[1]", *option]) == 1
    assert f"{option[0]} cannot be combined with --spark" in capsys.readouterr().err


def test_spark_says_how_to_get_pyspark_and_java(tmp_path, monkeypatch, capsys):
    import builtins
    import shutil

    (tmp_path / "in").mkdir()
    args = ["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o.csv"), "--spark", "local[1]"]
    real_import = builtins.__import__

    def no_pyspark(name, *a, **k):
        if name.startswith("pyspark"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "__import__", no_pyspark)
        assert main(args) == EXIT_FATAL
    assert "needs pyspark" in (err := capsys.readouterr().err) and "requirements-spark.txt" in err
    pytest.importorskip("pyspark")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(args) == EXIT_FATAL
    assert "needs Java" in (err := capsys.readouterr().err) and "openjdk-17-jre-headless" in err
    assert not (tmp_path / "o.csv").exists()
