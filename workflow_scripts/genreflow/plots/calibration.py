"""The reliability diagram of a final model: on its test tracks, how often the predicted
genre is right against how confident the model is, before and after its temperature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from genreflow.names import model_label  # noqa: E402
from genreflow.plots.style import (  # noqa: E402
    TRAIN_COLOR,
    VALID_COLOR,
    house_style,
    new_figure,
    save_figure,
)

RELIABILITY_SIZE = (9.6, 5.0)


def _ece(table: pd.DataFrame) -> float:
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum()
                 / max(int(table["count"].sum()), 1))


def plot_reliability(tables: Mapping[str, pd.DataFrame], record: Mapping, notes: Sequence[str],
                     out_png: str) -> None:
    """Two panels, before and after the temperature: per confidence bin, the accuracy (bar)
    against the diagonal a calibrated model would follow, the gap to the bin's mean
    confidence hatched, and each bin's number of tracks above its bar. `tables`:
    {"before": ..., "after": ...} of `genreflow.evaluation.calibration.reliability_bins`."""
    seeds = record["per_seed"]
    temperatures = ", ".join(f"{t['temperature']:.2f}" for t in seeds)
    label = model_label(record.get("backbone", ""), record.get("feature", "")) if record.get("backbone") else ""
    with house_style():
        fig = new_figure(RELIABILITY_SIZE)
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (name, color) in zip(axes, (("before", VALID_COLOR), ("after", TRAIN_COLOR))):
            table = tables[name]
            width = float(table["high"].iloc[0] - table["low"].iloc[0])
            centres = (table["low"] + table["high"]).to_numpy() / 2
            accuracy = table["accuracy"].fillna(0.0).to_numpy()
            confidence = table["confidence"].to_numpy()
            ax.bar(centres, accuracy, width=width * 0.95, color=color, alpha=0.85,
                   edgecolor="white", label="accuracy of the bin's tracks")
            used = table["count"].to_numpy() > 0
            gap_low = np.minimum(accuracy, confidence)[used]
            gap = np.abs(accuracy - confidence)[used]
            ax.bar(centres[used], gap, bottom=gap_low, width=width * 0.95, fill=False,
                   hatch="//", edgecolor="#555555", lw=0.0, label="gap to mean confidence")
            ax.plot([0, 1], [0, 1], color="#333333", lw=1.0, ls="--", label="calibrated")
            for x, y, n in zip(centres[used], accuracy[used], table["count"].to_numpy()[used]):
                ax.text(x, min(y, 0.93) + 0.015, str(n), ha="center", va="bottom", fontsize=8)
            what = "before (T = 1)" if name == "before" else f"after (T = {temperatures})"
            pooled = " (seeds pooled)" if len(seeds) > 1 else ""
            ax.set_title(f"{what}: ECE{pooled} {_ece(table):.3f}")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("confidence (top genre's probability)")
        axes[0].set_ylabel("accuracy on the test tracks")
        axes[0].legend(loc="upper left", facecolor="white", framealpha=0.9, fontsize=8)
        n = int(tables["before"]["count"].sum())
        # a figure-level label, so that constrained layout keeps it clear of the axes' labels
        fig.supxlabel(f"{label}, round {record.get('round')}: {n} test tracks"
                      f"{' (all seeds pooled)' if len(seeds) > 1 else ''} in {record['bins']} "
                      "bins; numbers above the bars are tracks per bin; temperature fitted on "
                      "validation", fontsize=8.5, color="#333333")
        save_figure(fig, out_png, notes)
