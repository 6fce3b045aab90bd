"""Classification metrics, with Fake (label 1) as the positive class.

One implementation, used by evaluate, predict scoring and the tests. Counts and
rates come from scikit-learn; the accuracy interval is the Wilson score
interval from SciPy.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``correct / total``."""
    if total == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def correct(y_true: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per image, whether the prediction (Fake when ``p_fake >= threshold``) is right: a bool array."""
    return (np.asarray(p_fake).ravel() >= threshold) == (np.asarray(y_true).ravel() == 1)


def classification_metrics(y_true: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy (with 95 % CI), precision, recall, F1 for Fake, confusion counts, ROC AUC and average precision."""
    y_true = np.asarray(y_true).astype(int).ravel()
    p_fake = np.asarray(p_fake, dtype=np.float64).ravel()
    y_pred = (p_fake >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        **label_metrics(y_true, y_pred),
        "roc_auc": float(roc_auc_score(y_true, p_fake)) if both else float("nan"),
        "average_precision": float(average_precision_score(y_true, p_fake)) if both else float("nan"),
    }


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Metrics from hard labels (0 = Real, 1 = Fake)."""
    y_true = np.asarray(y_true).astype(int).ravel()
    y_pred = np.asarray(y_pred).astype(int).ravel()
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, pos_label=1, average="binary", zero_division=0
    )
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    low, high = accuracy_interval(int(tn + tp), len(y_true))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95_low": low,
        "accuracy_ci95_high": high,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
    }


def roc_points(y_true: np.ndarray, p_fake: np.ndarray) -> list[dict]:
    """ROC curve points (``fpr``, ``tpr``, ``threshold``) for a DVC plot."""
    fpr, tpr, thr = roc_curve(np.asarray(y_true).astype(int), p_fake, pos_label=1, drop_intermediate=True)
    thr = np.minimum(thr, 1.0)  # scikit-learn puts +inf first
    return [{"fpr": float(f), "tpr": float(t), "threshold": float(h)} for f, t, h in zip(fpr, tpr, thr, strict=False)]


def pr_points(y_true: np.ndarray, p_fake: np.ndarray, max_points: int = 500) -> list[dict]:
    """Precision-recall curve points (``recall``, ``precision``, ``threshold``), Fake positive, for a DVC plot.

    scikit-learn gives one point per distinct score (20 000 on CIFAKE's test set);
    an evenly spaced selection of at most ``max_points``, ends included, keeps the
    plot light and the curve's shape.
    """
    precision, recall, thr = precision_recall_curve(np.asarray(y_true).astype(int), p_fake, pos_label=1)
    thr = np.append(thr, 1.0)  # the last point (recall 0, precision 1) has no threshold
    keep = np.unique(np.linspace(0, len(thr) - 1, min(max_points, len(thr))).round().astype(int))
    return [{"recall": float(recall[i]), "precision": float(precision[i]), "threshold": float(thr[i])} for i in keep]


def stratified_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``size`` (all if ``size >= len(y)``)."""
    if size >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(idx)
