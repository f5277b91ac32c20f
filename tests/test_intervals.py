"""Bootstrap intervals over test tracks, checked against hand computations."""

import numpy as np
import pandas as pd
import pytest

from genreflow.intervals import (
    MIN_ERRORS,
    MIN_TRACKS_PER_GENRE,
    Bootstrap,
    _scores,
    bracket,
    na_note,
    paired_difference,
    score_intervals,
    stratified_resamples,
    tracks_of_test_split,
)
from genreflow.scoring import classification_metrics


def test_resamples_keep_every_genres_count():
    labels = np.array([0, 0, 0, 1, 1, 2])
    rows = stratified_resamples(labels, 500, seed=1)
    assert rows.shape == (500, 6)
    for row in rows:
        assert sorted(labels[row]) == sorted(labels)  # stratified: counts never change
    assert len({tuple(row) for row in rows}) > 50  # and the draws do vary


def _exact_bootstrap(right, n_per_genre):
    """Every outcome of a stratified resample of two genres of n tracks, where genre g has
    right[g] tracks called g and the rest called the other genre, with its probability:
    genre g's resample holds K_g ~ Binomial(n, right[g] / n) right tracks, independently.
    Returns (probabilities, accuracies, macro-F1s), by hand from the counts."""
    from scipy.stats import binom

    n = n_per_genre
    probabilities, accuracies, macro_f1s = [], [], []
    for k0 in range(n + 1):
        for k1 in range(n + 1):
            probabilities.append(binom.pmf(k0, n, right[0] / n) * binom.pmf(k1, n, right[1] / n))
            accuracies.append((k0 + k1) / (2 * n))
            # genre 0: k0 true positives, n - k0 missed, n - k1 of genre 1 called 0
            f1_0 = 2 * k0 / (2 * k0 + (n - k0) + (n - k1))
            f1_1 = 2 * k1 / (2 * k1 + (n - k1) + (n - k0))
            macro_f1s.append((f1_0 + f1_1) / 2)
    return np.array(probabilities), np.array(accuracies), np.array(macro_f1s)


def _exact_quantile(values, probabilities, level):
    """The smallest outcome whose cumulative probability reaches `level`."""
    atoms, where = np.unique(np.round(values, 12), return_inverse=True)
    cumulative = np.cumsum(np.bincount(where, weights=probabilities))
    return atoms[np.searchsorted(cumulative, level - 1e-12)]


def test_a_small_example_against_the_exact_bootstrap():
    """Two genres of 10 test tracks; genre 0 has 4 right, genre 1 has 6. The interval is
    computed here from the exact distribution of a stratified resample (enumerated): its
    2.5% and 97.5% quantiles, the deviations widened by sqrt(10/9), each end moved out by
    half a track's step (0.5/20 for accuracy, 1/20 for macro-F1). 20000 resamples estimate
    a quantile level to about 0.001, so each end must lie between the exact ends at levels
    0.005 to either side (for accuracy, no outcome lies in between: the same number)."""
    labels = np.array([0] * 10 + [1] * 10)
    predicted = np.array([0] * 4 + [1] * 6 + [1] * 6 + [0] * 4)
    intervals = score_intervals(labels, predicted, 2, Bootstrap(resamples=20000, seed=0))
    probabilities, accuracies, macro_f1s = _exact_bootstrap((4, 6), 10)
    assert probabilities.sum() == pytest.approx(1.0)
    widen = np.sqrt(10 / 9)
    # on the split itself: accuracy 10/20; F1 2*4/(8+6+4) for genre 0, 12/(12+4+6) for 1
    estimates = {"accuracy": 0.5, "macro_f1": (8 / 18 + 12 / 22) / 2}
    for metric, values, step in (("accuracy", accuracies, 0.5 / 20),
                                 ("macro_f1", macro_f1s, 1.0 / 20)):
        estimate = estimates[metric]
        got = intervals[metric]
        assert got.estimate == pytest.approx(estimate) and got.missing == ""
        for bound, level, sign in ((got.low, 0.025, -1), (got.high, 0.975, +1)):
            ends = [estimate + widen * (_exact_quantile(values, probabilities, level + d) - estimate)
                    + sign * step for d in (-0.005, 0.005)]
            assert ends[0] - 1e-12 <= bound <= ends[1] + 1e-12, (metric, level, ends, bound)
    # by hand for accuracy: K0 + K1 right tracks, mean 10 and sd sqrt(2 * 10 * 0.4 * 0.6)
    # = 2.19, so 6 and 14 of 20 at 2.5% and 97.5% (the enumeration above agrees)
    assert (intervals["accuracy"].low, intervals["accuracy"].high) == pytest.approx(
        (0.5 - widen * 0.2 - 0.025, 0.5 + widen * 0.2 + 0.025))


def test_too_few_tracks_per_genre_or_too_few_errors_give_no_interval_and_say_why():
    labels, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    intervals = score_intervals(labels, predicted, 2)
    for interval in intervals.values():
        assert np.isnan(interval.low) and np.isnan(interval.high)
        assert interval.missing == f"a genre has 2 test tracks (fewer than {MIN_TRACKS_PER_GENRE})"
    assert intervals["accuracy"].estimate == pytest.approx(0.75)
    assert intervals["macro_f1"].estimate == pytest.approx(11 / 15)
    labels = np.repeat([0, 1], 15)
    almost = labels.copy()
    almost[[0, 20]] = 1 - almost[[0, 20]]  # two tracks wrong
    interval = score_intervals(labels, almost, 2)["accuracy"]
    assert np.isnan(interval.low) and interval.estimate == pytest.approx(28 / 30)
    assert interval.missing == f"a model has 2 test tracks wrong (fewer than {MIN_ERRORS})"
    almost[1] = 1  # three
    assert not np.isnan(score_intervals(labels, almost, 2)["accuracy"].low)
    assert "[n/a]" == bracket(interval.low, interval.high)
    note = na_note([interval.missing, "", float("nan"), interval.missing])
    assert note == (f"No interval (n/a) where a model has 2 test tracks wrong (fewer than "
                    f"{MIN_ERRORS}): there no interval held 93% coverage in simulation.\n")
    assert na_note(["", float("nan")]) == ""
    described = Bootstrap().describe()
    assert "not training seeds and not artists" in described
    assert f"fewer than {MIN_TRACKS_PER_GENRE} test tracks" in described


def test_stratification_removes_the_spread_a_plain_bootstrap_would_show():
    """Genre 0 always right, genre 1 always wrong: every stratified resample scores 0.5,
    so the interval is the continuity correction alone, half a track either side."""
    labels = np.array([0] * 10 + [1] * 10)
    predicted = np.zeros(20, dtype=int)
    interval = score_intervals(labels, predicted, 2)["accuracy"]
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((0.5, 0.475, 0.525))


def test_scores_agree_with_classification_metrics_and_average_over_seeds():
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat(np.arange(6), 15))
    seeds = np.stack([np.where(rng.random(90) < 0.6, labels, rng.integers(0, 6, 90)) for _ in range(3)])
    genres = list("abcdef")
    intervals = score_intervals(labels, seeds, 6)
    expected = [classification_metrics(labels, row, genres) for row in seeds]
    assert intervals["macro_f1"].estimate == pytest.approx(np.mean([m["macro_f1"] for m in expected]))
    assert intervals["accuracy"].estimate == pytest.approx(np.mean([m["accuracy"] for m in expected]))
    # every resample's score is classification_metrics' on that resample
    rows = stratified_resamples(labels, 5, 9)
    sampled = _scores(labels, seeds, rows, 6)
    for r, row in enumerate(rows):
        for s in range(3):
            metrics = classification_metrics(labels[row], seeds[s][row], genres)
            assert sampled["macro_f1"][r, s] == pytest.approx(metrics["macro_f1"])
    low, high = intervals["macro_f1"].low, intervals["macro_f1"].high
    assert low < intervals["macro_f1"].estimate < high and high - low > 0.1  # 90 tracks: wide
    assert score_intervals(labels, seeds, 6) == intervals  # seeded: reproducible


def test_paired_differences():
    labels = np.array([0] * 20 + [1] * 20)
    good = labels.copy()
    poor = labels.copy()
    poor[:8] = 1  # eight genre-0 tracks wrong
    same = paired_difference(labels, good, good, 2)
    # identical models: no resample moves the difference, only half a track's step of each
    # of the two scores does
    assert (same["accuracy"].estimate, same["accuracy"].low, same["accuracy"].high) == pytest.approx(
        (0.0, -1 / 40, 1 / 40))
    assert (same["macro_f1"].low, same["macro_f1"].high) == pytest.approx((-2 / 40, 2 / 40))
    better = paired_difference(labels, good, poor, 2)["macro_f1"]
    expected = 1.0 - classification_metrics(labels, poor, ["a", "b"])["macro_f1"]
    assert better.estimate == pytest.approx(expected)
    assert 0 < better.low <= better.estimate <= better.high
    # one track apart: the test split cannot tell them apart
    close = good.copy()
    close[0] = 1
    tie = paired_difference(labels, good, close, 2)["macro_f1"]
    assert tie.low <= 0 <= tie.high
    assert paired_difference(labels[::7], good[::7], poor[::7], 2)["accuracy"].missing == (
        f"a genre has 3 test tracks (fewer than {MIN_TRACKS_PER_GENRE})")


def test_test_tracks_of_a_predictions_table_average_segments_per_seed():
    frame = pd.DataFrame({
        "seed": [0, 0, 0, 1, 1, 1], "split": "test",
        "clip": ["a", "a", "b", "a", "a", "b"], "segment": [0, 1, 0, 0, 1, 0],
        "true": ["x", "x", "y", "x", "x", "y"], "predicted": ["x", "y", "y", "y", "y", "x"],
        "p_x": [0.9, 0.4, 0.2, 0.3, 0.4, 0.7], "p_y": [0.1, 0.6, 0.8, 0.7, 0.6, 0.3],
    })
    tracks = tracks_of_test_split(frame, ["x", "y"])
    assert list(tracks.clips) == ["a", "b"] and list(tracks.labels) == [0, 1]
    np.testing.assert_array_equal(tracks.predicted, [[0, 1], [1, 0]])


def test_a_genre_with_a_single_test_track_gives_no_interval():
    labels = np.array([0, 0, 1])
    intervals = score_intervals(labels, np.array([0, 1, 1]), 2)
    assert np.isnan(intervals["accuracy"].low) and np.isnan(intervals["macro_f1"].high)
    assert intervals["accuracy"].estimate == pytest.approx(2 / 3)
    assert intervals["accuracy"].missing.startswith("a genre has 1 test track (")
    assert bracket(intervals["accuracy"].low, intervals["accuracy"].high) == "[n/a]"
    assert bracket(-0.1234, 0.05, signed=True) == "[-0.123, +0.050]"
