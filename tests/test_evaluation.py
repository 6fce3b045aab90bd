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
