"""Calibrated probabilities of final models: the temperature (fitted on validation only,
checked against a brute-force search), the expected calibration error and Brier score (on
hand examples), per seed and at the track level."""

import numpy as np
import pandas as pd
import pytest

from genreflow.evaluation.calibration import (
    brier_score,
    calibration_record,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    temperature_scaled,
)

GENRES = ["blues", "jazz", "metal"]


def overconfident(n, seed, sharpness=3.0):
    """Probabilities of a model that is right about 60% of the time but says 0.9 and more."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), labels] += 1.0
    p = np.exp(sharpness * logits)
    return p / p.sum(axis=1, keepdims=True), labels


# ------------------------------------------------------------------------- temperature
def test_the_temperature_minimises_the_validation_likelihood_like_a_brute_force_search():
    from scipy.special import log_softmax

    probabilities, labels = overconfident(200, seed=0)
    temperature, at_bound = fit_temperature(probabilities, labels)
    # an independent computation of the same likelihood, on a fine grid of T
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 40001))
    log_p = np.log(probabilities)
    nll = [-np.mean(log_softmax(log_p / t, axis=1)[np.arange(len(labels)), labels]) for t in grid]
    assert temperature == pytest.approx(grid[int(np.argmin(nll))], rel=1e-3)
    assert temperature > 2.0 and not at_bound  # an over-confident model is softened
    # calibrated, the likelihood can only improve
    assert negative_log_likelihood(temperature_scaled(probabilities, temperature), labels) < \
        negative_log_likelihood(probabilities, labels)


def test_a_temperature_never_changes_the_predicted_genre_and_one_changes_nothing():
    probabilities, _ = overconfident(50, seed=1)
    np.testing.assert_allclose(temperature_scaled(probabilities, 1.0), probabilities, atol=1e-12)
    for t in (0.3, 2.0, 7.0):
        scaled = temperature_scaled(probabilities, t)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == probabilities.argmax(axis=1)).all()


def test_a_validation_split_the_model_gets_all_right_ends_on_the_bound():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    temperature, at_bound = fit_temperature(probabilities, [0, 1, 2])
    assert at_bound and temperature == pytest.approx(0.05, rel=1e-3)


# --------------------------------------------------------------------- ECE and Brier
HAND = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
HAND_LABELS = [0, 1, 0, 1]  # right, wrong, right, right


def test_expected_calibration_error_on_a_hand_example():
    # 5 bins: [0.6, 0.8) holds confidences 0.6 and 0.7 (both right): gap |1 - 0.65| = 0.35;
    # [0.8, 1] holds 0.9 (right) and 0.8 (wrong): gap |0.5 - 0.85| = 0.35; each half the rows
    assert expected_calibration_error(HAND, HAND_LABELS, 5) == pytest.approx(0.35)
    table = reliability_bins(HAND, HAND_LABELS, 5)
    assert list(table["count"]) == [0, 0, 0, 2, 2]
    assert table.loc[4, "accuracy"] == 0.5 and table.loc[4, "confidence"] == pytest.approx(0.85)
    # 2 bins: one bin of all rows, mean confidence 0.75, accuracy 0.75
    assert expected_calibration_error(HAND, HAND_LABELS, 2) == pytest.approx(0.0)
    # a confidence of exactly 1 is in the last bin, not past it
    assert list(reliability_bins(np.array([[1.0, 0.0]]), [0], 4)["count"]) == [0, 0, 0, 1]


def test_brier_score_on_a_hand_example():
    # squared distances to one-hot: 0.02, 1.28, 0.32, 0.18
    assert brier_score(HAND, HAND_LABELS) == pytest.approx(1.8 / 4)
    assert brier_score(np.eye(3), [0, 1, 2]) == 0.0


def predictions_frame(valid, test, seed=0):
    rows = []
    for split, (probabilities, labels) in (("valid", valid), ("test", test)):
        for i, (p, label) in enumerate(zip(probabilities, labels)):
            rows.append({"seed": seed, "split": split, "clip": f"{split}.{i:05d}", "segment": 0,
                         "true": GENRES[label], "predicted": GENRES[int(np.argmax(p))],
                         **{f"p_{g}": round(float(v), 6) for g, v in zip(GENRES, p)}})
    return pd.DataFrame(rows)


def test_the_temperature_is_fitted_on_validation_only():
    """Change every test label and probability: the temperature stays; change the
    validation split: it moves (so this test can fail)."""
    valid, test = overconfident(60, seed=2), overconfident(60, seed=3)
    record = calibration_record(predictions_frame(valid, test), GENRES, 10, {})
    other_test = (overconfident(60, seed=4, sharpness=0.5)[0], (test[1] + 1) % 3)
    changed = calibration_record(predictions_frame(valid, other_test), GENRES, 10, {})
    assert changed["temperatures"] == record["temperatures"]
    assert changed["test_ece_before"] != pytest.approx(record["test_ece_before"])
    moved = calibration_record(predictions_frame(overconfident(60, seed=5, sharpness=1.0), test),
                               GENRES, 10, {})
    assert moved["temperatures"]["0"] != pytest.approx(record["temperatures"]["0"], rel=1e-2)
    seed = record["per_seed"][0]
    assert seed["valid"]["n_tracks"] == 60 and seed["test"]["n_tracks"] == 60
    assert record["fitted_on"] == "valid" and record["bins"] == 10
    # on the validation split it was fitted on, the likelihood is no worse than before
    assert seed["valid"]["nll_after"] <= seed["valid"]["nll_before"]


def test_calibration_is_per_seed_and_at_the_track_level():
    """Two seeds get a temperature each; segments of a track are averaged first."""
    valid, test = overconfident(40, seed=6), overconfident(40, seed=7)
    frame = pd.concat([predictions_frame(valid, test, seed=0),
                       predictions_frame(overconfident(40, seed=8, sharpness=1.0), test, seed=1)])
    record = calibration_record(frame, GENRES, 10, {"backbone": "vgg16"})
    assert set(record["temperatures"]) == {"0", "1"} and record["backbone"] == "vgg16"
    assert record["temperatures"]["0"] != pytest.approx(record["temperatures"]["1"], rel=1e-2)
    # the same tracks cut in two identical segments each: the same temperatures
    doubled = pd.concat([frame, frame.assign(segment=1)])
    assert calibration_record(doubled, GENRES, 10, {})["temperatures"] == pytest.approx(
        record["temperatures"])
