"""Scoring under everyday changes: accuracy per change, its mean and worst, and its split by class."""

import keras
import numpy as np
import pytest

from cifake.evaluation import corruption_scores

pytestmark = pytest.mark.model


def always_real() -> keras.Model:
    """P(Fake) = sigmoid(-10) for every image."""
    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(-10.0)
    )
    return keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))


def test_corruption_scores_split_each_accuracy_by_class():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(40) < 10).astype(np.uint8)  # 10 fakes, 30 reals
    scores = corruption_scores(always_real(), x, y, {"blur": ("blur", 1.0), "dark": ("brightness", -30)}, seed=0)
    assert scores["accuracy"] == {"blur": 0.75, "dark": 0.75}
    assert scores["by_class"] == {name: {"real": 1.0, "fake": 0.0} for name in ("blur", "dark")}
    assert scores["mean"] == scores["worst"] == 0.75


def _seed_cnn(seed: int) -> keras.Model:
    from cifake.config import ModelParams
    from cifake.model import build_model

    keras.utils.set_random_seed(seed)
    return build_model(
        ModelParams(architecture="seed_cnn", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0)
    )


def test_a_transfer_attack_is_crafted_on_the_source_and_scores_the_target(monkeypatch):
    """pgd_images differentiates the source model only; transfer_scores classifies those images with the target."""
    import cifake.evaluation as evaluation
    from cifake.metrics import classification_metrics
    from cifake.model import predict_proba

    source, target = _seed_cnn(1), _seed_cnn(2)
    attacked = []
    real_attacker = evaluation.Attacker
    monkeypatch.setattr(evaluation, "Attacker", lambda model: attacked.append(model) or real_attacker(model))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    y = (np.arange(16) % 2).astype(np.uint8)
    crafted = evaluation.pgd_images(source, x, y, [2 / 255, 8 / 255], pgd_steps=3, step_fraction=0.5)
    assert attacked == [source]
    assert set(crafted) == {2 / 255, 8 / 255} and np.abs(crafted[8 / 255] - x).max() <= 8 + 1e-3
    scores = evaluation.transfer_scores(target, crafted, y)
    assert set(scores) == {"pgd_eps2", "pgd_eps8"}
    expected = classification_metrics(y, predict_proba(target, crafted[8 / 255]))["accuracy"]
    assert scores["pgd_eps8"]["accuracy"] == expected
    white_box = evaluation.transfer_scores(source, crafted, y)["pgd_eps8"]["accuracy"]
    on_clean = classification_metrics(y, predict_proba(source, x))["accuracy"]
    assert white_box < on_clean  # the images do attack the source they were crafted on
