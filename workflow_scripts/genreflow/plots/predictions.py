"""The figure of a folder's predictions: each file's genre probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def plot_predictions(predictions: pd.DataFrame, preprocessing: Mapping, out_png: str,
                     max_files: int = 60) -> None:
    """One horizontal stacked bar per file: its genre probabilities (the first `max_files`).
    Files flagged unfamiliar are hatched and labelled so, with a legend entry saying what
    the flag means."""
    from genreflow.plots.style import house_style, new_figure, placeholder_figure, save_figure

    genres = list(preprocessing["genres"])
    notes = preprocessing["caveats"]
    title = f"Predicted genres: {preprocessing['model']['label']}, round {preprocessing['model']['round']}"
    if predictions.empty:
        placeholder_figure("no file could be classified (see rejected.csv)", out_png, title, notes)
        return
    shown = predictions.head(max_files)
    flagged = _flags(shown)
    import matplotlib
    from matplotlib.patches import Patch

    colors = matplotlib.colormaps["tab10" if len(genres) <= 10 else "tab20"]
    with house_style():
        fig = new_figure((9.0, max(3.0, 2.0 + 0.25 * len(shown))))
        ax = fig.add_subplot()
        left = np.zeros(len(shown))
        positions = np.arange(len(shown))[::-1]
        for i, genre in enumerate(genres):
            values = shown[f"p_{genre}"].to_numpy(dtype=float)
            bars = ax.barh(positions, values, left=left, color=colors(i % colors.N), label=genre,
                           height=0.8)
            for bar, odd in zip(bars, flagged):
                if odd:
                    bar.set_hatch("xx")
                    bar.set_edgecolor("black")
            left += values
        labels = [f"{'UNFAMILIAR ' if odd else ''}{Path(f).name[:40]} ({g})"
                  for f, g, odd in zip(shown["file"], shown["genre"], flagged)]
        ax.set_yticks(positions, labels, fontsize=8)
        for tick, odd in zip(ax.get_yticklabels(), flagged):
            if odd:
                tick.set_color("#b00020")
                tick.set_fontweight("bold")
        ax.set_xlim(0, 1)
        ax.set_xlabel("genre probability (mean over the file's windows, calibrated)")
        more = f" (first {max_files} of {len(predictions)})" if len(predictions) > max_files else ""
        ax.set_title(title + more)
        handles, names = ax.get_legend_handles_labels()
        if "unfamiliar" in shown.columns and shown["unfamiliar"].notna().any():
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="xx"))
            names.append(f"unfamiliar: unlike the\ntraining data ({int(flagged.sum())} of "
                         f"{len(shown)})")
        else:
            handles.append(Patch(facecolor="white", edgecolor="white"))
            names.append("no unfamiliar flag\n(bundle format 1)")
        fig.legend(handles, names, loc="outside right upper", fontsize=8)
        save_figure(fig, out_png, notes)


def _flags(predictions: pd.DataFrame) -> np.ndarray:
    """Which rows are flagged unfamiliar (none when the bundle gives no flag)."""
    if "unfamiliar" not in predictions.columns:
        return np.zeros(len(predictions), dtype=bool)
    values = predictions["unfamiliar"]
    return values.map(lambda v: str(v).lower() == "true").to_numpy(dtype=bool)
