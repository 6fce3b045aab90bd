"""Metrics against values computed by hand (positive class = Fake = 1)."""

import numpy as np
import pytest

from cifake.metrics import (
    accuracy_interval,
    classification_metrics,
    correct,
    label_metrics,
    roc_points,
    stratified_subset,
)

pytestmark = pytest.mark.code


def test_label_metrics_by_hand():
    # truth:      F F F F R R R R R R ; predicted: F F F R F R R R R R
    y_true = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    m = label_metrics(y_true, y_pred)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 5)
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["accuracy_ci95_low"] < 0.8 < m["accuracy_ci95_high"]


def test_threshold_and_auc():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.55, 0.9])
    assert classification_metrics(y, p, threshold=0.5)["accuracy"] == pytest.approx(0.75)
    assert classification_metrics(y, p, threshold=0.58)["accuracy"] == pytest.approx(0.5)
    assert classification_metrics(y, p)["roc_auc"] == pytest.approx(3 / 4)


def test_no_fake_predicted_gives_zero_not_nan():
    m = label_metrics(np.array([1, 0]), np.array([0, 0]))
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_wilson_interval_known_value():
    low, high = accuracy_interval(81, 100)
    # Wilson 95 % for 81/100: 0.7222 .. 0.8749
    assert low == pytest.approx(0.7222, abs=1e-3)
    assert high == pytest.approx(0.8749, abs=1e-3)


def test_roc_points_span_the_square():
    pts = roc_points(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.4, 0.3]))
    assert pts[0]["fpr"] == 0 and pts[-1]["tpr"] == 1
    assert all(0 <= p["threshold"] <= 1 for p in pts)


def test_stratified_subset_keeps_class_balance():
    y = np.array([0] * 80 + [1] * 20)
    idx = stratified_subset(y, 50, seed=1)
    assert len(idx) == 50 and np.all(np.diff(idx) > 0)
    assert y[idx].sum() == 10
    assert len(stratified_subset(y, 1000, seed=1)) == 100


def test_correct_matches_the_accuracy_of_classification_metrics():
    y = np.array([0, 0, 1, 1, 1], np.uint8)
    p = np.array([0.2, 0.5, 0.5, 0.49, 0.9], np.float32)  # 0.5 counts as Fake
    assert correct(y, p).tolist() == [True, False, True, False, True]
    assert correct(y, p).mean() == classification_metrics(y, p)["accuracy"]
    assert correct(y, p, threshold=0.95).tolist() == [True, True, False, False, False]
