"""The web demo: its functions called directly, then `cifake demo` served and used in headless Chromium.

The browser test drives Chromium through its DevTools protocol: it uploads files into the page as a
person would, reads what the page shows, records every request the page makes (all must stay on this
machine) and takes the screenshot. Set CIFAKE_SCREENSHOTS=folder to keep it (docs/demo.png comes from here).
"""

import base64
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifake.cli import DEMO_MODELS, EXIT_OK, main
from cifake.demo import NEUTRAL, attack, change, classify, input_notes, load_models, read_upload
from cifake.images import ImageError
from cifake.sample import generate_sample

from .conftest import http_ok, write_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def models():
    return load_models(DEMO_MODELS)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_sample")
    generate_sample(root / "raw", train_per_class=2, test_per_class=3, seed=11)
    return root / "raw" / "test"


def _image(path: Path) -> np.ndarray:
    return read_upload(path.name, path.read_bytes()).pixels


@pytest.mark.model
def test_classify_gives_each_model_a_label_score_and_heatmap(models, sample):
    pixels = _image(next((sample / "REAL").iterdir()))
    verdicts = classify(models, pixels, threshold=0.5)
    assert [v.model for v in verdicts] == ["cifake-robust", "cifake-clean-only"]
    for v in verdicts:
        assert 0.0 <= v.p_fake <= 1.0 and v.label == ("Fake" if v.p_fake >= 0.5 else "Real")
        assert v.heat is not None and v.heat.shape == (256, 256, 3)
    assert verdicts[0].p_fake != verdicts[1].p_fake
    assert classify(models, pixels, threshold=0.0001)[0].label == "Fake"


@pytest.mark.model
@pytest.mark.parametrize("eps", [1, 8])
def test_attack_pushes_the_attacked_model_away_from_its_decision(models, sample, eps):
    pixels = _image(next((sample / "FAKE").iterdir()))
    result = attack(models, "cifake-clean-only", pixels, eps)
    delta = result.adversarial - pixels.astype(np.float32)
    assert np.abs(delta).max() <= eps + 1e-3 and np.abs(delta).max() > 0.5
    before, after = result.before["cifake-clean-only"], result.after["cifake-clean-only"]
    assert (after < before) if before >= 0.5 else (after > before), (before, after)
    assert set(result.after) == set(models) and result.perturbation.dtype == np.uint8
    again = attack(models, "cifake-clean-only", pixels, eps)
    assert np.array_equal(again.adversarial, result.adversarial)  # seeded
    with pytest.raises(ValueError):
        attack(models, "cifake-robust", pixels, 9)


@pytest.mark.model
def test_everyday_changes_change_the_image_and_the_scores(models, sample):
    pixels = _image(next((sample / "REAL").iterdir()))
    same, p_same = change(models, pixels, NEUTRAL)
    assert np.array_equal(same, pixels)
    blurred, p_blur = change(models, pixels, {**NEUTRAL, "blur": 2.0, "jpeg": 30.0})
    assert not np.array_equal(blurred, pixels)
    assert all(p_blur[name] != p_same[name] for name in models)
    with pytest.raises(ValueError):
        change(models, pixels, {"rotate": 5.0})


@pytest.mark.code
def test_bad_uploads_are_refused_with_a_reason(tmp_path):
    full = write_image(tmp_path / "a.jpg", size=(64, 64)).read_bytes()
    for data, reason in [
        (b"", "empty"),
        (b"just text", "not an image"),
        (full[: len(full) // 2], "truncated"),
        (full, "over the"),
    ]:
        with pytest.raises(ImageError, match=reason):
            read_upload("x", data, max_bytes=len(full) - 1 if reason == "over the" else 1 << 20)
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(huge)
    with pytest.raises(ImageError, match="refused"):
        read_upload("huge.png", huge.read_bytes())


@pytest.mark.code
def test_notes_say_when_an_input_is_unlike_cifake(tmp_path):
    small = write_image(tmp_path / "s.jpg").read_bytes()
    assert input_notes(small, read_upload("s", small).pixels) == []
    big = write_image(tmp_path / "b.png", size=(640, 480), fmt="PNG").read_bytes()
    notes = input_notes(big, read_upload("b", big).pixels)
    assert any("downscaled from 640x480" in n for n in notes) and any("32x32 thumbnail" in n for n in notes)
    grey = write_image(tmp_path / "g.png", mode="L", fmt="PNG").read_bytes()
    assert any("mode L" in n for n in input_notes(grey, read_upload("g", grey).pixels))


@pytest.mark.code
def test_predict_notes_how_many_images_it_downscaled(tmp_path, tiny_model_path, capsys):
    write_image(tmp_path / "in" / "small.jpg")
    write_image(tmp_path / "in" / "big.png", size=(640, 480), fmt="PNG")
    write_image(tmp_path / "in" / "big2.jpg", size=(200, 150))
    assert main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o.csv"), "--model", str(tiny_model_path)]) == 0
    err = capsys.readouterr().err
    assert (
        "note: 2 images were downscaled from much larger than 32x32" in err
        and "not measured for this model file" in err
    )
    (tmp_path / "in" / "big.png").unlink(), (tmp_path / "in" / "big2.jpg").unlink()
    assert main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o.csv"), "--model", str(tiny_model_path)]) == 0
    assert "note:" not in capsys.readouterr().err


# ------------------------------------------------------------------ the served page, in a real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    return http_ok(url + "/_stcore/health", timeout=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_server")
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(root)}  # no user config.toml
    log = open(root / "server.log", "w")  # noqa: SIM115 - the server writes to it until the fixture ends
    cmd = [sys.executable, "-m", "cifake.cli", "demo", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a cold start on a busy 2-core machine (font cache, TensorFlow) took >120 s
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"cifake demo did not start:\n{(root / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, proc, root
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=20)
    log.close()


class Browser:
    """Headless Chromium driven over its DevTools protocol (one page); records every request the page makes."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        profile.mkdir(parents=True, exist_ok=True)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
        args += ["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1000"]
        self.proc = subprocess.Popen(
            [CHROMIUM, *args, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (profile / "DevToolsActivePort").is_file() or not (profile / "DevToolsActivePort").read_text():
            assert time.monotonic() < deadline and self.proc.poll() is None, "Chromium did not start"
            time.sleep(0.2)
        port = (profile / "DevToolsActivePort").read_text().split()[0]
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
        self.next_id, self.requests = 0, []
        for domain in ("Page", "Network", "Runtime", "DOM"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

    def text(self) -> str:
        return self.call("Runtime.evaluate", expression="document.body.innerText")["result"].get("value", "")

    def wait_for(self, *strings: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(s in text for s in strings) and "attacking ..." not in text and "explaining ..." not in text:
                return text
            assert time.monotonic() < deadline, f"page never showed {strings}:\n{text[-3000:]}"
            time.sleep(1)

    def upload(self, *files: Path) -> None:
        deadline = time.monotonic() + 60
        while True:  # the page draws its file input a moment after its text
            root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
            node = self.call("DOM.querySelector", nodeId=root, selector="input[type=file]")["nodeId"]
            if node:
                break
            assert time.monotonic() < deadline, "the page shows no file input"
            time.sleep(0.5)
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(f) for f in files])

    def screenshot(self, path: Path, height: int = 2000) -> None:
        """The page in a window ``height`` pixels tall (Streamlit scrolls inside its own container)."""
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(3)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _scores_by_predict(folder: Path, tmp: Path) -> dict[str, tuple[str, float]]:
    out = tmp / "predict.csv"
    # the page computes in float32; predict's default (auto) is bfloat16 on CPUs with AVX-512 BF16
    assert main(["predict", str(folder), "-o", str(out), "--scores", "--precision", "float32"]) == EXIT_OK
    with open(out, newline="") as fh:
        return {r["Image Name"]: (r["Predicted Label"], float(r["P(Fake)"])) for r in csv.DictReader(fh)}


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")
def test_the_page_in_a_browser_classifies_attacks_and_stays_offline(server, sample, tmp_path):
    url, proc, _ = server
    good = next((sample / "FAKE").iterdir())
    upload_dir = tmp_path / "upload"
    upload_dir.mkdir()
    shutil.copy(good, upload_dir / good.name)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(good.read_bytes()[:200])
    expected = _scores_by_predict(upload_dir, tmp_path)[good.name]

    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=url)
        browser.wait_for("Drop one or more images")
        browser.upload(bad, upload_dir / good.name)
        text = browser.wait_for("broken.jpg: cannot be used", "cifake-robust: ", "after the changes", "(white-box)")

        shown = re.search(r"cifake-robust: (Real|Fake) · P\(Fake\) = ([0-9.]+)", text)
        assert shown, text[-3000:]
        assert (shown.group(1), round(float(shown.group(2)), 6)) == (expected[0], expected[1])
        attacked = re.search(r"cifake-robust \(white-box\): P\(Fake\) ([0-9.]+) → ([0-9.]+)", text)
        assert attacked, text[-3000:]
        before, after = float(attacked.group(1)), float(attacked.group(2))
        assert before == pytest.approx(expected[1], abs=1e-6)
        assert (after < before) if expected[0] == "Fake" else (after > before)
        assert re.search(r"cifake-clean-only \(transfer\): P\(Fake\)", text)

        shots = os.environ.get("CIFAKE_SCREENSHOTS")
        shot = Path(shots) / "demo.png" if shots else tmp_path / "demo.png"
        browser.screenshot(shot)
        assert Image.open(shot).size[1] > 1000

        foreign = [u for u in browser.requests if not u.startswith((url, "data:", "blob:", "about:"))]
        assert not foreign, f"the page asked for something off this machine: {foreign}"
        assert len(browser.requests) > 3  # the recorder saw the page's own requests
    finally:
        browser.close()
    assert _healthy(url) and proc.poll() is None  # the bad file did not stop the server


@pytest.mark.e2e
def test_ctrl_c_stops_the_demo_cleanly(server):
    url, proc, root = server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, (root / "server.log").read_text()[-3000:]
    assert not _healthy(url)
