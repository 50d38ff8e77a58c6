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


def region_metrics(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 (over classes that occur in the targets or predictions) and
    unweighted average recall (over classes that occur in the targets)."""
    confusion = confusion_matrix(pred, target, num_classes)
    true_positive = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(1), confusion.sum(0)
    recall = np.divide(true_positive, support, out=np.zeros(num_classes), where=support > 0)
    precision = np.divide(true_positive, predicted, out=np.zeros(num_classes), where=predicted > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(num_classes), where=total > 0)
    seen = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(true_positive.sum() / max(len(target), 1)),
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "uar": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
    }
