"""How much a test score would move with another test sample: stratified bootstrap
intervals over test tracks, and paired intervals of the difference between two models.

With 150 test tracks (GTZAN) or 20 (the demo) a score moves by several points from the
sample alone, which the spread over training seeds does not show. Each resample draws, for
every genre, as many of that genre's test tracks as it has, with replacement (so every
resample keeps the genre counts of the test split and no class ever vanishes), and scores
the models again on it. Two models compared on the same resamples give the interval of
their difference ("paired"): when it holds 0, the test split cannot tell them apart.

The plain percentile interval of those scores is too narrow on small test splits. A
resample of n from n tracks keeps (n - 1)/n of the variance, and the scores are discrete
(one track moves accuracy by 1/n): simulated, the plain 95% interval covered the true score
57-87% of the time with 2 test tracks per genre, 66-93% with 5 and, for two close models
of high accuracy, 84% with 10 (`benchmarks/interval_coverage.py`, BENCHMARKS.md). So the
percentile interval's two deviations from the estimate are widened by sqrt(n/(n - 1)), n
the smallest genre's number of test tracks (the small-sample correction of a resample), and
each end moves out by half of what one track can change (a continuity correction: 0.5/n for
accuracy, 1/n for macro-F1, where a track's prediction enters two genres' F1; twice that for
the difference of two models' scores, both of which a track moves). One method
for accuracy, macro-F1 and paired differences. Where the same simulation found it under
93% coverage even so (fewer than `MIN_TRACKS_PER_GENRE` test tracks in a genre; fewer than
`MIN_ERRORS` tracks wrong, or right, for a single model), the interval is n/a and
`Interval.missing` says why.

What an interval covers: the sampling of test tracks, the models fixed. Not the training
seeds (a model's score is the mean over its seeds, and those seeds are held fixed), and
not the artists: tracks are resampled as if independent, so tracks of one artist in the
test split make it too narrow.

scipy.stats.bootstrap has no strata, hence the resampling here; the scores of a resample
are computed for all resamples at once from their confusion matrices, with the same
definitions as `genreflow.scoring.classification_metrics` (a test checks the agreement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS = ("macro_f1", "accuracy")

# Below these counts the interval's simulated coverage fell under 93% for some simulated
# model (benchmarks/interval_coverage.py; the models and the table in BENCHMARKS.md).
MIN_TRACKS_PER_GENRE = 4
MIN_ERRORS = 3
# Half of what one track's prediction can change in a score of n tracks, times n.
HALF_STEP = {"accuracy": 0.5, "macro_f1": 1.0}


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    missing: str = ""  # why there is no interval (then low and high are NaN)


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
        return (
            f"{self.confidence:.0%} interval over test tracks: a bootstrap resampling them "
            f"within each genre ({self.resamples} resamples, seed {self.seed}), widened for "
            "small genres and for the step one track makes. It covers the sampling of test "
            "tracks only, not training seeds and not artists (tracks of one artist count as "
            f"independent). n/a where a genre has fewer than {MIN_TRACKS_PER_GENRE} test "
            f"tracks or a model has fewer than {MIN_ERRORS} test tracks wrong (or right): "
            "there, simulated, it did not hold 93% coverage (BENCHMARKS.md, interval "
            "coverage)"
        )


def bracket(low: float, high: float, signed: bool = False) -> str:
    """An interval as the tables print it: [low, high], or [n/a]."""
    if pd.isna(low) or pd.isna(high):
        return "[n/a]"
    sign = "+" if signed else ""
    return f"[{low:{sign}.3f}, {high:{sign}.3f}]"


def na_note(reasons) -> str:
    """The line a table with n/a brackets carries: each distinct reason once."""
    distinct = sorted({reason for reason in reasons if isinstance(reason, str) and reason})
    if not distinct:
        return ""
    return ("No interval (n/a) where " + "; where ".join(distinct) + ": there no interval "
            "held 93% coverage in simulation.\n")


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


def _seed_means(labels, predictions, n_classes: int, rows: np.ndarray) -> dict:
    """Each metric's mean over seeds on every row of `rows`: (rows,) arrays."""
    return {metric: values.mean(axis=1)
            for metric, values in _scores(labels, predictions, rows, n_classes).items()}


def corrected_interval(estimate: float, distribution: np.ndarray, metric: str,
                       confidence: float, smallest_genre: int, n_tracks: int,
                       limits: tuple[float, float], scores: int = 1) -> tuple[float, float]:
    """The percentile interval of `distribution`, its deviations from `estimate` widened by
    sqrt(m/(m - 1)) (m: the smallest genre's test tracks; a resample of m of m keeps
    (m - 1)/m of the variance, and the largest factor is the safe one when genres differ),
    each end then moved out by half of one track's step in each of the `scores` discrete
    scores it is made of (2 for a paired difference: a track moves both), and clipped to
    `limits`."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(distribution, [tail, 1.0 - tail])
    widen = np.sqrt(smallest_genre / (smallest_genre - 1))
    step = scores * HALF_STEP[metric] / n_tracks
    low = min(estimate + widen * (low - estimate), estimate) - step
    high = max(estimate + widen * (high - estimate), estimate) + step
    return float(max(low, limits[0])), float(min(high, limits[1]))


def _interval(estimate: float, distribution: np.ndarray, metric: str, confidence: float,
              labels: np.ndarray, limits: tuple[float, float], errors=None,
              scores: int = 1) -> Interval:
    """`corrected_interval`, or NaN bounds and the reason where its coverage was not
    measured to hold: a genre with fewer than MIN_TRACKS_PER_GENRE test tracks; for a
    single model, fewer than MIN_ERRORS tracks wrong or right (`errors`: the fewer)."""
    estimate = float(estimate)
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    if smallest < MIN_TRACKS_PER_GENRE:
        return _missing(estimate, f"a genre has {smallest} test track"
                        f"{'' if smallest == 1 else 's'} (fewer than {MIN_TRACKS_PER_GENRE})")
    if errors is not None and errors[1] < MIN_ERRORS:
        return _missing(estimate, f"a model has {errors[1]:g} test track"
                        f"{'' if errors[1] == 1 else 's'} {errors[0]} (fewer than {MIN_ERRORS})")
    low, high = corrected_interval(estimate, distribution, metric, confidence, smallest,
                                   labels.size, limits, scores)
    return Interval(estimate, low, high)


def _missing(estimate: float, why: str) -> Interval:
    return Interval(estimate, float("nan"), float("nan"), why)


def _fewer_of_wrong_and_right(labels, predictions) -> tuple[str, float]:
    """("wrong" or "right", count): the fewer of the two (mean over seeds)."""
    right = float(np.mean(np.sum(predictions == labels[None], axis=1)))
    wrong = labels.size - right
    return ("wrong", wrong) if wrong <= right else ("right", right)


def score_intervals(
    labels, predictions, n_classes: int, settings: Bootstrap = Bootstrap()
) -> dict[str, Interval]:
    """Macro-F1 and accuracy of `predictions` ((seeds, n) or (n,) class indices) against
    `labels` (n,), each with its interval (`_interval`); the estimate is the mean over
    seeds on the test split itself."""
    labels, predictions = np.asarray(labels, dtype=np.int64), _as_rows(predictions)
    rows = stratified_resamples(labels, settings.resamples, settings.seed)
    whole = _seed_means(labels, predictions, n_classes, np.arange(labels.size)[None])
    sampled = _seed_means(labels, predictions, n_classes, rows)
    errors = _fewer_of_wrong_and_right(labels, predictions)
    return {
        metric: _interval(whole[metric][0], sampled[metric], metric, settings.confidence,
                          labels, (0.0, 1.0), errors)
        for metric in METRICS
    }


def paired_difference(
    labels, predictions_a, predictions_b, n_classes: int, settings: Bootstrap = Bootstrap()
) -> dict[str, Interval]:
    """Score of model a minus score of model b on the same test tracks, with the interval
    of that difference over the same resamples (each model's score is its seeds' mean).
    Two models that agree on almost every track need no rule of their own: the continuity
    correction of both scores keeps [0, 0] from being printed for them (simulated: with half
    a step of one score only, two close models of high accuracy were covered 92.5% of the
    time with 15 test tracks per genre; BENCHMARKS.md)."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions_a, predictions_b = _as_rows(predictions_a), _as_rows(predictions_b)
    rows = stratified_resamples(labels, settings.resamples, settings.seed)
    difference = {}
    for name, these in (("whole", np.arange(labels.size)[None]), ("sampled", rows)):
        a, b = (_seed_means(labels, p, n_classes, these) for p in (predictions_a, predictions_b))
        difference[name] = {metric: a[metric] - b[metric] for metric in METRICS}
    return {
        metric: _interval(difference["whole"][metric][0], difference["sampled"][metric], metric,
                          settings.confidence, labels, (-1.0, 1.0), scores=2)
        for metric in METRICS
    }


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
