"""Evaluation metrics over a whole split: CCC per dimension and their mean on the
1-7 scale, and region accuracy, macro-F1 and unweighted average recall."""

from __future__ import annotations

import numpy as np

from .sphere import DIMENSIONS


def ccc(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """CCC of each column of (n, d) arrays (or of two vectors), population variances."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    pred_mean, target_mean = pred.mean(0), target.mean(0)
    covariance = ((pred - pred_mean) * (target - target_mean)).mean(0)
    denominator = pred.var(0) + target.var(0) + (pred_mean - target_mean) ** 2
    return np.where(denominator > 0, 2 * covariance / np.where(denominator > 0, denominator, 1.0), 0.0)


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"arousal": .., "valence": .., "dominance": .., "mean": ..}`` from (n, 3) arrays."""
    values = ccc(pred, target)
    result = {name: float(v) for name, v in zip(DIMENSIONS, values)}
    result["mean"] = float(values.mean())
    return result


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: row = target class, column = predicted class."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(target, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return confusion


def confusion_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and UAR of (..., K, K) confusion matrices (row = target, column = predicted;
    counts, or the weighted counts of a bootstrap replicate), vectorised over the leading axes:
    macro-F1 over the classes that occur in the targets or predictions, UAR over those in the targets."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    support, predicted = confusion.sum(-1), confusion.sum(-2)
    zeros = np.zeros_like(true_positive)
    recall = np.divide(true_positive, support, out=zeros.copy(), where=support > 0)
    precision = np.divide(true_positive, predicted, out=zeros.copy(), where=predicted > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=zeros.copy(), where=total > 0)
    seen, present = (support > 0) | (predicted > 0), support > 0
    return {
        "accuracy": true_positive.sum(-1) / np.maximum(support.sum(-1), 1),
        "macro_f1": (f1 * seen).sum(-1) / np.maximum(seen.sum(-1), 1),
        "uar": (recall * present).sum(-1) / np.maximum(present.sum(-1), 1),
    }


def region_metrics(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 (over classes that occur in the targets or predictions) and
    unweighted average recall (over classes that occur in the targets)."""
    scores = confusion_scores(confusion_matrix(pred, target, num_classes))
    return {name: float(value) for name, value in scores.items()}
