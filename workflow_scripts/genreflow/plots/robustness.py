"""The robustness figure: final models x conditions, coloured by what each condition costs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from genreflow.names import CLEAN


def plot_robustness(summary: pd.DataFrame, out_png: str, notes: Sequence[str]) -> None:
    """Left, each model's clean test macro-F1; right, a cell per condition coloured by the
    paired difference to the same model clean (red: a loss), with the difference and the
    score under the condition written in it, framed in black where the difference's
    interval excludes 0. The chosen model's row is framed in orange and its name bold."""
    import matplotlib
    from matplotlib.patches import Rectangle

    from genreflow.plots.style import house_style, new_figure, save_figure

    conditions = [c for c in dict.fromkeys(summary["condition"]) if c != CLEAN]
    models = summary.drop_duplicates(["rank"]).sort_values("rank")
    labels = [f"{row.rank}. {row.model}, round {row.round}" for row in models.itertuples()]
    grid = summary.set_index(["rank", "condition"])
    delta = np.array([[grid.loc[(rank, c), "delta_macro_f1"] for c in conditions]
                      for rank in models["rank"]], dtype=float).reshape(len(models), -1)
    scores = np.array([[grid.loc[(rank, c), "test_macro_f1"] for c in conditions]
                       for rank in models["rank"]], dtype=float).reshape(len(models), -1)
    excludes = np.array([[bool(grid.loc[(rank, c), "delta_macro_f1_high"] < 0
                               or grid.loc[(rank, c), "delta_macro_f1_low"] > 0)
                          for c in conditions] for rank in models["rank"]]).reshape(len(models), -1)
    clean = np.array([grid.loc[(rank, CLEAN), "test_macro_f1"] for rank in models["rank"]])
    chosen_row = [i for i, row in enumerate(models.itertuples()) if row.chosen]
    limit = max(0.1, float(np.nanmax(np.abs(delta))) if delta.size else 0.1)

    with house_style():
        fig = new_figure((2.6 + 1.05 * (len(conditions) + 1) + 2.8, 1.6 + 0.48 * len(models)))
        left, right = fig.subplots(1, 2, width_ratios=[1, max(len(conditions), 1)],
                                   sharey=True)
        for ax in (left, right):
            ax.grid(False)
        left.imshow(clean[:, None], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i, value in enumerate(clean):
            left.text(0, i, f"{value:.2f}", ha="center", va="center", fontsize=9,
                      color="white" if value < 0.6 else "black")
        left.set_xticks([0], ["clean\ntest F1"])
        left.set_yticks(range(len(labels)), labels)
        cmap = matplotlib.colormaps["RdBu"]
        image = right.imshow(delta if delta.size else np.zeros((len(models), 1)), cmap=cmap,
                             vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), value in np.ndenumerate(delta):
            strong = abs(value) > 0.6 * limit
            right.text(j, i - 0.12, f"{value:+.2f}", ha="center", va="center", fontsize=9,
                       fontweight="bold" if excludes[i, j] else "normal",
                       color="white" if strong else "black")
            right.text(j, i + 0.25, f"{scores[i, j]:.2f}", ha="center", va="center",
                       fontsize=7, color="white" if strong else "#333333")
            if excludes[i, j]:
                right.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False,
                                          edgecolor="black", linewidth=1.4))
        right.set_xticks(range(len(conditions)),
                         [c.replace("_", "\n") for c in conditions], rotation=0)
        for i in chosen_row:
            left.get_yticklabels()[i].set_fontweight("bold")
            right.add_patch(Rectangle((-0.5, i - 0.5), max(len(conditions), 1), 1.0, fill=False,
                                      edgecolor="#E8820C", linewidth=2.5, clip_on=False))
        right.set_title("Test macro-F1 under each condition minus the same model clean\n"
                        "(paired over the test tracks; framed: its interval excludes 0; "
                        "small: the score under the condition)", fontsize=10)
        fig.colorbar(image, ax=right, label="difference in test macro-F1", shrink=0.9)
        save_figure(fig, out_png, notes)
