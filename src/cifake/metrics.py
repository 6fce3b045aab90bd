"""Classification metrics, with Fake (label 1) as the positive class.

One implementation, used by evaluate, predict scoring and the tests. Counts and
rates come from scikit-learn; the accuracy interval is the Wilson score
interval from SciPy.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``correct / total``."""
    if total == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def classification_metrics(y_true: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy (with 95 % CI), precision, recall, F1 for Fake, confusion counts and ROC AUC."""
    y_true = np.asarray(y_true).astype(int).ravel()
    p_fake = np.asarray(p_fake, dtype=np.float64).ravel()
    y_pred = (p_fake >= threshold).astype(int)
    return {**label_metrics(y_true, y_pred), "roc_auc": _auc(y_true, p_fake)}


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


def _auc(y_true: np.ndarray, p_fake: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, p_fake))


def roc_points(y_true: np.ndarray, p_fake: np.ndarray) -> list[dict]:
    """ROC curve points (``fpr``, ``tpr``, ``threshold``) for a DVC plot."""
    fpr, tpr, thr = roc_curve(np.asarray(y_true).astype(int), p_fake, pos_label=1, drop_intermediate=True)
    thr = np.minimum(thr, 1.0)  # scikit-learn puts +inf first
    return [{"fpr": float(f), "tpr": float(t), "threshold": float(h)} for f, t, h in zip(fpr, tpr, thr)]


def stratified_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``size`` (all if ``size >= len(y)``)."""
    if size >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(idx)
