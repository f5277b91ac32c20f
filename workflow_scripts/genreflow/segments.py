"""The segment-length comparison: the study's open question, answered by one run.

For each length in `segments.compare` (None = whole clips) the screening head of each
selected (backbone, feature) is trained again on images (or musicnn embeddings) of
segments of that length, with the same split, head and seed, and tested on whole tracks
(segment probabilities averaged, `genreflow.screening.score`) and on single segments.
Splits are by track, so every segment of a track is in its track's split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import read_json, write_csv, write_text_atomic

WHOLE = "whole"


def length_label(seconds: float | None) -> str:
    """The path component of a segment length: 'whole' or e.g. '3s', '2.5s'."""
    return WHOLE if seconds is None else f"{float(seconds):g}s"


def length_seconds(label: str) -> float | None:
    if label == WHOLE:
        return None
    if not label.endswith("s"):
        raise ValueError(f"segment length {label!r} is neither 'whole' nor like '3s'")
    return float(label[:-1])


def comparison_table(
    rows: Sequence[Mapping], metrics_jsons: Sequence[str], genres: Sequence[str]
) -> pd.DataFrame:
    """One row per (length, backbone, feature): test and validation scores per track and
    per segment. `rows[i]` names the length, backbone and feature of `metrics_jsons[i]`."""
    records = []
    for row, path in zip(rows, metrics_jsons, strict=True):
        metrics = read_json(path)
        for key in ("backbone", "feature"):
            if metrics.get(key) != row[key]:
                raise ValueError(f"{path}: {key} {metrics.get(key)!r}, expected {row[key]!r}")
        test, valid = metrics["test"], metrics["valid"]
        records.append(
            {
                "length": row["length"],
                "seconds": length_seconds(row["length"]),
                "backbone": row["backbone"],
                "feature": row["feature"],
                "test_tracks": test["tracks"]["n"],
                "test_segments": test["examples"]["n"],
                "test_macro_f1": test["tracks"]["macro_f1"],
                "test_accuracy": test["tracks"]["accuracy"],
                "test_segment_macro_f1": test["examples"]["macro_f1"],
                "test_segment_accuracy": test["examples"]["accuracy"],
                "valid_macro_f1": valid["tracks"]["macro_f1"],
                "valid_accuracy": valid["tracks"]["accuracy"],
                "chance": 1.0 / len(genres),
                "epochs_run": metrics["epochs_run"],
            }
        )
    return pd.DataFrame(records, columns=SUMMARY_COLUMNS)


SUMMARY_COLUMNS = [
    "length", "seconds", "backbone", "feature", "test_tracks", "test_segments",
    "test_macro_f1", "test_accuracy", "test_segment_macro_f1", "test_segment_accuracy",
    "valid_macro_f1", "valid_accuracy", "chance", "epochs_run",
]


def _order(table: pd.DataFrame) -> list[str]:
    """Lengths in reading order: whole clips first, then shortest to longest."""
    lengths = table.drop_duplicates("length")[["length", "seconds"]]
    return sorted(lengths["length"], key=lambda label: (label != WHOLE, length_seconds(label) or 0))


def comparison_markdown(table: pd.DataFrame, notes: Sequence[str]) -> str:
    """Models as rows, lengths as columns: track-level test macro-F1 (segment level)."""
    lengths = _order(table)
    lines = [f"> **{note}**\n" for note in notes]
    lines.append(
        "Test macro-F1 per track (segment probabilities averaged) and, in brackets, per "
        "single segment, by segment length; same split, head and seed for every length.\n"
    )
    lines.append("| model | " + " | ".join(lengths) + " |")
    lines.append("|---|" + "---:|" * len(lengths))
    for (backbone, feature), group in table.groupby(["backbone", "feature"], sort=True):
        by_length = group.set_index("length")
        cells = []
        for length in lengths:
            if length not in by_length.index:
                cells.append("")
                continue
            row = by_length.loc[length]
            cells.append(
                f"{row['test_macro_f1']:.3f}"
                if length == WHOLE
                else f"{row['test_macro_f1']:.3f} ({row['test_segment_macro_f1']:.3f})"
            )
        lines.append(f"| {backbone} + {feature} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(table: pd.DataFrame, out_png: str, notes: Sequence[str]) -> None:
    """One panel per model: test macro-F1 per track and per segment at each length."""
    from genreflow.plots import _new_figure, _save, house_style

    lengths = _order(table)
    models = sorted(table.groupby(["backbone", "feature"]).groups)
    columns = min(3, len(models))
    panel_rows = -(-len(models) // columns)
    x = np.arange(len(lengths))
    with house_style():
        fig = _new_figure((4.2 * columns, 3.4 * panel_rows + 1.4))
        axes = fig.subplots(panel_rows, columns, squeeze=False, sharey=True)
        for ax, (backbone, feature) in zip(axes.flat, models):
            group = table[(table.backbone == backbone)
                          & (table.feature == feature)].set_index("length")
            track = [group["test_macro_f1"].get(length, np.nan) for length in lengths]
            segment = [
                np.nan if length == WHOLE else group["test_segment_macro_f1"].get(length, np.nan)
                for length in lengths
            ]
            ax.bar(x - 0.2, track, 0.4, label="per track (segments averaged)", color="#1f77b4")
            ax.bar(x + 0.2, segment, 0.4, label="per single segment", color="#9ecae1")
            for xi, value in zip(x, track):
                if np.isfinite(value):
                    ax.text(xi - 0.2, value + 0.01, f"{value:.2f}", ha="center", fontsize=8)
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
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8,
                   frameon=False)
        _save(fig, out_png, notes)


def summarize_segments(
    rows: Sequence[Mapping],
    metrics_jsons: Sequence[str],
    genres: Sequence[str],
    notes: Sequence[str],
    out_summary: str,
    out_table: str,
    out_figure: str,
    log=print,
) -> None:
    for note in notes:
        log("WARNING: " + note)
    if not rows:
        # screening.min_f1 / top_k can leave no model to compare: say so, do not fail
        from genreflow.plots import placeholder_figure

        message = ("screening selected no model (see screening.min_f1 and screening.top_k), "
                   "so no segment length was compared")
        log(message)
        write_csv(out_summary, pd.DataFrame(columns=SUMMARY_COLUMNS))
        write_text_atomic(out_table, "".join(f"> **{n}**\n\n" for n in notes) + message + "\n")
        placeholder_figure(message, out_figure, "Whole clips vs segments", notes)
        return
    table = comparison_table(rows, metrics_jsons, genres)
    write_csv(out_summary, table)
    write_text_atomic(out_table, comparison_markdown(table, notes))
    plot_comparison(table, out_figure, notes)
    for (backbone, feature), group in table.groupby(["backbone", "feature"], sort=True):
        best = group.loc[group["valid_macro_f1"].idxmax()]
        log(
            f"{backbone} + {feature}: "
            + ", ".join(f"{r.length} {r.test_macro_f1:.3f}" for r in group.itertuples())
            + f" (test macro-F1 per track); best on validation: {best['length']}"
        )
