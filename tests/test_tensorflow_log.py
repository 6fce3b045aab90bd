"""TensorFlow loads quietly through the package (issue 39), and what goes wrong after that still shows."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.code

# After the import: a raw write to descriptor 2, then an error raised by TensorFlow itself.
SCRIPT = """
import os
import cifake.model
import tensorflow as tf
os.write(2, b"descriptor 2 is back\\n")
tf.reshape(tf.zeros([6]), [4])
"""


def _run(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a plain shell
    # oneDNN on, so TensorFlow prints its line as it loads on any x86 CPU, not only AVX-512 / AMX ones
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**base, "TF_ENABLE_ONEDNN_OPTS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _loading_lines(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "oneDNN custom operations are on" in line or line.startswith("WARNING: All log messages before absl")
    ]


def test_tensorflow_loads_quietly_and_later_errors_still_show():
    result = _run()
    assert _loading_lines(result.stderr) == []
    assert "descriptor 2 is back" in result.stderr
    assert result.returncode == 1 and "InvalidArgumentError" in result.stderr and "Input to reshape" in result.stderr


def test_all_cpp_logging_asked_for_is_shown():
    """TF_CPP_MIN_LOG_LEVEL=0 skips the guard: TensorFlow's loading lines appear (what the test above rules out)."""
    result = _run(TF_CPP_MIN_LOG_LEVEL="0")
    assert _loading_lines(result.stderr) != []
    assert result.returncode == 1 and "InvalidArgumentError" in result.stderr
