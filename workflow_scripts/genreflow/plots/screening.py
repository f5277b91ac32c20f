"""The screening heatmap: backbones x image types, coloured by what chose (validation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def plot_heatmap(
    summary: pd.DataFrame, selected: Sequence[Mapping], out_png: str, notes: Sequence[str]
) -> None:
    """Backbones x image types coloured by validation macro-F1 (what chooses), each cell
    with its test macro-F1 below; the chosen image type of each backbone is framed."""
    from matplotlib.patches import Rectangle

    from genreflow.names import AUDIO_FEATURE, FEATURES
    from genreflow.plots.style import house_style, new_figure, save_figure

    order = [feature for feature in (*FEATURES, AUDIO_FEATURE) if feature in set(summary["feature"])]
    valid = summary.pivot(index="backbone", columns="feature", values="valid_macro_f1")[order]
    test = summary.pivot(index="backbone", columns="feature", values="test_macro_f1")[order]
    chosen = {(s["backbone"], s["feature"]) for s in selected}
    import matplotlib

    with house_style():
        fig = new_figure((1.5 * len(order) + 3.2, 0.75 * len(valid) + 2.6))
        ax = fig.add_subplot()
        ax.grid(False)
        # Audio backbones have no image types and image backbones no audio: blank, not 0.
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
        image = ax.imshow(np.ma.masked_invalid(valid.to_numpy(dtype=float)), cmap=cmap,
                          vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(order)), order)
        ax.set_yticks(range(len(valid)), valid.index)
        for (i, j), value in np.ndenumerate(valid.to_numpy(dtype=float)):
            if not np.isfinite(value):
                ax.text(j, i, "n/a", ha="center", va="center", color="#999999", fontsize=8)
                continue
            color = "white" if value < 0.6 else "black"
            ax.text(j, i - 0.12, f"{value:.2f}", ha="center", va="center", color=color,
                    fontsize=10.5, fontweight="bold")
            ax.text(j, i + 0.22, f"test {test.iloc[i, j]:.2f}", ha="center", va="center",
                    color=color, fontsize=8)
            if (valid.index[i], order[j]) in chosen:
                ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False,
                                       edgecolor="#E24A33", linewidth=2.5))
        ax.set_xlabel("image type (audio: musicnn embeds the audio itself)"
                      if AUDIO_FEATURE in order else "image type")
        ax.set_ylabel("backbone")
        ax.set_title("Screening: validation macro-F1 (frozen backbone, head only)\n"
                     "framed: each backbone's image type chosen on validation")
        fig.colorbar(image, ax=ax, label="validation macro-F1")
        save_figure(fig, out_png, notes)
