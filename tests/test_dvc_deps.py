"""dvc.yaml lists, for every stage, each src/cifake module its script runs: no stale results.

DVC reruns a stage only when a declared dep changes, so a module missing from a
stage's deps would let `dvc repro` serve results of old code.
"""

import pytest
import yaml

from .stage_deps import ROOT, package_files

pytestmark = pytest.mark.code

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def missing_deps(stage: dict) -> set[str]:
    """Package files the stage's script imports (transitively) that its deps do not cover."""
    script = ROOT / stage["cmd"].split()[-1]
    deps = [d.rstrip("/") for d in stage["deps"]]
    covered = lambda f: any(f == d or f.startswith(d + "/") for d in deps)  # noqa: E731
    return {f for f in package_files(script) if not covered(f)} | ({script.relative_to(ROOT).as_posix()} - set(deps))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_every_module_it_runs(name):
    assert missing_deps(STAGES[name]) == set()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_no_module_it_does_not_run(name):
    """Listing more than it runs would rerun hours of training for an unrelated edit."""
    stage = STAGES[name]
    listed = {d for d in stage["deps"] if d.startswith("src/cifake/")}
    assert listed <= package_files(ROOT / stage["cmd"].split()[-1])


def test_a_removed_dep_is_caught():
    stage = dict(STAGES["train"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/cifake/batches.py"]
    assert missing_deps(stage) == {"src/cifake/batches.py"}


def test_a_folder_covers_its_modules():
    stage = dict(STAGES["train"])
    stage["deps"] = ["stages/train.py", "src/cifake"]
    assert missing_deps(stage) == set()


def test_imports_inside_functions_count():
    """sources.download_kaggle imports kagglehub lazily; the package's own lazy imports must count too."""
    files = package_files(ROOT / "stages" / "evaluate.py")
    assert "src/cifake/tracking.py" in files and "src/cifake/report.py" in files


def test_train_reruns_for_every_model_setting_but_the_robust_views():
    """`train` builds its network from every ``model.*`` setting; ``model.view_shift`` shapes only the robust model
    (`fgsm_finetune`), so changing it must not rerun hours of clean training."""
    from cifake.config import ModelParams

    listed = {p.removeprefix("model.") for p in STAGES["train"]["params"] if str(p).startswith("model.")}
    assert listed == set(ModelParams.model_fields) - {"view_shift"}
    assert "model.view_shift" in STAGES["fgsm_finetune"]["params"]
