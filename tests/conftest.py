"""Shared fixtures: tiny images, folders and models made on the fly (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_ok(url: str, timeout: float = 5.0) -> bool:
    """Whether a GET of ``url`` answers 200 (a server's health or ping endpoint)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def stop_process(proc, timeout: float) -> None:
    """Ask a server process started by a test to stop; kill it if it has not within ``timeout`` seconds."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def add_callbacks(patch, before=(), after=()):
    """Make ``fit`` run ``[*before, *its own callbacks, *after]`` (to spy on it, force a metric or kill it)."""
    import cifake.training as training

    original = training._callbacks

    def patched(*args):
        callbacks, checkpoint = original(*args)
        return [*before, *callbacks, *after], checkpoint

    patch.setattr(training, "_callbacks", patched)


def write_image(path: Path, size=(32, 32), mode="RGB", fmt=None, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}.get(mode, 3)
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr.squeeze() if channels == 1 else arr, mode if mode in ("RGB", "RGBA", "L") else "RGB")
    if mode not in ("RGB", "RGBA", "L"):
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None:
        fmt = "PNG" if mode == "RGBA" else "JPEG"
    img.save(path, format=fmt)
    return path


def make_layout(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """A tiny raw CIFAKE layout: train|test/REAL|FAKE with random JPEGs."""
    for s, split in enumerate(("train", "test")):
        for c, cls in enumerate(("REAL", "FAKE")):
            for i in range(per_class):
                write_image(root / split / cls / f"{i} ({s}{c}).jpg", seed=seed * 1000 + s * 100 + c * 10 + i)
    return root


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained seed CNN (weights seeded): enough to check contracts, not accuracy."""
    import keras

    from cifake.config import ModelParams
    from cifake.model import build_model

    keras.utils.set_random_seed(0)
    return build_model(
        ModelParams(architecture="seed_cnn", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0)
    )


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model, tmp_path_factory) -> Path:
    from cifake.model import save_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(tiny_model, path)
    return path


# --------------------------------------------------------------- whole-project runs in a temporary copy

# A pipeline small enough for a test: about a minute for all six stages on 2 cores.
TINY = {
    ("data", "sample", "train_per_class"): 60,
    ("data", "sample", "test_per_class"): 20,
    ("train", "epochs"): 2,
    ("fgsm_finetune", "epochs"): 1,
    ("evaluate", "attack_subset"): 16,
    ("evaluate", "pgd_steps"): 3,
    ("perturb", "pgd_steps"): 2,
    ("evaluate", "epsilons"): [0.0078431, 0.0313725],
    ("fakes", "widths"): [8, 16],
    ("fakes", "gans", "widths"): [16, 8, 8],
    ("fakes", "sample_images"): 16,
    ("train", "fakes"): {"diff_nearest_resynth": 0.25, "gan_nearest_sample": 0.25},  # the clean model draws on both
}


def jpeg_q75_tables() -> dict:
    """The quantisation tables of a Pillow JPEG at quality 75: CIFAKE's encoding."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, format="JPEG", quality=75)
    return Image.open(buf).quantization


TRANSFER_SOURCE = "models/pretrained/cifake-clean-only.keras"  # params.yaml's evaluate.transfer_sources


def copy_project(dest: Path, overrides: dict[tuple[str, ...], object]) -> None:
    """Copy the project's tracked and new files (no results, no lock) to ``dest``; override params."""
    import shutil
    import subprocess

    import yaml

    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        src = ROOT / name
        shipped = name.startswith("models/pretrained/") and name != TRANSFER_SOURCE  # evaluate reads that one
        if not src.is_file() or name.startswith("metrics/") or shipped or name == "dvc.lock":
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for keys, value in overrides.items():
        node = params
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_ok(args, cwd, env, timeout: float = 900) -> str:
    """Run a command; fail the test with its output if it fails. Returns stdout + stderr."""
    import subprocess

    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def git_commit_all(dest: Path, env) -> None:
    """Make ``dest`` a git repository with one commit (DVC experiments need one)."""
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    run_ok(git[:1] + ["init", "-q"], dest, env)
    run_ok(git + ["add", "-A"], dest, env)
    run_ok(git + ["commit", "-qm", "copy"], dest, env)


class Killed(Exception):
    """Stands for a kill in the middle of a training run."""


def killed_then_resumed(train, backup: Path):
    """Run ``train(epochs, on_epoch)`` killed after its first epoch, then again to its end: the epochs each run
    reported, whether the ``backup`` folder was there after the kill, and what the second run returned."""
    seen, resumed = [], []

    def die_after_first(row):
        seen.append(row["epoch"])
        if row["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(3, die_after_first)
    kept = backup.is_dir()
    model = train(3, lambda row: resumed.append(row["epoch"]))
    return seen, resumed, kept, model
