"""`mlflow models serve` of the registered champion, as a user runs it: `cifake register`, then the server on a
loopback port answers image files with `cifake predict`'s labels, a bad image with its row's error, and a bad
request with a 4xx, never a 5xx, and keeps answering."""

import base64
import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cifake.cli import DEFAULT_MODEL, main

from .conftest import http_ok, run_ok, stop_process, write_image
from .test_mlflow_server import _free_port
from .test_serving import bomb_png

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The shipped robust model registered by `cifake register` and served by `mlflow models serve`."""
    root = tmp_path_factory.mktemp("serving")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = run_ok([sys.executable, "-m", "cifake.cli", "register", str(DEFAULT_MODEL)], root, env)
    assert "cifake-robust.keras as cifake-detector v1 @champion" in out
    port = _free_port()
    log = open(root / "serve.log", "w")  # noqa: SIM115 - the server writes to it until the fixture ends
    command = ["mlflow", "models", "serve", "-m", "models:/cifake-detector@champion", "--env-manager", "local"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a cold start on a loaded 2-core machine: TensorFlow, the model
    while not http_ok(url + "/ping"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow models serve did not start:\n{(root / 'serve.log').read_text()[-3000:]}")
        time.sleep(1)
    yield url
    stop_process(proc, timeout=30)
    log.close()


def post(url: str, body: bytes | str) -> tuple[int, dict | str]:
    """POST ``body`` as JSON to /invocations; (status, parsed JSON or text)."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url + "/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def images_request(contents: list[bytes], column: str = "content") -> str:
    data = [[base64.b64encode(c).decode()] for c in contents]
    return json.dumps({"dataframe_split": {"columns": [column], "data": data}})


def test_served_labels_are_cifake_predicts(served, tmp_path):
    from cifake.sample import generate_sample

    generate_sample(tmp_path / "sample", train_per_class=60, test_per_class=40, seed=0)
    folder = tmp_path / "sample" / "test"
    write_image(folder / "large photo.png", size=(640, 480), fmt="PNG", seed=5)
    write_image(folder / "grey.webp", mode="L", fmt="WEBP", seed=6)
    (folder / "corrupt.jpg").write_bytes(write_image(tmp_path / "x.jpg", size=(64, 64)).read_bytes()[:300])
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", str(folder), "-o", str(tmp_path / "p.csv"), "--scores"]) == 3
    with open(tmp_path / "p.csv", newline="") as fh:
        expected = {r["Image Name"]: r for r in csv.DictReader(fh)}
    with open(tmp_path / "p.errors.csv", newline="") as fh:
        expected_errors = {r["Image Name"]: r["Error"] for r in csv.DictReader(fh)}
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert len(names) == 84 and {"corrupt.jpg", "notes.txt"} == set(expected_errors)
    got = {}
    for start in range(0, len(names), 16):  # requests of 16 images
        batch = names[start : start + 16]
        status, answer = post(served, images_request([(folder / n).read_bytes() for n in batch]))
        assert status == 200, answer
        got.update(zip(batch, answer["predictions"], strict=True))
    for name, row in expected.items():
        assert got[name]["label"] == row["Predicted Label"] and got[name]["error"] == ""
        assert got[name]["p_fake"] == pytest.approx(float(row["P(Fake)"]), abs=2e-3)  # bf16: batches differ
    assert {row["Predicted Label"] for row in expected.values()} == {"Real", "Fake"}
    for name, error in expected_errors.items():
        assert got[name]["label"] == "" and got[name]["error"] == error


@pytest.mark.parametrize(
    "case",
    ["not JSON", "not base64", "an empty batch", "the wrong column", "a decompression bomb", "a number", "a list"],
)
def test_bad_requests_get_4xx_or_row_errors_and_the_server_keeps_answering(served, case, tmp_path):
    image = write_image(tmp_path / "a.jpg").read_bytes()
    body = {
        "not JSON": "{not json",
        "not base64": json.dumps({"dataframe_split": {"columns": ["content"], "data": [["@@ not base64 @@"]]}}),
        "an empty batch": json.dumps({"dataframe_split": {"columns": ["content"], "data": []}}),
        "the wrong column": images_request([image], column="image"),
        "a decompression bomb": images_request([bomb_png(), image]),
        "a number": json.dumps({"dataframe_split": {"columns": ["content"], "data": [[5]]}}),
        "a list": json.dumps([1, 2]),
    }[case]
    status, answer = post(served, body)
    assert status < 500, answer
    if case == "a decompression bomb":
        assert status == 200 and answer["predictions"][0]["error"].startswith("refused")
        assert answer["predictions"][1]["label"] in ("Real", "Fake")
    elif case == "an empty batch":
        assert status == 200 and answer["predictions"] == []
    else:
        assert 400 <= status < 500
    status, answer = post(served, images_request([image]))
    assert status == 200 and answer["predictions"][0]["label"] in ("Real", "Fake")
