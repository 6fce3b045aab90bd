"""`cifake predict --spark local[2]`: the CSV and errors file `cifake predict` writes, computed by the registered
models' pyfunc on Spark, which listens on the loopback interface only.

Needs pyspark (requirements-spark.txt) and Java; .ci/run installs both, and in CI (``CI`` set) a missing one
fails the test instead of skipping it.
"""

import csv
import importlib.util
import os
import re
import shutil

import pytest

import cifake.spark
from cifake.cli import DEFAULT_MODEL, EXIT_PARTIAL, main
from cifake.spark import SKIPPED_BY_SPARK

from .conftest import write_image
from .test_predict import hostile_folder

READY = importlib.util.find_spec("pyspark") is not None and (
    shutil.which("java") is not None or os.path.isfile(os.path.join(os.environ.get("JAVA_HOME", ""), "bin", "java"))
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not READY and not os.environ.get("CI"), reason="needs pyspark and Java (requirements-spark.txt)"
    ),
]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
OTHER_MODEL = DEFAULT_MODEL.with_name("cifake-clean-only.keras")  # --model: not the default one


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _listening(spark) -> list:
    """Listening addresses of this process, Spark's JVM and its Python workers."""
    import psutil

    jvm = psutil.Process(spark._jvm.java.lang.ProcessHandle.current().pid())
    processes = [psutil.Process(), jvm, *jvm.children(recursive=True)]
    return [c.laddr for p in processes for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]


def test_spark_writes_what_cifake_predict_writes_and_listens_on_loopback_only(tmp_path, monkeypatch, capsys):
    from cifake.sample import generate_sample

    generate_sample(tmp_path / "sample", train_per_class=60, test_per_class=150, seed=0)
    folder = tmp_path / "sample" / "test"  # REAL/ and FAKE/, 300 JPEGs
    (tmp_path / "outside").mkdir()
    good, bad = hostile_folder(folder / "odd", tmp_path / "outside")  # formats, sizes, corrupt files, symlinks
    write_image(folder / "_thumb.jpg")  # a name Spark's file sources skip
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # restored after the test (cifake.spark sets it)
    listening = []
    real_classify = cifake.spark.classify

    def classify_and_look(spark, *args):
        results = real_classify(spark, *args)
        listening.extend(_listening(spark))  # while the session and its workers are alive
        return results

    monkeypatch.setattr(cifake.spark, "classify", classify_and_look)
    common = ["--scores", "--model", str(OTHER_MODEL), "--labels-from-folders"]
    assert main(["predict", str(folder), "-o", str(tmp_path / "p.csv"), *common]) == EXIT_PARTIAL
    local = capsys.readouterr().err
    assert main(["predict", str(folder), "-o", str(tmp_path / "s.csv"), "--spark", "local[2]", *common]) == EXIT_PARTIAL
    spark = capsys.readouterr().err

    expected, got = _rows(tmp_path / "p.csv"), _rows(tmp_path / "s.csv")
    assert len(expected) == 300 + len(good) + 1 and {r["Predicted Label"] for r in expected} == {"Real", "Fake"}
    hidden = [r for r in expected if r["Image Name"] == "_thumb.jpg"]
    assert [(r["Image Name"], r["Predicted Label"]) for r in got] == [
        (r["Image Name"], r["Predicted Label"]) for r in expected if r not in hidden
    ]
    for mine, theirs in zip(got, (r for r in expected if r not in hidden), strict=True):
        assert float(mine["P(Fake)"]) == pytest.approx(float(theirs["P(Fake)"]), abs=2e-3)  # bf16: batches differ
    expected_errors = [(r["Image Name"], r["Error"]) for r in _rows(tmp_path / "p.errors.csv")]
    assert {name.removeprefix("odd/") for name, _ in expected_errors} == bad
    assert [(r["Image Name"], r["Error"]) for r in _rows(tmp_path / "s.errors.csv")] == [
        ("_thumb.jpg", SKIPPED_BY_SPARK),
        *expected_errors,
    ]
    scored = re.compile(r"scored (\d+) images: accuracy ([\d.]+)")
    assert scored.search(spark).groups() == scored.search(local).groups() == ("300", scored.search(local)[2])
    assert "computed in Spark local[2]" in spark

    assert listening, "no listening socket found: the check would pass vacuously"
    assert {address.ip for address in listening} <= LOOPBACK, listening
    assert 4040 not in {address.port for address in listening}  # no web UI
