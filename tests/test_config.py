"""params.yaml validation: every mistake is named before any long work starts."""

import copy

import pytest
import yaml

from cifake.config import ConfigError, load_params, parse_params

from .conftest import ROOT

pytestmark = pytest.mark.code


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_validate():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "sample"
    assert 0 < params.fgsm_finetune.epsilon <= 1


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("data", "source"), "s3", "'data.source': must be one of 'sample', 'archive', 'directory' or 'kaggle'"),
        (("model", "architecture"), "vit", "'model.architecture': must be one of 'seed_cnn', 'resnet' or 'vgg'"),
        (("fgsm_finetune", "epsilon"), 8, "'fgsm_finetune.epsilon'"),
        (("fgsm_finetune", "epsilon"), 0, "'fgsm_finetune.epsilon'"),
        (("evaluate", "epsilons"), [0.01, 4], "'evaluate.epsilons'"),
        (("train", "epochs"), "ten", "'train.epochs'"),
        (("train", "learning_rate"), "1e-3x", "'train.learning_rate'"),
        (("train", "batch_size"), 0, "'train.batch_size'"),
        (("train", "everyday_ranges"), {"contrast": [1.6, 0.4]}, "'train.everyday_ranges': Value error, contrast"),
        (("fgsm_finetune", "everyday_ranges"), {"posterize": [2, 6]}, "'fgsm_finetune.everyday_ranges.posterize"),
    ],
)
def test_bad_values_are_named(raw, path, value, expected):
    bad = copy.deepcopy(raw)
    bad[path[0]][path[1]] = value
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    assert expected in str(err.value)


def test_the_corruption_kinds_params_accept_are_those_that_exist():
    from typing import get_args

    from cifake.config import CorruptionKind
    from cifake.corruptions import CORRUPTIONS

    assert set(get_args(CorruptionKind)) == set(CORRUPTIONS)


def test_everyday_ranges_reach_the_fit_config(raw):
    from cifake.fitconfig import fit_config

    raw = copy.deepcopy(raw)
    raw["fgsm_finetune"]["everyday_ranges"] = {"contrast": [0.4, 1.6], "brightness": [-64, 64]}
    params = parse_params(raw)
    assert fit_config(params.fgsm_finetune, seed=0).everyday_ranges == {"contrast": (0.4, 1.6), "brightness": (-64, 64)}
    assert fit_config(params.train, seed=0).everyday_ranges is None  # the defaults


@pytest.mark.parametrize(
    ("setting", "flags", "runs"),
    [
        ("auto", {"avx2", "fma"}, "float32"),  # bfloat16 would be emulated
        ("auto", {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ("auto", {"amx_bf16"}, "mixed_bfloat16"),
        ("float32", {"avx512_bf16"}, "float32"),  # an explicit setting is kept
        ("mixed_bfloat16", {"avx2"}, "mixed_bfloat16"),
    ],
)
def test_auto_precision_becomes_what_the_cpu_runs_fastest(raw, setting, flags, runs):
    from cifake.fitconfig import fit_config

    raw = copy.deepcopy(raw)
    raw["train"]["precision"] = setting
    assert fit_config(parse_params(raw).train, seed=0, cpu_flags=frozenset(flags)).precision == runs


def test_everyday_attacked_keeps_the_attacked_share_of_each_batch_unchanged(raw):
    import numpy as np

    from cifake.dataset import Split
    from cifake.fitconfig import adversarial_config, fit_config
    from cifake.training import training_batches

    raw = copy.deepcopy(raw)
    ft = parse_params(raw).fgsm_finetune
    assert ft.everyday_attacked  # the default: every image may be changed
    raw["fgsm_finetune"].update(everyday_attacked=False, clean_fraction=0.3)
    ft = parse_params(raw).fgsm_finetune
    config = fit_config(ft, seed=0, adversarial=adversarial_config(ft))
    assert not config.adversarial.everyday_attacked
    split = Split(np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, np.uint8), np.array(["a"] * 10))
    assert training_batches(split, config).unchanged_share == pytest.approx(0.7)
    clean = fit_config(parse_params(raw).train, seed=0)
    assert training_batches(split, clean).unchanged_share == 0.0


def test_distillation_settings_reach_the_attack_settings_and_need_a_teacher(raw):
    from cifake.fitconfig import adversarial_config

    raw = copy.deepcopy(raw)
    assert adversarial_config(parse_params(raw).fgsm_finetune).distill_weight == 0.0  # off as shipped
    raw["fgsm_finetune"].update(distill_weight=0.5, distill_attacked=True)
    adv = adversarial_config(parse_params(raw).fgsm_finetune)
    assert adv.distill_weight == 0.5 and adv.distill_attacked
    raw["fgsm_finetune"]["teacher"] = ""
    with pytest.raises(ConfigError, match="needs a teacher"):
        parse_params(raw)
    raw["fgsm_finetune"].update(teacher="t.keras", distill_weight=1.5)
    with pytest.raises(ConfigError, match="distill_weight"):
        parse_params(raw)
    raw["fgsm_finetune"].update(distill_weight=0.0, awp_gamma=5.0e-3, strategy="mirrored")
    with pytest.raises(ConfigError, match="awp_gamma > 0 runs on one device"):
        parse_params(raw)


def test_atta_reaches_the_attack_settings_and_the_batches_and_runs_on_one_device(raw):
    import numpy as np

    from cifake.dataset import Split
    from cifake.fitconfig import adversarial_config, fit_config
    from cifake.training import training_batches

    raw = copy.deepcopy(raw)
    raw["fgsm_finetune"]["method"] = "atta"
    section = parse_params(raw).fgsm_finetune
    adv = adversarial_config(section)
    split = Split(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.uint8), np.array(["a"] * 4))
    assert adv.method == "atta" and training_batches(split, fit_config(section, 0, adv)).geometry
    raw["fgsm_finetune"]["strategy"] = "mirrored"
    with pytest.raises(ConfigError, match="atta runs on one device"):
        parse_params(raw)
    raw["fgsm_finetune"].update(strategy="none", method="atta2")
    with pytest.raises(ConfigError, match="method"):
        parse_params(raw)


def test_missing_and_unknown_keys_are_named(raw):
    bad = copy.deepcopy(raw)
    del bad["train"]["epochs"]
    bad["train"]["epoch"] = 3
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    message = str(err.value)
    assert "'train.epochs': Field required" in message
    assert "'train.epoch': unknown key, did you mean 'epochs'?" in message


def test_misspelt_keys_get_the_closest_valid_one(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["learnin_rate"] = bad["train"].pop("learning_rate")
    bad["evaluate"]["corruptions"]["jpeg_q50"]["kinds"] = "jpeg"
    bad["zzz"] = 1
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    message = str(err.value)
    assert "'train.learnin_rate': unknown key, did you mean 'learning_rate'?" in message
    assert "'evaluate.corruptions.jpeg_q50.kinds': unknown key" in message  # inside a mapping of sections
    assert "'zzz': unknown key (got 1)" in message  # nothing close: no guess


def test_check_params_says_valid(tmp_path, capsys):
    from cifake.cli import EXIT_FATAL, EXIT_OK, main

    assert main(["check-params", str(ROOT / "params.yaml")]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"{ROOT / 'params.yaml'} is valid"
    (tmp_path / "p.yaml").write_text((ROOT / "params.yaml").read_text().replace("  epochs:", "  epoch:", 1))
    assert main(["check-params", str(tmp_path / "p.yaml")]) == EXIT_FATAL
    assert "did you mean 'epochs'?" in capsys.readouterr().err


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(tmp_path / "list.yaml")


def test_the_sample_evaluate_is_cut_where_asked_and_says_so(raw):
    from cifake.evaluation import sample_sized

    ev = parse_params(raw).evaluate.model_copy(
        update={"attack_subset": 300, "pgd_steps": 20, "sample_attack_subset": 100, "sample_pgd_steps": 10}
    )
    cut, note = sample_sized(ev)
    assert (cut.attack_subset, cut.pgd_steps) == (100, 10)
    assert "attack_subset=100 instead of 300" in note and "pgd_steps=10 instead of 20" in note
    same, none = sample_sized(ev.model_copy(update={"sample_attack_subset": None, "sample_pgd_steps": 40}))
    assert (same.attack_subset, same.pgd_steps, none) == (300, 20, None)  # never more than the full settings


def test_validating_the_flip_averaged_model_needs_one(raw):
    raw = copy.deepcopy(raw)
    raw["fgsm_finetune"]["validate_flip_average"] = True
    assert parse_params(raw).fgsm_finetune.validate_flip_average
    raw["model"]["flip_average"] = False
    with pytest.raises(ConfigError, match="needs model.flip_average"):
        parse_params(raw)
