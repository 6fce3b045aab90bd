"""The whole DVC pipeline on a tiny sample, in a temporary copy of the project.

Runs `dvc repro` as a user would, checks every declared output, that a second
`dvc repro` does nothing, that MLflow holds the runs and model versions, and
that a forced rerun with the same seed gives identical metrics files.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

pytestmark = pytest.mark.e2e

TINY = {
    ("data", "sample", "train_per_class"): 60,
    ("data", "sample", "test_per_class"): 20,
    ("train", "epochs"): 2,
    ("fgsm_finetune", "epochs"): 1,
    ("evaluate", "attack_subset"): 16,
    ("evaluate", "pgd_steps"): 3,
    ("evaluate", "test2_pgd_steps"): 2,
    ("evaluate", "epsilons"): [0.0078431, 0.0313725],
}


def _copy_project(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        src = ROOT / name
        if not src.is_file() or name.startswith(("metrics/", "models/pretrained/")) or name == "dvc.lock":
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for keys, value in TINY.items():
        node = params
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest = tmp_path_factory.mktemp("project")
    _copy_project(dest)
    env = {
        **os.environ,
        "PYTHONPATH": str(dest / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{dest}/mlflow.db",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    _run(git[:1] + ["init", "-q"], dest, env)
    _run(git + ["add", "-A"], dest, env)
    _run(git + ["commit", "-qm", "copy"], dest, env)
    first = _run([sys.executable, "-m", "dvc", "repro"], dest, env)
    return dest, env, first


def test_every_stage_ran_and_outputs_exist(project):
    dest, _, log = project
    for stage in ("fetch", "preprocess", "train", "fgsm_finetune", "evaluate", "predict"):
        assert f"Running stage '{stage}'" in log
    for path in ("models/model.keras", "models/model_robust.keras", "data/test_dataset_1_labels.csv",
                 "data/test_dataset_2_labels.csv", "metrics/plots/confusion_clean.csv",
                 "metrics/plots/confusion_test2.csv", "metrics/plots/roc_clean_model.csv",
                 "metrics/plots/roc_robust_model.csv", "metrics/plots/robustness.csv",
                 "metrics/plots/train_history.csv", "metrics/plots/finetune_history.csv",
                 "metrics/plots/adversarial_examples.png"):
        assert (dest / path).is_file(), path


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
    m = {name: json.loads((dest / f"metrics/{name}.json").read_text())
         for name in ("data", "train", "finetune", "evaluate", "predict")}
    for name in ("train", "finetune", "evaluate"):
        assert m[name]["dataset"].startswith("sample: generated offline")
    assert m["data"]["dataset"] == "sample"
    ev = m["evaluate"]
    for model in ("clean_model", "robust_model"):
        assert {"clean", "fgsm_eps2", "pgd_eps2", "fgsm_eps8", "pgd_eps8"} <= set(ev[model])
        assert {"accuracy", "precision", "recall", "f1"} <= set(ev[model]["clean"])
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
    assert info["stages"] == ["evaluate", "fgsm_finetune", "train"]
    assert info["versions"] == 2 and int(info["champion"]) == 2


def test_second_repro_does_nothing_and_metrics_commands_work(project):
    dest, env, _ = project
    again = _run([sys.executable, "-m", "dvc", "repro"], dest, env)
    assert "Running stage" not in again
    shown = json.loads(_run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], dest, env))
    assert shown
    _run([sys.executable, "-m", "dvc", "metrics", "diff"], dest, env)


def test_forced_rerun_gives_identical_metrics(project):
    dest, env, _ = project
    names = ("data", "train", "finetune", "evaluate", "predict")
    before = {n: (dest / f"metrics/{n}.json").read_text() for n in names}
    _run([sys.executable, "-m", "dvc", "repro", "-f"], dest, env)
    after = {n: (dest / f"metrics/{n}.json").read_text() for n in names}
    assert after == before


def test_plots_render_offline(project):
    dest, env, _ = project
    _run([sys.executable, "-m", "dvc", "plots", "show", "-o", "plots_html"], dest, env)
    page = (dest / "plots_html" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vegaEmbed" in page
    for title in ("Training accuracy per epoch", "Accuracy under attack against epsilon", "Test_dataset_2"):
        assert title in page
