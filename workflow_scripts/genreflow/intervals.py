"""How much a test score would move with another test sample: stratified bootstrap
intervals over test tracks, and paired intervals of the difference between two models.

With 150 test tracks (GTZAN) or 20 (the demo) a score moves by several points from the
sample alone, which the spread over training seeds does not show. Each resample draws, for
every genre, as many of that genre's test tracks as it has, with replacement (so every
resample keeps the genre counts of the test split and no class ever vanishes), and scores
the models again on it; the interval is the percentile interval of those scores. Two models
compared on the same resamples give the interval of their difference ("paired"): when it
holds 0, the test split cannot tell them apart.

scipy.stats.bootstrap has no strata, hence the resampling here; the scores of a resample
are computed for all resamples at once from their confusion matrices, with the same
definitions as `genreflow.metrics.classification_metrics` (a test checks the agreement).
With several training seeds, a model's predictions are one row per seed and its score on
a resample is the mean over its seeds, as in the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS = ("macro_f1", "accuracy")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float



@dataclass(frozen=True)
class Bootstrap:
    """The settings of the config's `bootstrap` block."""

    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_config(cls, block) -> "Bootstrap":
        return cls(int(block["resamples"]), float(block["confidence"]), int(block["seed"]))

    def describe(self) -> str:
        return (f"{self.confidence:.0%} stratified bootstrap interval over test tracks "
                f"({self.resamples} resamples, seed {self.seed}; n/a when a genre has a "
                "single test track)")


def bracket(low: float, high: float, signed: bool = False) -> str:
    """An interval as the tables print it: [low, high], or [n/a]."""
    if pd.isna(low) or pd.isna(high):
        return "[n/a]"
    sign = "+" if signed else ""
    return f"[{low:{sign}.3f}, {high:{sign}.3f}]"


def stratified_resamples(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices into `labels`: each row draws every class's examples with
    replacement, as many as the class has."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rows = np.empty((resamples, labels.size), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rows[:, members] = rng.choice(members, size=(resamples, members.size), replace=True)
    return rows


def _scores(labels: np.ndarray, predictions: np.ndarray, rows: np.ndarray, n_classes: int) -> dict:
    """Macro-F1 and accuracy of every (resample, seed): arrays of shape (resamples, seeds)."""
    resamples, seeds = rows.shape[0], predictions.shape[0]
    true = labels[rows]  # (R, n)
    predicted = predictions[:, rows]  # (S, R, n)
    cell = (np.arange(seeds)[:, None, None] * resamples + np.arange(resamples)[None, :, None]) * (
        n_classes * n_classes
    ) + true[None] * n_classes + predicted
    matrices = np.bincount(cell.ravel(), minlength=seeds * resamples * n_classes**2)
    matrices = matrices.reshape(seeds, resamples, n_classes, n_classes).astype(np.float64)
    hits = np.diagonal(matrices, axis1=2, axis2=3)
    predicted_totals, supports = matrices.sum(axis=2), matrices.sum(axis=3)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_totals > 0, hits / predicted_totals, 0.0)
        recall = np.where(supports > 0, hits / supports, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "macro_f1": f1.mean(axis=2).T,
        "accuracy": (hits.sum(axis=2) / labels.size).T,
    }


def _as_rows(predictions) -> np.ndarray:
    predictions = np.asarray(predictions, dtype=np.int64)
    return predictions[None] if predictions.ndim == 1 else predictions


def _interval(
    estimate: float, distribution: np.ndarray, confidence: float, labels: np.ndarray
) -> Interval:
    """The percentile interval, or NaN bounds when a genre has a single test track: every
    resample then repeats it, and the interval would claim a certainty there is none of."""
    if np.unique(labels, return_counts=True)[1].min() < 2:
        return Interval(float(estimate), float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(distribution, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def score_intervals(
    labels, predictions, n_classes: int, settings: Bootstrap = Bootstrap()
) -> dict[str, Interval]:
    """Macro-F1 and accuracy of `predictions` ((seeds, n) or (n,) class indices) against
    `labels` (n,), each with its bootstrap interval; the estimate is the mean over seeds on
    the test split itself."""
    labels, predictions = np.asarray(labels, dtype=np.int64), _as_rows(predictions)
    rows = stratified_resamples(labels, settings.resamples, settings.seed)
    whole = _scores(labels, predictions, np.arange(labels.size)[None], n_classes)
    sampled = _scores(labels, predictions, rows, n_classes)
    return {
        metric: _interval(whole[metric].mean(), sampled[metric].mean(axis=1),
                          settings.confidence, labels)
        for metric in METRICS
    }


def paired_difference(
    labels, predictions_a, predictions_b, n_classes: int, settings: Bootstrap = Bootstrap()
) -> dict[str, Interval]:
    """Score of model a minus score of model b on the same test tracks, with the interval
    of that difference over the same resamples (each model's score is its seeds' mean)."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions_a, predictions_b = _as_rows(predictions_a), _as_rows(predictions_b)
    rows = stratified_resamples(labels, settings.resamples, settings.seed)
    whole = np.arange(labels.size)[None]
    result = {}
    a_whole, b_whole = (_scores(labels, p, whole, n_classes) for p in (predictions_a, predictions_b))
    a_sampled, b_sampled = (_scores(labels, p, rows, n_classes) for p in (predictions_a, predictions_b))
    for metric in METRICS:
        estimate = a_whole[metric].mean() - b_whole[metric].mean()
        distribution = a_sampled[metric].mean(axis=1) - b_sampled[metric].mean(axis=1)
        result[metric] = _interval(estimate, distribution, settings.confidence, labels)
    return result


@dataclass(frozen=True)
class TrackPredictions:
    """A model's predicted class per test track, one row per training seed, and the
    tracks' true classes; tracks in clip order."""

    clips: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray  # (seeds, tracks)

    def absent(self, genres: Sequence[str]) -> list[str]:
        """Genres without a test track, which a macro average still counts with F1 0."""
        present = set(self.labels.tolist())
        return [genre for i, genre in enumerate(genres) if i not in present]


def absent_note(absent: Sequence[str], genres: Sequence[str]) -> str:
    """What a table over a test split without some genres must say."""
    if not absent:
        return ""
    return (f"**Macro-F1 averages over all {len(genres)} genres of dataset.genres, but "
            f"{', '.join(absent)} had no test track (F1 0 there).**\n")


def tracks_of_test_split(predictions: pd.DataFrame, genres: Sequence[str]) -> TrackPredictions:
    """The test split of a predictions.csv (screening, final or segments; one or several
    seeds) at the track level: segment probabilities averaged per track."""
    from genreflow.scoring import genre_labels, track_predictions

    test = predictions[predictions["split"] == "test"]
    tracks = track_predictions(test, genres)
    seeds = sorted(tracks["seed"].unique()) if "seed" in tracks.columns else [None]
    rows, clips, truth = [], None, None
    for seed in seeds:
        frame = tracks if seed is None else tracks[tracks["seed"] == seed]
        frame = frame.sort_values("clip", kind="mergesort")
        if clips is None:
            clips, truth = frame["clip"].to_numpy(), frame["true"].to_numpy()
        elif not np.array_equal(clips, frame["clip"].to_numpy()):
            raise ValueError(f"seed {seed} was tested on other tracks than seed {seeds[0]}")
        rows.append(genre_labels(frame["predicted"], genres, "predictions"))
    return TrackPredictions(clips, genre_labels(truth, genres, "predictions"), np.stack(rows))


def same_tracks(a: TrackPredictions, b: TrackPredictions, what: str) -> None:
    if not np.array_equal(a.clips, b.clips):
        raise ValueError(f"{what}: the two models were tested on different tracks")
