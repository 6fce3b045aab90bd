"""Classifying a corpus on Spark: ``cifake predict INPUT -o CSV --spark MASTER``.

Spark reads every file under INPUT (a local folder, or any path it reads: ``hdfs://``, ``s3a://``) with its
``binaryFile`` source, recursively, and runs the model's pyfunc (:class:`cifake.serving.ImageClassifier`, built
from ``--model`` the way a registered version is) through ``mlflow.pyfunc.spark_udf``; the driver writes the
CSV and errors file ``cifake predict`` writes (:func:`cifake.predict.write_results`: same columns, names relative
to INPUT, same order, written whole or not at all). Under a local folder the files are exactly those ``cifake
predict`` takes (:func:`cifake.predict.iter_files`); Spark's file sources skip names that start with ``_`` or
``.``, so such files are listed in the errors file instead of silently missing. A ``local[N]`` Spark binds
127.0.0.1 only and serves no web UI. pyspark is an optional extra (``requirements-spark.txt``) and needs Java.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from cifake.errors import CifakeError
from cifake.images import ImageError, load_image
from cifake.predict import (
    PredictError,
    PredictSummary,
    check_output,
    errors_path,
    iter_files,
    own_files,
    walk_order,
    write_results,
)
from cifake.serving import THREADS, quiet_mlflow, save_model

LOOPBACK = "127.0.0.1"
INSTALL_SPARK = "pip install -r requirements-spark.txt"
INSTALL_JAVA = "install Java 17 or later (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
SETTINGS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    f"spark.executorEnv.{THREADS}": "1",  # one TensorFlow thread per Python worker: Spark runs one per core
    "spark.executorEnv.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # each task loads the pyfunc
    # small files: ~480 CIFAKE JPEGs per task instead of 32 (each file is counted as 4 MB by default); tasks stay
    # small enough that the last ones keep every core busy
    "spark.sql.files.openCostInBytes": str(64 << 10),
    "spark.sql.files.maxPartitionBytes": str(32 << 20),
    "spark.sql.execution.arrow.maxRecordsPerBatch": "256",  # images per call of the pyfunc
}
# Locally the workers run this interpreter, which has the project (on a cluster, spark-submit's conf says which:
# docs/scale-out.md), and the JVM shares the cores with them: its quick compiler only, one compiler thread and a
# serial collector halved its CPU time (33 -> 16 s on the 20 000 CIFAKE test JPEGs) and saved ~10 % of the wall time
LOCAL = {
    "spark.pyspark.python": sys.executable,
    "spark.driver.host": LOOPBACK,
    "spark.driver.bindAddress": LOOPBACK,
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:+UseSerialGC",
}
SKIPPED_BY_SPARK = "not read: Spark's file sources skip names that start with '_' or '.' (cifake predict reads them)"
NOT_READ = "listed but not read by Spark (it skips empty files)"
RESULT_TYPE = "label string, p_fake double, error string"


class SparkError(CifakeError, RuntimeError):
    """Spark cannot run (pyspark or Java missing, a path it cannot read); the message says what to do."""


def session(master: str):
    """A Spark session on ``master``; a ``local`` master binds 127.0.0.1 only. Fails clearly without pyspark/Java."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkError(f"--spark needs pyspark, an optional extra: {INSTALL_SPARK}") from None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").is_file()) and shutil.which("java") is None:
        raise SparkError(f"--spark needs Java, which was not found: {INSTALL_JAVA}")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    builder = SparkSession.builder.master(master).appName("cifake predict")
    settings = dict(SETTINGS)
    if master.startswith("local"):
        os.environ["SPARK_LOCAL_IP"] = LOOPBACK  # read by the JVM as it starts
        settings |= LOCAL
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark


def _local_folder(input_path: str) -> Path | None:
    """INPUT as a local folder, or None for a path of another file system (``hdfs://``, ``s3a://``)."""
    parsed = urlparse(input_path)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(input_path) if not parsed.scheme or len(parsed.scheme) == 1 else None  # C:\\ is local too


def classify(spark, input_path: str, model_dir: Path, threshold: float) -> tuple[dict, list[str]]:
    """``({name: (label, p_fake, error)}, listed names)`` for the files Spark finds under ``input_path``, names
    relative to it. Spark lists empty files but never reads them: they are listed without a result."""
    import mlflow.pyfunc
    from pyspark.sql.functions import struct

    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(input_path)
    root = hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).makeQualified(hadoop_path).toString()
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(input_path)
    with quiet_mlflow():
        model = mlflow.pyfunc.spark_udf(
            spark, str(model_dir), result_type=RESULT_TYPE, env_manager="local", params={"threshold": threshold}
        )
    out = files.select("path", model(struct("content")).alias("r")).select("path", "r.label", "r.p_fake", "r.error")
    # collect(), not toLocalIterator(), which computes one partition at a time
    results = {row.path[len(root) :].lstrip("/"): (row.label, row.p_fake, row.error) for row in out.collect()}
    root_path = urlparse(root).path.rstrip("/")
    listed = [unquote(urlparse(uri).path)[len(root_path) :].lstrip("/") for uri in files.inputFiles()]  # URL-quoted
    return results, listed


def _not_returned(path: Path | None) -> str:
    """Why Spark gave no result for a file it listed (or, under a local INPUT, did not list)."""
    if path is None:
        return NOT_READ
    try:
        load_image(path)  # what cifake predict says about it: e.g. an empty file, which Spark never reads
    except ImageError as exc:
        return str(exc)
    return SKIPPED_BY_SPARK


def predict_spark(
    input_path: str, output: Path, master: str, model_file: Path, *, threshold: float = 0.5, scores: bool = False
) -> PredictSummary:
    """Classify every file under ``input_path`` on Spark ``master``; write the CSV and errors file of
    :func:`cifake.predict.predict_folder`. The driver holds one (name, label, P(Fake)) row per file."""
    output = Path(output)
    local = _local_folder(input_path)
    if local is not None and not local.is_dir():
        raise PredictError(f"input folder does not exist or is not a folder: {local}")
    check_output(output)
    summary = PredictSummary(output=output, errors_file=errors_path(output), path=f"Spark {master}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cifake-spark-") as tmp:
        save_model(Path(tmp) / "model", model_file)  # the pyfunc a registered version is
        spark = session(master)
        try:
            results, listed = classify(spark, input_path, Path(tmp) / "model", threshold)
        except Exception as exc:  # a Java or Python error on the cluster: its first line says what
            raise SparkError(f"Spark failed on {input_path}: {str(exc).strip().splitlines()[0]}") from exc
        finally:
            spark.stop()
    if local is not None:  # exactly the files cifake predict takes, in its order
        listing = iter_files(local, own_files(output, summary.errors_file))
    else:
        listing = ((name, None, None) for name in sorted(set(results) | set(listed), key=walk_order))
    rows = []
    for name, path, problem in listing:
        if problem or name not in results:
            label, p_fake, error = "", 0.0, problem or _not_returned(path)
        else:
            label, p_fake, error = results[name]
        if error:
            summary.failed.append((name, error))
            print(f"skipped: {name}: {error}", file=sys.stderr)
        else:
            rows.append((name, label, p_fake))
    write_results(output, rows, summary.failed, scores)
    summary.classified, summary.seconds = len(rows), time.perf_counter() - start
    return summary
