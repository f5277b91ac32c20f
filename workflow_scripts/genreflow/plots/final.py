"""Figures of the final models: training curves (the study's Figures 1 and 2), confusion
matrices, and validation and test macro-F1 of every model."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genreflow.io import read_json  # noqa: E402
from genreflow.plots.style import (  # noqa: E402
    CONFUSION_SIZE,
    CURVE_SIZE,
    TRAIN_COLOR,
    VALID_COLOR,
    house_style,
    new_figure,
    save_figure,
)


_CURVE_LABELS = {"accuracy": "accuracy", "loss": "loss (cross-entropy)"}


def _seed_groups(history: pd.DataFrame) -> list[tuple[object, pd.DataFrame]]:
    if "seed" not in history.columns:
        return [(None, history.sort_values("epoch"))]
    return [(seed, group.sort_values("epoch")) for seed, group in history.groupby("seed")]


def plot_curve(
    history: pd.DataFrame, metric: str, out_png: str, title: str, notes: Sequence[str] = ()
) -> None:
    """Training and validation `metric` per epoch (the study's Figures 1 and 2).

    One pair of lines per seed; a star marks the epoch whose weights were kept (lowest
    validation loss, as early stopping restores them).
    """
    if metric not in _CURVE_LABELS:
        raise ValueError(f"metric must be one of {sorted(_CURVE_LABELS)}, got {metric!r}")
    groups = _seed_groups(history)
    alpha = 1.0 if len(groups) == 1 else 0.75
    with house_style():
        fig = new_figure(CURVE_SIZE)
        ax = fig.add_subplot()
        for _, group in groups:
            epochs = group["epoch"].to_numpy()
            ax.plot(epochs, group[metric], color=TRAIN_COLOR, lw=1.6, alpha=alpha)
            ax.plot(epochs, group[f"val_{metric}"], color=VALID_COLOR, lw=1.6, ls="--",
                    alpha=alpha)
            kept = int(np.argmin(group["val_loss"].to_numpy()))
            ax.plot(epochs[kept], group[f"val_{metric}"].iloc[kept], marker="*", ms=13,
                    color=VALID_COLOR, markeredgecolor="black", ls="none")
        seeds = "" if groups[0][0] is None else (
            f" ({len(groups)} seeds, one line each)" if len(groups) > 1 else
            f" (seed {groups[0][0]})"
        )
        ax.legend(
            handles=[
                Line2D([], [], color=TRAIN_COLOR, lw=1.6, label="training"),
                Line2D([], [], color=VALID_COLOR, lw=1.6, ls="--", label="validation"),
                Line2D([], [], color=VALID_COLOR, marker="*", ms=11, ls="none",
                       markeredgecolor="black", label="weights kept (lowest val. loss)"),
            ],
            loc="best",
            facecolor="white", framealpha=0.9,
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel(_CURVE_LABELS[metric])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "accuracy":
            ax.set_ylim(0.0, 1.02)
        else:
            ax.set_ylim(bottom=0.0)
        ax.set_title(f"Training and validation {metric}\n{title}{seeds}")
        save_figure(fig, out_png, notes)


def plot_training_curves(
    history: pd.DataFrame, out_accuracy: str, out_loss: str, title: str,
    notes: Sequence[str] = (),
) -> None:
    plot_curve(history, "accuracy", out_accuracy, title, notes)
    plot_curve(history, "loss", out_loss, title, notes)


# --------------------------------------------------------------- confusion matrix


def row_rates(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the recall of each true class); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.zeros_like(matrix)
    np.divide(matrix, totals, out=rates, where=totals > 0)
    return rates


def plot_confusion_matrix(
    matrix, labels: Sequence[str], out_png: str, title: str, notes: Sequence[str] = ()
) -> None:
    """Counts and row-normalised rates in every cell, coloured by rate."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} labels")
    rates = row_rates(matrix)
    with house_style():
        fig = new_figure(CONFUSION_SIZE)
        ax = fig.add_subplot()
        ax.grid(False)
        image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        font = 9 if n <= 10 else 7
        for (i, j), count in np.ndenumerate(matrix):
            if count == 0 and i != j:
                continue  # empty off-diagonal cells stay blank, so errors stand out
            color = "white" if rates[i, j] > 0.55 else "#222222"
            rate = f"{rates[i, j]:.0%}" if matrix[i].sum() else "none"
            ax.text(j, i, f"{count}\n{rate}", ha="center", va="center",
                    fontsize=font, color=color, linespacing=1.1)
        ax.set_xticks(range(n), labels, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted genre")
        ax.set_ylabel("true genre")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.85,
                     label="share of each true genre (row-normalised)")
        save_figure(fig, out_png, notes)


# ------------------------------------------------------------------ final models


def scores_figure_size(n_models: int) -> tuple[float, float]:
    # Quarters of an inch: exact in binary, so every size is a whole number of pixels.
    return (9.0, 2.25 + 0.75 * max(n_models, 1))


def plot_final_scores(summary: pd.DataFrame, out_png: str, notes: Sequence[str] = ()) -> None:
    """Every final model in its validation rank (the chosen one at the top): validation
    macro-F1 beside test macro-F1 with its bootstrap interval over test tracks."""
    ranked = summary.sort_values("rank", kind="mergesort")
    names = [f"{row.model}, round {row.round}" + ("  (chosen)" if row.chosen else "")
             for row in ranked.itertuples()]
    valid = ranked["valid_macro_f1_mean"].to_numpy(dtype=float)
    test = ranked["test_macro_f1_mean"].to_numpy(dtype=float)
    high = ranked["test_macro_f1_high"].to_numpy(dtype=float)
    errors = np.nan_to_num(np.vstack([test - ranked["test_macro_f1_low"].to_numpy(dtype=float),
                                      high - test]))
    positions = np.arange(len(ranked))[::-1]
    with house_style():
        fig = new_figure(scores_figure_size(len(ranked)))
        ax = fig.add_subplot()
        ax.barh(positions + 0.2, valid, height=0.38, color="#BBBBBB",
                label="validation (chooses the model)")
        ax.barh(positions - 0.2, test, height=0.38, xerr=errors, color=TRAIN_COLOR,
                error_kw={"ecolor": "#222222", "capsize": 3, "lw": 1.2},
                label="test, with its 95% interval over test tracks")
        for y, value, top in zip(positions, test, np.where(np.isnan(high), test, high)):
            ax.text(min(float(top) + 0.015, 0.93), y - 0.2, f"{value:.3f}", va="center",
                    ha="left", color="#222222", fontsize=9)
        ax.set_yticks(positions, names)
        for label in ax.get_yticklabels():
            label.set_fontweight("bold" if label.get_text().endswith("(chosen)") else "normal")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("macro-F1 (mean over seeds)")
        ax.legend(loc="lower right", fontsize=8.5)
        seeds = sorted(set(ranked["n_seeds"]))
        ax.set_title(
            "Final models, ranked by validation macro-F1"
            + (f" ({seeds[0]} seed{'s' if seeds[0] > 1 else ''} each)" if len(seeds) == 1 else "")
        )
        save_figure(fig, out_png, notes)


def plot_final(
    metrics_json: str, history_csv: str, out_accuracy: str, out_loss: str,
    out_confusion: str, genres: Sequence[str], log=print,
) -> None:
    """The three figures of one final model, from its combined metrics and history."""
    from genreflow.run_info import caveats

    metrics = read_json(metrics_json)
    notes = caveats(metrics)
    title = f"{metrics['model']}, round {metrics['round']}"
    plot_training_curves(pd.read_csv(history_csv), out_accuracy, out_loss, title, notes)
    level = metrics["level"]
    matrix = np.asarray(metrics["test"][level]["confusion_matrix_pooled"])
    unit = "tracks" if metrics.get("segmented") else "clips"
    per_seed = matrix.sum() // max(metrics["n_seeds"], 1)
    pooled = (
        f"{metrics['n_seeds']} seeds pooled, {per_seed} test {unit} each"
        if metrics["n_seeds"] > 1 else f"seed {metrics['seeds'][0]}, {per_seed} test {unit}"
    )
    plot_confusion_matrix(matrix, genres, out_confusion,
                          f"Confusion matrix: {title}\n({pooled})", notes)
    log(f"wrote {out_accuracy}, {out_loss}, {out_confusion}")
