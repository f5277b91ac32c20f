"""Calibrated probabilities of a final model (`calibrate_final`): a temperature fitted on
the validation split, and how well the probabilities match the accuracy on the test split
before and after (expected calibration error, Brier score, a reliability diagram).

A network trained to a low cross-entropy on few examples is usually over-confident: among
tracks it calls "blues" with probability 0.9, far fewer than 90% are blues. Temperature
scaling (Guo et al., 2017) divides the log-probabilities by one number T and renormalises,
softmax(log p / T): T > 1 softens them, T < 1 sharpens them, and the ranking of the genres,
so the predicted genre and every accuracy, stays the same. T minimises the negative
log-likelihood of the **validation** tracks (the test split is only scored), per seed,
since each seed's network is calibrated on its own.

Everything is at the track level, as the headline scores are: a track's probabilities are
the mean of its segments' (`genreflow.scoring.track_predictions`), which is also what a
prediction of a file of several windows averages before its temperature is applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import write_json

# predictions.csv rounds probabilities to 1e-6: a rounded 0 is read as half a step, so that
# its logarithm is finite and a temperature cannot turn it into anything but the smallest.
PROBABILITY_FLOOR = 5e-7
# log T is searched in [log 0.05, log 20]; a fit that ends on a bound (a validation split
# the model gets all right pushes T to 0) is reported as such.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def temperature_scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row; T = 1 returns the probabilities (floored and
    renormalised)."""
    logits = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR))
    logits = logits / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Mean -log p(true genre) of the rows (floored like `temperature_scaled`)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    chosen = probabilities[np.arange(len(probabilities)), np.asarray(labels, dtype=int)]
    return float(-np.mean(np.log(np.maximum(chosen, PROBABILITY_FLOOR))))


def fit_temperature(probabilities: np.ndarray, labels: Sequence[int]) -> tuple[float, bool]:
    """(T minimising the negative log-likelihood of softmax(log p / T) on these rows, whether
    it ended on a bound of `TEMPERATURE_BOUNDS`). Searched on log T (scipy's bounded
    Brent method): the likelihood is smooth and unimodal in it."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        raise ValueError("no validation tracks to fit a temperature on")
    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(temperature_scaled(probabilities, np.exp(log_t)), labels),
        bounds=(low, high), method="bounded", options={"xatol": 1e-7},
    )
    at_bound = bool(min(found.x - low, high - found.x) < 1e-3)
    return float(np.exp(found.x)), at_bound


def reliability_bins(probabilities: np.ndarray, labels: Sequence[int], bins: int) -> pd.DataFrame:
    """Rows by confidence (the top probability) in `bins` equal-width bins of [0, 1] (the
    last one closed): each bin's count, mean confidence and accuracy (NaN when empty)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels, dtype=int)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": int(inside.sum()),
                     "confidence": float(confidence[inside].mean()) if inside.any() else np.nan,
                     "accuracy": float(correct[inside].mean()) if inside.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int], bins: int) -> float:
    """Sum over bins of (share of rows in the bin) x |accuracy - mean confidence| (Naeini
    et al., 2015; `reliability_bins`)."""
    table = reliability_bins(probabilities, labels, bins)
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum()
                 / table["count"].sum())


def brier_score(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Mean over rows of the squared distance between the probabilities and the one-hot
    true genre (0 is perfect, 2 the worst)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(probabilities)), np.asarray(labels, dtype=int)] = 1.0
    return float(np.mean(((probabilities - onehot) ** 2).sum(axis=1)))


def split_tracks(predictions: pd.DataFrame, genres: Sequence[str], seed: int,
                 split: str) -> tuple[np.ndarray, np.ndarray]:
    """(track probabilities, labels) of one seed's split of a predictions.csv."""
    from genreflow.scoring import track_predictions

    rows = predictions[(predictions["seed"] == seed) & (predictions["split"] == split)]
    tracks = track_predictions(rows.drop(columns=["seed", "split"]), genres)
    labels = np.asarray([list(genres).index(genre) for genre in tracks["true"]])
    return tracks[[f"p_{genre}" for genre in genres]].to_numpy(dtype=np.float64), labels


def _scores(probabilities: np.ndarray, labels: np.ndarray, temperature: float, bins: int) -> dict:
    scaled = temperature_scaled(probabilities, temperature)
    before = temperature_scaled(probabilities, 1.0)
    return {
        "n_tracks": int(len(labels)),
        "accuracy": float(np.mean(before.argmax(axis=1) == labels)),
        "ece_before": expected_calibration_error(before, labels, bins),
        "ece_after": expected_calibration_error(scaled, labels, bins),
        "brier_before": brier_score(before, labels),
        "brier_after": brier_score(scaled, labels),
        "nll_before": negative_log_likelihood(before, labels),
        "nll_after": negative_log_likelihood(scaled, labels),
    }


def calibrate_seed(predictions: pd.DataFrame, genres: Sequence[str], seed: int, bins: int) -> dict:
    """One seed's temperature, fitted on its validation tracks only, and its validation
    and test scores before and after."""
    valid = split_tracks(predictions, genres, seed, "valid")
    temperature, at_bound = fit_temperature(*valid)
    return {
        "seed": int(seed),
        "temperature": temperature,
        "at_bound": at_bound,
        "valid": _scores(*valid, temperature, bins),
        "test": _scores(*split_tracks(predictions, genres, seed, "test"), temperature, bins),
    }


def calibration_record(predictions: pd.DataFrame, genres: Sequence[str], bins: int,
                       about: Mapping) -> dict:
    """calibration.json: every seed's temperature and scores, and their means over seeds."""
    seeds = sorted(int(seed) for seed in predictions["seed"].unique())
    per_seed = [calibrate_seed(predictions, genres, seed, bins) for seed in seeds]
    mean = {f"test_{key}": float(np.mean([record["test"][key] for record in per_seed]))
            for key in ("ece_before", "ece_after", "brier_before", "brier_after",
                        "nll_before", "nll_after", "accuracy")}
    return {
        **{key: about[key] for key in ("backbone", "feature", "round") if key in about},
        "method": "temperature scaling: softmax(log p / T), T minimising the negative "
                  "log-likelihood of the validation tracks",
        "fitted_on": "valid",
        "level": "tracks",
        "bins": int(bins),
        "temperatures": {str(record["seed"]): record["temperature"] for record in per_seed},
        **mean,
        "per_seed": per_seed,
    }


# One job's entry point: a parameter per input, param and output of its rule
# (calibrate_final), passed by name from the thin script.
def calibrate_final(
    predictions_csv: str,
    genres: Sequence[str],
    bins: int,
    about: Mapping,
    notes: Sequence[str],
    out_calibration: str,
    out_reliability: str,
    log=print,
) -> None:
    """A final model's calibration.json (`calibration_record`) and its reliability diagram
    on the test tracks of every seed, before and after."""
    from genreflow.plots.calibration import plot_reliability

    predictions = pd.read_csv(predictions_csv, dtype={"clip": str})
    record = calibration_record(predictions, genres, bins, about)
    for seed_record in record["per_seed"]:
        test = seed_record["test"]
        log(f"seed {seed_record['seed']}: temperature {seed_record['temperature']:.3f} "
            f"(fitted on {seed_record['valid']['n_tracks']} validation tracks"
            f"{', AT ITS BOUND: the validation split cannot fix it' if seed_record['at_bound'] else ''}); "
            f"test ECE {test['ece_before']:.3f} -> {test['ece_after']:.3f}, Brier "
            f"{test['brier_before']:.3f} -> {test['brier_after']:.3f} ({test['n_tracks']} "
            f"tracks, {bins} bins)")
    seeds = record["per_seed"]
    pooled = {}
    for seed_record in seeds:
        probabilities, labels = split_tracks(predictions, genres, seed_record["seed"], "test")
        for name, temperature in (("before", 1.0), ("after", seed_record["temperature"])):
            scaled, known = pooled.setdefault(name, ([], []))
            scaled.append(temperature_scaled(probabilities, temperature))
            known.append(labels)
    tables = {name: reliability_bins(np.concatenate(scaled), np.concatenate(known), bins)
              for name, (scaled, known) in pooled.items()}
    write_json(out_calibration, record)
    plot_reliability(tables, record, notes, out_reliability)
