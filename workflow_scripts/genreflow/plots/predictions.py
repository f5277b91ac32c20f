"""The figure of a folder's predictions: each file's genre probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def plot_predictions(predictions: pd.DataFrame, preprocessing: Mapping, out_png: str,
                     max_files: int = 60) -> None:
    """One horizontal stacked bar per file: its genre probabilities (the first `max_files`)."""
    from genreflow.plots.style import house_style, new_figure, placeholder_figure, save_figure

    genres = list(preprocessing["genres"])
    notes = preprocessing["caveats"]
    title = f"Predicted genres: {preprocessing['model']['label']}, round {preprocessing['model']['round']}"
    if predictions.empty:
        placeholder_figure("no file could be classified (see rejected.csv)", out_png, title, notes)
        return
    shown = predictions.head(max_files)
    import matplotlib

    colors = matplotlib.colormaps["tab10" if len(genres) <= 10 else "tab20"]
    with house_style():
        fig = new_figure((9.0, max(3.0, 2.0 + 0.25 * len(shown))))
        ax = fig.add_subplot()
        left = np.zeros(len(shown))
        positions = np.arange(len(shown))[::-1]
        for i, genre in enumerate(genres):
            values = shown[f"p_{genre}"].to_numpy(dtype=float)
            ax.barh(positions, values, left=left, color=colors(i % colors.N), label=genre, height=0.8)
            left += values
        labels = [f"{Path(f).name[:40]} ({g})" for f, g in zip(shown["file"], shown["genre"])]
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("genre probability (mean over the file's windows)")
        more = f" (first {max_files} of {len(predictions)})" if len(predictions) > max_files else ""
        ax.set_title(title + more)
        fig.legend(loc="outside right upper", fontsize=8)
        save_figure(fig, out_png, notes)
