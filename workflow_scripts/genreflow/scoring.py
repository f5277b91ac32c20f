"""Scoring shared by every stage: labels from `dataset.genres`, the examples of a split,
classification metrics, track-level probabilities, scores and the predictions tables.

Labels are positions in the run's `dataset.genres` (any genre set, not only GTZAN's ten),
given by `genre_labels` everywhere. Track scores average the class probabilities of a
track's segments; without segments a track is one example and both levels agree.

NumPy and pandas only: summaries and plots import this without TensorFlow. The metrics are
computed here, not by scikit-learn, so that the reported numbers depend on code in this
repository; the tests check them against scikit-learn. Undefined ratios (a class never
predicted, or never present) count as 0, like sklearn's zero_division=0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.names import SPLITS

# Keras' sparse categorical cross-entropy clips probabilities to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7


def genre_labels(genres_of_examples: Sequence[str], genres: Sequence[str], source: str) -> np.ndarray:
    """Genre names -> int32 labels, the position of each name in `genres` (dataset.genres).

    `source` names the file the names come from, for the error a name outside the run's
    genres gives (a corpus or index of another run).
    """
    position = {genre: label for label, genre in enumerate(genres)}
    unknown = sorted(set(genres_of_examples) - position.keys())
    if unknown:
        raise ValueError(
            f"{source}: genre(s) {unknown} are not in dataset.genres {list(genres)}; "
            "add them there or use the files of this run"
        )
    return np.array([position[genre] for genre in genres_of_examples], dtype=np.int32)


def split_rows(clips: np.ndarray, manifests: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Row indices of each split in a cache (or index), by the manifest's clips."""
    rows = {}
    for split in SPLITS:
        members = set(pd.read_csv(manifests[split], dtype={"clip": str})["clip"])
        rows[split] = np.flatnonzero(np.isin(clips, list(members)))
        if rows[split].size == 0:
            raise ValueError(f"no examples of split {split!r} ({manifests[split]}) in the cache")
    return rows


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy of the true classes, clipped as Keras clips it (its val_loss)."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0 - EPSILON)))) if len(labels) else 0.0


def track_probabilities(clips: np.ndarray, probabilities: np.ndarray):
    """Average the class probabilities of each track's segments: (tracks, mean probs)."""
    frame = pd.DataFrame(probabilities)
    frame.insert(0, "clip", clips)
    means = frame.groupby("clip", sort=True).mean()
    return means.index.to_numpy(), means.to_numpy()


def track_labels(clips: np.ndarray, labels: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """The label of each of `tracks`, from its segments' labels (which must agree)."""
    by_track = pd.Series(labels, index=clips).groupby(level=0).agg(_single_value)
    return by_track.loc[tracks].to_numpy()


def _single_value(values: pd.Series):
    if values.nunique() != 1:
        raise ValueError(f"segments of one track disagree on its genre: {sorted(set(values))}")
    return values.iloc[0]


def score(
    clips: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, genres: Sequence[str]
) -> dict:
    """Metrics (and the cross-entropy `loss`) of the examples, and of whole tracks."""
    clips, labels = np.asarray(clips), np.asarray(labels)
    examples = classification_metrics(labels, probabilities.argmax(1), genres)
    result = {"examples": {**examples, "loss": cross_entropy(labels, probabilities)}}
    if len(np.unique(clips)) < len(clips):
        tracks, track_probs = track_probabilities(clips, probabilities)
        truth = track_labels(clips, labels, tracks)
        result["tracks"] = {
            **classification_metrics(truth, track_probs.argmax(1), genres),
            "loss": cross_entropy(truth, track_probs),
        }
    else:
        result["tracks"] = result["examples"]
    return result


def predictions_frame(split, clips, segments, labels, probabilities, genres) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "split": split,
            "clip": clips,
            "segment": segments,
            "true": [genres[i] for i in labels],
            "predicted": [genres[i] for i in probabilities.argmax(1)],
        }
    )
    for i, genre in enumerate(genres):
        frame[f"p_{genre}"] = np.round(probabilities[:, i], 6)
    return frame


def track_predictions(predictions: pd.DataFrame, genres: Sequence[str]) -> pd.DataFrame:
    """Track-level rows of a predictions table: each track's segment probabilities
    averaged (`track_probabilities`) and the genre they pick.

    Works per seed and split when the table has those columns (as predictions.csv does).
    """
    columns = [f"p_{genre}" for genre in genres]
    keys = [key for key in ("seed", "split") if key in predictions.columns]
    groups = predictions.groupby(keys, sort=True) if keys else [((), predictions)]
    frames = []
    for key, group in groups:
        tracks, probabilities = track_probabilities(
            group["clip"].to_numpy(), group[columns].to_numpy(dtype=np.float64)
        )
        truth = group.groupby("clip")["true"].agg(_single_value)
        frame = pd.DataFrame({"clip": tracks, "true": truth.loc[tracks].to_numpy()})
        frame["predicted"] = [genres[i] for i in probabilities.argmax(axis=1)]
        frame[columns] = probabilities
        for name, value in zip(keys, key if isinstance(key, tuple) else (key,)):
            frame.insert(keys.index(name), name, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- metrics
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
