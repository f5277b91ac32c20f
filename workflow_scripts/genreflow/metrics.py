"""Classification metrics computed by the project itself (NumPy only).

Kept free of scikit-learn so that the reported numbers depend on code in this
repository; the tests check them against scikit-learn. Undefined ratios (a class
never predicted, or never present) count as 0, like sklearn's zero_division=0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_labels(values, n: int, name: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-d array of integer class labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"{name} has labels outside 0..{n - 1}")
    return labels


def confusion_matrix(y_true, y_pred, n: int) -> np.ndarray:
    """(n, n) int64 counts; rows are true classes, columns predicted classes."""
    y_true = _as_labels(y_true, n, "y_true")
    y_pred = _as_labels(y_pred, n, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true has {y_true.size} labels but y_pred has {y_pred.size}"
        )
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Accuracy, macro F1 over all `labels` (the run's genres, in label order), per-class
    scores and the confusion matrix.

    Returns a JSON-serialisable dict: accuracy, macro_f1, n, per_class
    ({label: {precision, recall, f1, support}}), confusion_matrix (nested lists) and
    `absent`: the labels with no example, which the macro average still counts (with F1 0);
    make_splits stops a run before any split would lack a genre, so in a workflow run it is
    empty, and a table over a split that lacks one says so.
    """
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = _safe_ratio(true_positives, predicted)
    recall = _safe_ratio(true_positives, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    total = int(matrix.sum())
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        # Averaged over every class, not only those that occur, so that a class the
        # model never predicts costs it (sklearn's macro average with labels=all).
        "macro_f1": float(f1.mean()),
        "n": total,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "absent": [label for i, label in enumerate(labels) if support[i] == 0],
    }
