"""The segment comparison's figure: test macro-F1 per track and per segment at each length."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from genreflow.names import WHOLE, length_order


def plot_comparison(table: pd.DataFrame, out_png: str, notes: Sequence[str]) -> None:
    """One panel per model: test macro-F1 per track and per segment at each length."""
    from genreflow.plots.style import house_style, new_figure, save_figure

    lengths = length_order(table["length"])
    models = sorted(table.groupby(["backbone", "feature"]).groups)
    columns = min(3, len(models))
    panel_rows = -(-len(models) // columns)
    x = np.arange(len(lengths))
    with house_style():
        fig = new_figure((4.2 * columns, 3.4 * panel_rows + 1.4))
        axes = fig.subplots(panel_rows, columns, squeeze=False, sharey=True)
        for ax, (backbone, feature) in zip(axes.flat, models):
            group = table[(table.backbone == backbone)
                          & (table.feature == feature)].set_index("length")
            track = [group["test_macro_f1"].get(length, np.nan) for length in lengths]
            segment = [
                np.nan if length == WHOLE else group["test_segment_macro_f1"].get(length, np.nan)
                for length in lengths
            ]
            low = [group["test_macro_f1_low"].get(length, np.nan) for length in lengths]
            high = [group["test_macro_f1_high"].get(length, np.nan) for length in lengths]
            errors = np.nan_to_num(np.vstack([np.subtract(track, low), np.subtract(high, track)]))
            ax.bar(x - 0.2, track, 0.4, yerr=errors, capsize=3, color="#1f77b4",
                   error_kw={"ecolor": "#222222", "lw": 1.0},
                   label="per track (segments averaged), 95% interval over test tracks")
            ax.bar(x + 0.2, segment, 0.4, label="per single segment", color="#9ecae1")
            for xi, value, top in zip(x, track, high):
                if np.isfinite(value):
                    top = value if not np.isfinite(top) else top
                    ax.text(xi - 0.2, min(top + 0.015, 1.0), f"{value:.2f}", ha="center",
                            fontsize=8)
            ax.axhline(table["chance"].iloc[0], color="grey", linestyle="--", linewidth=1,
                       label="chance")
            ax.set_xticks(x, ["whole clip" if length == WHOLE else length for length in lengths])
            ax.set_title(f"{backbone} + {feature}", fontsize=10)
            ax.set_ylim(0, 1.05)
            ax.set_xlabel("segment length")
        for ax in axes[:, 0]:
            ax.set_ylabel("test macro-F1")
        for ax in list(axes.flat)[len(models):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8,
                   frameon=False)
        save_figure(fig, out_png, notes)
