"""The segment-length comparison: the study's open question, answered by one run.

For each length in `segments.compare` (None = whole clips) the screening head of each
selected (backbone, feature) is trained again on images (or musicnn embeddings) of
segments of that length, with the same split, head and seed, and tested on whole tracks
(segment probabilities averaged, `genreflow.scoring.score`) and on single segments.
Splits are by track, so every segment of a track is in its track's split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from genreflow.io import read_json
from genreflow.names import WHOLE, length_order, length_seconds
from genreflow.tables import caveat_banner


def comparison_table(
    rows: Sequence[Mapping], metrics_jsons: Sequence[str], predictions_csvs: Sequence[str],
    genres: Sequence[str], bootstrap,
) -> pd.DataFrame:
    """One row per (length, backbone, feature): test and validation scores per track and
    per segment, the bootstrap interval of the track-level test scores, and the paired
    difference of test macro-F1 to the same model on whole clips (same test tracks).
    `rows[i]` names the length, backbone and feature of `metrics_jsons[i]`."""
    from genreflow.intervals import (
        paired_difference,
        same_tracks,
        score_intervals,
        tracks_of_test_split,
    )

    records, tracks = [], {}
    for row, path, predictions_csv in zip(rows, metrics_jsons, predictions_csvs, strict=True):
        metrics = read_json(path)
        for key in ("backbone", "feature"):
            if metrics.get(key) != row[key]:
                raise ValueError(f"{path}: {key} {metrics.get(key)!r}, expected {row[key]!r}")
        test, valid = metrics["test"], metrics["valid"]
        model_tracks = tracks_of_test_split(pd.read_csv(predictions_csv, dtype={"clip": str}),
                                            genres)
        tracks[row["length"], row["backbone"], row["feature"]] = model_tracks
        intervals = score_intervals(model_tracks.labels, model_tracks.predicted, len(genres),
                                    bootstrap)
        records.append(
            {
                "length": row["length"],
                "seconds": length_seconds(row["length"]),
                "backbone": row["backbone"],
                "feature": row["feature"],
                "test_tracks": test["tracks"]["n"],
                "test_segments": test["examples"]["n"],
                "test_macro_f1": test["tracks"]["macro_f1"],
                "test_macro_f1_low": intervals["macro_f1"].low,
                "test_macro_f1_high": intervals["macro_f1"].high,
                "test_accuracy": test["tracks"]["accuracy"],
                "test_accuracy_low": intervals["accuracy"].low,
                "test_accuracy_high": intervals["accuracy"].high,
                "test_macro_f1_na": intervals["macro_f1"].missing,
                "test_accuracy_na": intervals["accuracy"].missing,
                "test_segment_macro_f1": test["examples"]["macro_f1"],
                "test_segment_accuracy": test["examples"]["accuracy"],
                "valid_macro_f1": valid["tracks"]["macro_f1"],
                "valid_accuracy": valid["tracks"]["accuracy"],
                "chance": 1.0 / len(genres),
                "epochs_run": metrics["epochs_run"],
            }
        )
    table = pd.DataFrame(records, columns=SUMMARY_COLUMNS)
    table["delta_vs_whole_na"] = ""
    for i, record in table.iterrows():
        whole = tracks.get((WHOLE, record["backbone"], record["feature"]))
        if record["length"] == WHOLE or whole is None:
            continue
        these = tracks[record["length"], record["backbone"], record["feature"]]
        same_tracks(whole, these, f"{record['backbone']} + {record['feature']} {record['length']}")
        delta = paired_difference(whole.labels, these.predicted, whole.predicted, len(genres),
                                  bootstrap)["macro_f1"]
        table.loc[i, ["delta_vs_whole", "delta_vs_whole_low", "delta_vs_whole_high"]] = (
            delta.estimate, delta.low, delta.high)
        table.loc[i, "delta_vs_whole_na"] = delta.missing
    return table


SUMMARY_COLUMNS = [
    "length", "seconds", "backbone", "feature", "test_tracks", "test_segments",
    "test_macro_f1", "test_macro_f1_low", "test_macro_f1_high",
    "test_accuracy", "test_accuracy_low", "test_accuracy_high",
    "test_segment_macro_f1", "test_segment_accuracy",
    "delta_vs_whole", "delta_vs_whole_low", "delta_vs_whole_high",
    "valid_macro_f1", "valid_accuracy", "chance", "epochs_run",
    "test_macro_f1_na", "test_accuracy_na", "delta_vs_whole_na",
]


def comparison_markdown(table: pd.DataFrame, notes: Sequence[str], bootstrap) -> str:
    """Models as rows, lengths as columns: track-level test macro-F1 with its interval,
    and for segments the paired difference to whole clips."""
    from genreflow.intervals import bracket, na_note

    lengths = length_order(table["length"])
    lines = caveat_banner(notes)
    lines.append(
        "Test macro-F1 per track (segment probabilities averaged), by segment length; same "
        f"split, head and seed for every length. Brackets: the {bootstrap.describe()}. "
        "Δ: macro-F1 minus the same model's on whole clips, on the same test tracks, with "
        "the interval of that paired difference (holding 0: the test split cannot tell "
        "the lengths apart). Last line of a cell: per single segment.\n"
    )
    if note := na_note(table.filter(regex="_na$").to_numpy().ravel()):
        lines.append(note)
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
            cell = (f"{row['test_macro_f1']:.3f} "
                    f"{bracket(row['test_macro_f1_low'], row['test_macro_f1_high'])}")
            if length != WHOLE:
                if pd.notna(row["delta_vs_whole"]):
                    cell += (f"<br>Δ {row['delta_vs_whole']:+.3f} "
                             f"{bracket(row['delta_vs_whole_low'], row['delta_vs_whole_high'], True)}")
                cell += f"<br>segment {row['test_segment_macro_f1']:.3f}"
            cells.append(cell)
        lines.append(f"| {backbone} + {feature} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# One job's entry point: a parameter per input, param and output of its rule
# (summarize_segments), passed by name from the thin script.
def summarize_segments(
    rows: Sequence[Mapping],
    metrics_jsons: Sequence[str],
    predictions_csvs: Sequence[str],
    genres: Sequence[str],
    bootstrap: Mapping,
    notes: Sequence[str],
    out_summary: str,
    out_table: str,
    out_table_html: str,
    out_figure: str,
    log=print,
) -> None:
    from genreflow.intervals import Bootstrap, bracket
    from genreflow.tables import write_summary

    bootstrap = Bootstrap.from_config(bootstrap)
    title = "Whole clips vs segments"
    if not rows:
        # screening.min_f1 / top_k can leave no model to compare: say so, do not fail
        from genreflow.plots.style import placeholder_figure

        message = ("screening selected no model (see screening.min_f1 and screening.top_k), "
                   "so no segment length was compared")
        log(message)
        markdown = "\n".join(caveat_banner(notes)) + "\n" + message + "\n"
        write_summary(pd.DataFrame(columns=SUMMARY_COLUMNS), markdown, title, notes,
                      out_summary, out_table, out_table_html, log)
        placeholder_figure(message, out_figure, title, notes)
        return
    table = comparison_table(rows, metrics_jsons, predictions_csvs, genres, bootstrap)
    write_summary(table, comparison_markdown(table, notes, bootstrap), title, notes,
                  out_summary, out_table, out_table_html, log)
    from genreflow.plots.segments import plot_comparison

    plot_comparison(table, out_figure, notes)
    for (backbone, feature), group in table.groupby(["backbone", "feature"], sort=True):
        best = group.loc[group["valid_macro_f1"].idxmax()]
        log(
            f"{backbone} + {feature}: "
            + ", ".join(f"{r.length} {r.test_macro_f1:.3f}" for r in group.itertuples())
            + f" (test macro-F1 per track); best on validation: {best['length']}"
            + "".join(
                f"; {r.length} vs whole {r.delta_vs_whole:+.3f} "
                f"{bracket(r.delta_vs_whole_low, r.delta_vs_whole_high, True)}"
                for r in group.itertuples() if pd.notna(r.delta_vs_whole)
            )
        )
