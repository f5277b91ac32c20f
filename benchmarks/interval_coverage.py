"""Do the 95% intervals over test tracks cover the true score 95% of the time?

Simulates test splits of 10 genres with 2, 3, 4, 5, 10, 15 and 30 tracks per genre, drawn from
simulated models whose confusion matrix is known, and counts how often the interval of
each test score holds the model's true score: accuracy, macro-F1, and the paired
difference of two correlated models. Side by side on the same resamples: the plain
stratified percentile interval genreflow printed before (`old`) and
`genreflow.intervals` now (`new`, n/a where its rule says so; coverage counted where it
prints a number).

The true score of a simulated model is its score on the population of tracks: with C the
confusion matrix (row g: the probabilities that a track of genre g is called each genre)
and equal genre counts, the expected confusion proportions are M = C / 10; accuracy is
the trace of M, and macro-F1 is the mean over genres of 2 M[g, g] / (row g + column g of M),
the macro-F1 of an infinite test split with these genre shares. A paired model b copies
a's prediction of a track with probability rho and otherwise draws its own from C_own, so
its population confusion is rho C + (1 - rho) C_own and the true difference is a's true
score minus b's.

    PYTHONPATH=workflow_scripts .venv/bin/python benchmarks/interval_coverage.py --sets 1000
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from genreflow import intervals
from genreflow.intervals import (
    Bootstrap,
    corrected_interval,
    paired_difference,
    score_intervals,
    stratified_resamples,
)

GENRES = 10
SIZES = (2, 3, 4, 5, 10, 15, 30)


def confusion(recalls, seed: int) -> np.ndarray:
    """Rows: a genre's recall on the diagonal; its errors spread over the other genres
    with Dirichlet(0.5) weights (fixed by `seed`), so some confusions dominate."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((GENRES, GENRES))
    for genre, recall in enumerate(recalls):
        others = [j for j in range(GENRES) if j != genre]
        matrix[genre, others] = (1 - recall) * rng.dirichlet(np.full(GENRES - 1, 0.5))
        matrix[genre, genre] = recall
    return matrix


def population_scores(matrix: np.ndarray) -> dict[str, float]:
    shares = matrix / GENRES
    hits = np.diag(shares)
    return {"accuracy": float(hits.sum()),
            "macro_f1": float(np.mean(2 * hits / (shares.sum(axis=1) + shares.sum(axis=0))))}


def model(name, low, high, seed):
    return name, confusion(np.linspace(low, high, GENRES), seed)


# (name, C) of single models; (name, C, C_own, rho) of pairs
SINGLE = [
    model("near chance (recall 0.02-0.20)", 0.02, 0.20, 5),
    model("mid (recall 0.35-0.95)", 0.35, 0.95, 1),
    model("high (recall 0.80-0.99)", 0.80, 0.99, 2),
    model("very high (recall 0.90-1.00)", 0.90, 1.00, 6),
    model("near perfect (recall 0.96-1.00)", 0.96, 1.00, 8),
]
PAIRS = [
    ("pair, mid, rho 0.6", SINGLE[1][1], confusion(np.linspace(0.30, 0.90, GENRES), 4), 0.6),
    ("pair, high, rho 0.8", SINGLE[2][1], confusion(np.linspace(0.75, 0.99, GENRES), 7), 0.8),
]


def draw(matrix, labels, rng) -> np.ndarray:
    """A prediction per track: genre g's tracks called j with probability matrix[g, j]."""
    cumulative = matrix.cumsum(axis=1)
    return np.minimum((rng.random(labels.size)[:, None] > cumulative[labels]).sum(axis=1),
                      GENRES - 1)


def distribution(labels, a, b, rows):
    """Each metric on every resample (and on the split itself): a's, or a's minus b's."""
    score = {}
    for name, these in (("whole", np.arange(labels.size)[None]), ("sampled", rows)):
        first = intervals._seed_means(labels, a[None], GENRES, these)
        if b is not None:
            second = intervals._seed_means(labels, b[None], GENRES, these)
            first = {metric: first[metric] - second[metric] for metric in first}
        score[name] = first
    return score


def printed_by_the_rule(labels, a, b) -> bool:
    smallest = np.bincount(labels).min()
    if smallest < intervals.MIN_TRACKS_PER_GENRE:
        return False
    right = int(np.sum(a == labels))
    return b is not None or min(right, labels.size - right) >= intervals.MIN_ERRORS


def cell(truth, per_genre, matrix, own, rho, sets, settings, rng):
    """Coverage and median width of both intervals over `sets` simulated test splits."""
    labels = np.repeat(np.arange(GENRES), per_genre)
    limits = (0.0, 1.0) if own is None else (-1.0, 1.0)
    hits = {(kind, metric): [] for kind in ("old", "new") for metric in truth}
    widths = {key: [] for key in hits}
    printed = []
    tail = (1 - settings.confidence) / 2
    for index in range(sets):
        a = draw(matrix, labels, rng)
        b = None if own is None else np.where(rng.random(labels.size) < rho, a,
                                              draw(own, labels, rng))
        seed = settings.seed + index
        rows = stratified_resamples(labels, settings.resamples, seed)
        scores = distribution(labels, a, b, rows)
        shown = printed_by_the_rule(labels, a, b)
        printed.append(shown)
        if index < 5:  # the same numbers as the tables' own code path
            check = (score_intervals(labels, a, GENRES, Bootstrap(settings.resamples,
                                                                   settings.confidence, seed))
                     if b is None else
                     paired_difference(labels, a, b, GENRES, Bootstrap(settings.resamples,
                                                                      settings.confidence, seed)))
        for metric, true in truth.items():
            estimate, sampled = scores["whole"][metric][0], scores["sampled"][metric]
            low, high = np.quantile(sampled, [tail, 1 - tail])
            hits["old", metric].append(low <= true <= high)
            widths["old", metric].append(high - low)
            low, high = corrected_interval(estimate, sampled, metric, settings.confidence,
                                           per_genre, labels.size, limits,
                                           1 if own is None else 2)
            if index < 5:
                expected = check[metric]
                assert (np.isnan(expected.low) if not shown else
                        np.isclose(expected.low, low) and np.isclose(expected.high, high)), \
                    (expected, low, high, shown)
            if shown:
                hits["new", metric].append(low <= true <= high)
                widths["new", metric].append(high - low)
    return ({key: (float(np.mean(v)) if v else float("nan")) for key, v in hits.items()},
            {key: (float(np.median(v)) if v else float("nan")) for key, v in widths.items()},
            float(np.mean(printed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=1000, help="simulated test splits per cell")
    parser.add_argument("--resamples", type=int, default=Bootstrap().resamples)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    settings = Bootstrap(args.resamples, 0.95, 0)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{platform.machine()}, Python {platform.python_version()}; {args.sets} simulated "
          f"test splits per cell, {args.resamples} resamples each; rule: n/a below "
          f"{intervals.MIN_TRACKS_PER_GENRE} tracks per genre, and for a single model below "
          f"{intervals.MIN_ERRORS} tracks wrong or right\n")
    print("| model | score | " + " | ".join(f"{size}/genre old / new" for size in sizes)
          + " |")
    print("|---|---|" + "---:|" * len(sizes))
    started = time.perf_counter()
    worst = {size: None for size in sizes}
    mid_widths = {}
    cases = [(name, matrix, None, None) for name, matrix in SINGLE] + PAIRS
    for name, matrix, own, rho in cases:
        truth = population_scores(matrix)
        if own is not None:
            other = population_scores(rho * matrix + (1 - rho) * own)
            truth = {metric: truth[metric] - other[metric] for metric in truth}
        results = {}
        for size in sizes:
            rng = np.random.default_rng([size, len(name)])
            results[size] = cell(truth, size, matrix, own, rho, args.sets, settings, rng)
        if matrix is SINGLE[1][1] and own is None:
            mid_widths = {size: (results[size][1]["old", "accuracy"], results[size][1]["new", "accuracy"],
                                 results[size][1]["old", "macro_f1"], results[size][1]["new", "macro_f1"])
                          for size in sizes}
        for metric in ("accuracy", "macro_f1"):
            cells = []
            for size in sizes:
                coverage, width, shown = results[size]
                new = coverage["new", metric]
                if shown > 0:
                    worst[size] = new if worst[size] is None else min(worst[size], new)
                new_text = "n/a" if shown == 0 else (
                    f"{new:.3f}" + ("" if shown == 1 else f" ({shown:.0%} printed)"))
                cells.append(f"{coverage['old', metric]:.3f} / {new_text}")
            label = metric.replace("_", "-") + (" difference" if own is not None else "")
            print(f"| {name} (true {truth[metric]:+.3f}) | {label} | " + " | ".join(cells) + " |",
                  flush=True)
    print("\nlowest coverage of the new intervals where printed: " + ", ".join(
        f"{size}/genre " + ("n/a (never printed)" if value is None else f"{value:.3f}")
        for size, value in worst.items()))
    print(f"(Monte Carlo standard error of a coverage near 0.95: "
          f"{np.sqrt(0.95 * 0.05 / args.sets):.3f})")
    print("\nmedian width, mid model: " + "; ".join(
        f"{size}/genre accuracy {mid_widths[size][0]:.3f} -> {mid_widths[size][1]:.3f}, "
        f"macro-F1 {mid_widths[size][2]:.3f} -> {mid_widths[size][3]:.3f}" for size in sizes))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
