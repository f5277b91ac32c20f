"""Bootstrap intervals over test tracks, checked against hand computations."""

import numpy as np
import pandas as pd
import pytest

from genreflow.intervals import (
    Bootstrap,
    _scores,
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


def test_a_hand_computed_example():
    """Two genres of two test tracks. Genre 0: one right, one called genre 1; genre 1: both
    right. A resample draws genre 0's two tracks with replacement: k of them right, with
    P(k = 0, 1, 2) = 1/4, 1/2, 1/4, and genre 1's tracks are always right. By hand:
    accuracy (2 + k) / 4 = 0.5, 0.75, 1; macro-F1 = 1/3 (k = 0: F1 0 and 2/3),
    (2/3 + 4/5) / 2 = 11/15 (k = 1), 1 (k = 2). So the 95% intervals are [0.5, 1] and
    [1/3, 1], and the estimates those of the test split itself: 0.75 and 11/15."""
    labels, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    settings = Bootstrap(resamples=4000, confidence=0.95, seed=0)
    intervals = score_intervals(labels, predicted, 2, settings)
    assert intervals["accuracy"].estimate == pytest.approx(0.75)
    assert intervals["macro_f1"].estimate == pytest.approx(11 / 15)
    assert (intervals["accuracy"].low, intervals["accuracy"].high) == pytest.approx((0.5, 1.0))
    assert (intervals["macro_f1"].low, intervals["macro_f1"].high) == pytest.approx((1 / 3, 1.0))
    rows = stratified_resamples(labels, 4000, 0)
    accuracy = _scores(labels, predicted[None], rows, 2)["accuracy"][:, 0]
    shares = [np.mean(np.isclose(accuracy, value)) for value in (0.5, 0.75, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)


def test_stratification_removes_the_spread_a_plain_bootstrap_would_show():
    """Genre 0 always right, genre 1 always wrong: every stratified resample scores 0.5."""
    labels = np.array([0] * 10 + [1] * 10)
    predicted = np.zeros(20, dtype=int)
    interval = score_intervals(labels, predicted, 2)["accuracy"]
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)


def test_scores_agree_with_classification_metrics_and_average_over_seeds():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 90)
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
    same = paired_difference(labels, good, good, 2)["macro_f1"]
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_difference(labels, good, poor, 2)["macro_f1"]
    expected = 1.0 - classification_metrics(labels, poor, ["a", "b"])["macro_f1"]
    assert better.estimate == pytest.approx(expected)
    assert 0 < better.low <= better.estimate <= better.high
    # one track apart: the test split cannot tell them apart
    close = good.copy()
    close[0] = 1
    tie = paired_difference(labels, good, close, 2)["macro_f1"]
    assert tie.low <= 0 <= tie.high


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
    from genreflow.intervals import bracket

    assert bracket(intervals["accuracy"].low, intervals["accuracy"].high) == "[n/a]"
    assert bracket(-0.1234, 0.05, signed=True) == "[-0.123, +0.050]"
