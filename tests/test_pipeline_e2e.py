"""The whole DVC pipeline on a tiny sample, in a temporary copy of the project.

Runs `dvc repro` as a user would, checks every declared output, that a second
`dvc repro` does nothing, that MLflow holds the runs and model versions, and
that a forced rerun with the same seed gives identical metrics files.
"""

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from .conftest import TINY, copy_project, git_commit_all, jpeg_q75_tables, run_ok

pytestmark = pytest.mark.e2e


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest = tmp_path_factory.mktemp("project")
    copy_project(dest, TINY)
    env = {
        **{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},  # the stages must be quiet alone
        "PYTHONPATH": str(dest / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{dest}/mlflow.db",
    }
    git_commit_all(dest, env)
    first = run_ok([sys.executable, "-m", "dvc", "repro"], dest, env)
    return dest, env, first


def test_every_stage_ran_and_outputs_exist(project):
    dest, _, log = project
    for stage in ("fetch", "preprocess", "fakes", "train", "fgsm_finetune", "perturb", "evaluate", "predict"):
        assert f"Running stage '{stage}'" in log
    # TensorFlow's C++ INFO lines and harmless warnings stay out of the stages' output, also the two it prints as it
    # loads, before it reads TF_CPP_MIN_LOG_LEVEL (absl's notice; oneDNN's line on AVX-512 VNNI/BF16 or AMX CPUs)
    tensorflow_log = [
        line
        for line in log.splitlines()
        if line[:5] in ("I0000", "W0000", "E0000") or line.startswith("WARNING: All log messages before absl")
    ]
    assert tensorflow_log == []
    for path in (
        "models/model.keras",
        "models/model_robust.keras",
        "data/test_dataset_1_labels.csv",
        "data/test_dataset_2_labels.csv",
        "metrics/plots/confusion_clean.csv",
        "metrics/plots/confusion_test2.csv",
        "metrics/plots/roc_clean_model.csv",
        "metrics/plots/roc_robust_model.csv",
        "metrics/plots/robustness.csv",
        "metrics/plots/train_history.csv",
        "metrics/plots/finetune_history.csv",
        "metrics/plots/adversarial_examples.png",
        "metrics/plots/corruptions_robust_model.csv",
    ):
        assert (dest / path).is_file(), path
    for stage in ("perturb", "evaluate"):  # kept attack batches are for a killed run only
        assert not (dest / "checkpoints" / stage).exists(), stage


def test_own_fakes_are_written_as_cifake_and_scored_held_out(project):
    dest, _, log = project
    assert "Running stage 'fakes'" in log
    fk = yaml.safe_load((dest / "params.yaml").read_text())["fakes"]
    folders = sorted(
        [f"{g}_{k}" for g in fk["generators"] for k in fk["kinds"]] + [f"{g}_sample" for g in fk["gans"]["generators"]]
    )
    for which in ("train", "heldout"):
        assert sorted(p.name for p in (dest / "data/fakes" / which).iterdir()) == folders
        for folder in folders:
            files = sorted((dest / "data/fakes" / which / folder).iterdir())
            assert len(files) == fk["sample_images"]
            for f in files[:3]:
                with Image.open(f) as img:
                    assert (img.format, img.size, img.quantization) == ("JPEG", (32, 32), jpeg_q75_tables())
    assert not (dest / "checkpoints/fakes").exists()
    ev = json.loads((dest / "metrics/evaluate.json").read_text())["generalisation"]
    assert ev["trained_on_own_fakes"] == ["diff_nearest_resynth", "gan_nearest_sample"]
    assert ev["sets"]["generators32"]["skipped"] == "folder not found"  # the copy has no ../shared beside it
    own = ev["sets"]["own_heldout"]
    for model in ("clean_model", "robust_model"):
        assert sorted(own[model]["per_generator"]) == folders
        assert all(row["images"] == fk["sample_images"] for row in own[model]["per_generator"].values())
    plotted = {r["generator"] for r in _rows(dest / "metrics/plots/generalisation.csv")}
    assert plotted == {f"own_heldout/{f}" for f in folders} | {"own_heldout (mean)"}
    summary = json.loads((dest / "metrics/summary.json").read_text())["generalisation"]
    assert summary["own_heldout"]["mean_caught"] == round(own["robust_model"]["mean"]["mean_caught"], 4)


def test_result_csvs_have_one_row_per_image(project):
    dest, _, _ = project
    for n in (1, 2):
        rows = _rows(dest / f"results/Test_{n}_results.csv")
        images = sorted(os.listdir(dest / f"data/test_dataset_{n}"))
        assert list(rows[0]) == ["Image Name", "Predicted Label"]
        assert sorted(r["Image Name"] for r in rows) == images
        assert len(images) == 40
        assert {r["Predicted Label"] for r in rows} <= {"Real", "Fake"}
    assert all(name.endswith(".png") for name in os.listdir(dest / "data/test_dataset_2"))


def test_metrics_keys_and_sample_is_said_plainly(project):
    dest, _, _ = project
    m = {
        name: json.loads((dest / f"metrics/{name}.json").read_text())
        for name in ("data", "train", "finetune", "evaluate", "predict")
    }
    for name in ("train", "finetune", "evaluate"):
        assert m[name]["dataset"].startswith("sample: generated offline")
    assert m["data"]["dataset"] == "sample"
    ev = m["evaluate"]
    for model in ("clean_model", "robust_model"):
        assert {"clean", "fgsm_eps2", "pgd_eps2", "fgsm_eps8", "pgd_eps8"} <= set(ev[model])
        assert {"accuracy", "precision", "recall", "f1"} <= set(ev[model]["clean"])
        corruptions = ev[model]["corruptions"]
        assert set(corruptions["accuracy"]) == set(
            yaml.safe_load((dest / "params.yaml").read_text())["evaluate"]["corruptions"]
        )
        assert corruptions["worst"] == min(corruptions["accuracy"].values()) <= corruptions["mean"]
        assert set(corruptions["by_class"]) == set(corruptions["accuracy"])
        for name, by_class in corruptions["by_class"].items():  # a stratified subset: half real, half fake
            assert corruptions["accuracy"][name] == pytest.approx((by_class["real"] + by_class["fake"]) / 2)
    assert ev["competition_score"] == pytest.approx(
        0.4 * ev["robust_model"]["clean"]["accuracy"] + 0.6 * ev["test_dataset_2"]["accuracy"]
    )
    assert ev["attack_images"] == 16
    # predict scores Test_dataset_2 exactly as evaluate did: same images, same model
    assert m["predict"]["test_dataset_2"]["accuracy"] == pytest.approx(ev["test_dataset_2"]["accuracy"])
    assert m["predict"]["test_dataset_1"]["accuracy"] == pytest.approx(ev["robust_model"]["clean"]["accuracy"])


def test_mlflow_has_runs_and_registered_versions(project):
    dest, env, _ = project
    script = (
        "import mlflow, json; c = mlflow.MlflowClient();"
        "runs = mlflow.search_runs(experiment_names=['cifake'], output_format='list');"
        "vs = c.search_model_versions(\"name='cifake-detector'\");"
        "champ = c.get_model_version_by_alias('cifake-detector', 'champion');"
        "print(json.dumps({'stages': sorted(r.data.tags['stage'] for r in runs),"
        " 'versions': len(vs), 'champion': champ.version}))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=dest, env=env, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["stages"] == ["evaluate", "fakes", "fgsm_finetune", "train"]
    assert info["versions"] == 2 and int(info["champion"]) == 2


def test_second_repro_does_nothing_and_metrics_commands_work(project):
    dest, env, _ = project
    again = run_ok([sys.executable, "-m", "dvc", "repro"], dest, env)
    assert "Running stage" not in again
    shown = json.loads(run_ok([sys.executable, "-m", "dvc", "metrics", "show", "--json"], dest, env))
    workspace = shown[0]["data"] if isinstance(shown, list) else shown
    assert workspace
    # the copy's commit holds no metrics, so every figure is new against HEAD
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "diff", "--json"],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # stderr: "failed to load ... HEAD"
    diff = json.loads(out)
    ev = json.loads((dest / "metrics/evaluate.json").read_text())
    assert diff["metrics/evaluate.json"]["competition_score"]["new"] == pytest.approx(ev["competition_score"])
    assert diff["metrics/evaluate.json"]["competition_score"].get("old") is None


def test_forced_rerun_gives_identical_metrics(project):
    dest, env, _ = project
    names = ("data", "train", "finetune", "evaluate", "predict")
    before = {n: (dest / f"metrics/{n}.json").read_text() for n in names}
    run_ok([sys.executable, "-m", "dvc", "repro", "-f"], dest, env)
    after = {n: (dest / f"metrics/{n}.json").read_text() for n in names}
    assert after == before


def test_plots_render_offline(project):
    dest, env, _ = project
    run_ok([sys.executable, "-m", "dvc", "plots", "show", "-o", "plots_html"], dest, env)
    page = (dest / "plots_html" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vegaEmbed" in page
    for title in (
        "Clean training (train), accuracy per epoch",
        "Adversarial training (fgsm_finetune)",
        "Accuracy under attack against epsilon",
        "Accuracy under everyday changes",
        "Test_dataset_2",
    ):
        assert title in page


def _declared_plots(dvc_yaml: dict) -> dict[str, set[str]]:
    """Every plot file declared in dvc.yaml -> the columns the declaration reads from it."""
    files: dict[str, set[str]] = {}
    for stage in dvc_yaml["stages"].values():
        for entry in stage.get("plots", []):
            ((path, spec),) = entry.items() if isinstance(entry, dict) else ((entry, {}),)
            files.setdefault(path, set()).update(v for k, v in (spec or {}).items() if k in ("x", "y"))
    for entry in dvc_yaml.get("plots", []):
        ((_, spec),) = entry.items()
        for axis in ("x", "y"):
            if isinstance(spec[axis], dict):  # file -> column(s)
                for path, columns in spec[axis].items():
                    files.setdefault(path, set()).update([columns] if isinstance(columns, str) else columns)
        for path in spec["y"] if isinstance(spec["x"], str) else ():
            files.setdefault(path, set()).add(spec["x"])
    return files


def test_every_declared_plot_is_produced_with_its_columns(project):
    dest, _, _ = project
    import yaml

    declared = _declared_plots(yaml.safe_load((dest / "dvc.yaml").read_text()))
    assert len(declared) >= 12  # histories, ROC, PR and corruptions per model, robustness, 2 confusions, picture
    for path, columns in declared.items():
        assert (dest / path).is_file() and (dest / path).stat().st_size > 0, path
        if path.endswith(".csv"):
            rows = _rows(dest / path)
            assert rows, f"{path} is empty"
            assert columns <= set(rows[0]), f"{path} lacks {columns - set(rows[0])}"
    for model in ("clean", "robust"):
        pr = _rows(dest / f"metrics/plots/pr_{model}_model.csv")
        assert all(0.0 <= float(r["precision"]) <= 1.0 and 0.0 <= float(r["recall"]) <= 1.0 for r in pr)


def test_outputs_travel_through_a_local_dvc_remote(project, tmp_path):
    """A colleague clones the repository and pulls models and data from the team's DVC remote."""
    dest, env, _ = project
    dvc = [sys.executable, "-m", "dvc"]
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    run_ok(dvc + ["remote", "add", "-d", "shared", str(tmp_path / "remote")], dest, env)
    pushed = run_ok(dvc + ["push"], dest, env)
    assert "pushed" in pushed
    run_ok(git + ["add", "-A"], dest, env)
    run_ok(git + ["commit", "-qm", "results"], dest, env)

    clone = tmp_path / "clone"
    run_ok(["git", "clone", "-q", str(dest), str(clone)], tmp_path, env)
    assert not (clone / "models/model_robust.keras").exists()
    run_ok(dvc + ["pull"], clone, env)
    for path in ("models/model.keras", "models/model_robust.keras", "data/processed/test.npz"):
        assert (clone / path).read_bytes() == (dest / path).read_bytes(), path
    status = run_ok(dvc + ["status"], clone, env)
    assert "up to date" in status


def _set_param(dest, section: str, key: str, value) -> None:
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params[section][key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _versions(dest, env) -> int:
    script = "import mlflow; print(len(mlflow.MlflowClient().search_model_versions(\"name='cifake-detector'\")))"
    return int(run_ok([sys.executable, "-c", script], dest, env).strip().splitlines()[-1])


def test_a_params_typo_deletes_nothing_and_a_seen_config_comes_from_the_run_cache(project, tmp_path):
    import shutil

    dest = tmp_path / "copy"
    shutil.copytree(project[0], dest, symlinks=True)
    env = {**project[1], "PYTHONPATH": str(dest / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{dest}/mlflow.db"}
    dvc = [sys.executable, "-m", "dvc"]
    model = (dest / "models/model.keras").read_bytes()
    versions = _versions(dest, env)

    _set_param(dest, "train", "epochs", "ten")  # a typo
    failed = subprocess.run(dvc + ["repro"], cwd=dest, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "'train.epochs'" in failed.stderr + failed.stdout
    assert (dest / "models/model.keras").read_bytes() == model  # nothing was deleted
    assert (dest / "metrics/train.json").is_file() and (dest / "metrics/plots/train_history.csv").is_file()

    _set_param(dest, "train", "epochs", TINY[("train", "epochs")])  # fixed: nothing to retrain
    fixed = run_ok(dvc + ["repro"], dest, env)
    assert "Running stage 'train'" not in fixed and "Running stage 'fgsm_finetune'" not in fixed

    _set_param(dest, "train", "epochs", 1)  # a real change trains ...
    changed = run_ok(dvc + ["repro"], dest, env)
    assert "Running stage 'train'" in changed
    assert _versions(dest, env) == versions + 2  # the new clean and robust models
    _set_param(dest, "train", "epochs", TINY[("train", "epochs")])  # ... and changing back restores
    start = time.monotonic()
    back = run_ok(dvc + ["repro"], dest, env)
    for stage in ("train", "fgsm_finetune", "perturb", "evaluate", "predict"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in back, stage
    assert time.monotonic() - start < 60
    assert (dest / "models/model.keras").read_bytes() == model
    assert _versions(dest, env) == versions + 2  # no duplicate registration


def test_saved_models_average_over_the_mirror_image_as_params_say(project):
    from cifake.model import load_model, without_flip_average

    dest, _, _ = project
    flip_average = yaml.safe_load((dest / "params.yaml").read_text())["model"]["flip_average"]
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    for name in ("model.keras", "model_robust.keras"):
        model = load_model(dest / "models" / name)
        assert without_flip_average(model)[1] == flip_average, name
        mirrored = np.asarray(model(x[:, :, ::-1])) - np.asarray(model(x))
        assert (np.abs(mirrored).max() < 1e-5) == flip_average, name
