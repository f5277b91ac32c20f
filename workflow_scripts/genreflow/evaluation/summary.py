"""The final models across models (`summarize_final`): ranked by validation, with a
bootstrap interval on every test score and each model's paired difference to the chosen
one; the study's Table 5, a figure, and the headline of the report's front page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.evaluation.seeds import format_mean_std
from genreflow.io import read_json, write_json
from genreflow.run_info import caveats
from genreflow.tables import caveat_banner

SUMMARY_COLUMNS = (
    "rank", "chosen", "model", "backbone", "feature", "round", "n_seeds", "seeds",
    "valid_macro_f1_mean", "valid_macro_f1_std", "valid_loss_mean", "valid_accuracy_mean",
    "test_macro_f1_mean", "test_macro_f1_std", "test_macro_f1_low", "test_macro_f1_high",
    "test_accuracy_mean", "test_accuracy_std", "test_accuracy_low", "test_accuracy_high",
    "delta_macro_f1", "delta_macro_f1_low", "delta_macro_f1_high",
    "test_segment_macro_f1_mean", "test_segment_macro_f1_std",
    "test_segment_accuracy_mean", "test_segment_accuracy_std",
    "tuning_objective", "tuning_value", "corpus", "split", "weights", "pretrained",
    "test_absent_genres", "test_macro_f1_na", "test_accuracy_na", "delta_macro_f1_na",
    # calibration.json: the temperatures (one per seed, fitted on validation) and the test
    # split's expected calibration error and Brier score before and after, mean over seeds
    "temperatures", "calibration_bins", "test_ece_before", "test_ece_after",
    "test_brier_before", "test_brier_after",
)
CALIBRATION_COLUMNS = ("test_ece_before", "test_ece_after", "test_brier_before", "test_brier_after")


def rank_by_validation(summary: pd.DataFrame) -> pd.DataFrame:
    """Models ordered by validation macro-F1 (mean over seeds), ties broken by the lower
    validation loss, then by name; the first is the chosen model. The test columns play
    no part: ranking by them would report the best of many models on the test split."""
    ranked = summary.sort_values(
        ["valid_macro_f1_mean", "valid_loss_mean", "backbone", "feature", "round"],
        ascending=[False, True, True, True, True], kind="mergesort",
    ).reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    ranked["chosen"] = ranked["rank"] == 1
    return ranked


def summary_table(
    metrics_jsons: Sequence[str], predictions_csvs: Sequence[str], genres: Sequence[str],
    bootstrap, calibration_jsons: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per final model (all its seeds), ranked by validation (`rank_by_validation`),
    with a bootstrap interval on each test score and the paired difference of test
    macro-F1 to the chosen model (`genreflow.intervals`). Segment-level columns are empty
    when clips were not cut into segments."""
    from genreflow.intervals import (
        paired_difference,
        same_tracks,
        score_intervals,
        tracks_of_test_split,
    )

    rows, tracks = [], []
    calibration_jsons = calibration_jsons or [None] * len(metrics_jsons)
    for metrics_json, predictions_csv, calibration_json in zip(
            metrics_jsons, predictions_csvs, calibration_jsons, strict=True):
        record = read_json(metrics_json)
        row = {key: record.get(key) for key in SUMMARY_COLUMNS}
        if calibration_json:
            row.update(_calibration_cells(read_json(calibration_json), record, calibration_json))
        row["seeds"] = " ".join(str(seed) for seed in record["seeds"])
        row["tuning_objective"] = record.get("tuning", {}).get("objective")
        row["tuning_value"] = record.get("tuning", {}).get("value")
        model_tracks = tracks_of_test_split(pd.read_csv(predictions_csv, dtype={"clip": str}),
                                            genres)
        for metric, interval in score_intervals(model_tracks.labels, model_tracks.predicted,
                                                len(genres), bootstrap).items():
            row[f"test_{metric}_low"], row[f"test_{metric}_high"] = interval.low, interval.high
            row[f"test_{metric}_na"] = interval.missing
        row["test_absent_genres"] = " ".join(model_tracks.absent(genres))
        rows.append(row)
        tracks.append(model_tracks)
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    summary["delta_macro_f1_na"] = ""
    summary["position"] = np.arange(len(summary))
    order = rank_by_validation(summary)
    tracks = [tracks[i] for i in order["position"]]
    chosen = tracks[0]
    for i, other in enumerate(tracks):
        same_tracks(chosen, other, f"{order.loc[i, 'model']} round {order.loc[i, 'round']}")
        if i == 0:
            continue
        delta = paired_difference(chosen.labels, other.predicted, chosen.predicted, len(genres),
                                  bootstrap)["macro_f1"]
        order.loc[i, ["delta_macro_f1", "delta_macro_f1_low", "delta_macro_f1_high"]] = (
            delta.estimate, delta.low, delta.high)
        order.loc[i, "delta_macro_f1_na"] = delta.missing
    return order[list(SUMMARY_COLUMNS)]


def _calibration_cells(calibration: Mapping, record: Mapping, path: str) -> dict:
    """summary.csv's calibration columns of one model (its calibration.json)."""
    if [int(seed) for seed in calibration["temperatures"]] != [int(s) for s in record["seeds"]]:
        raise ValueError(f"{path} calibrates seeds {sorted(calibration['temperatures'])}, the "
                         f"model has seeds {record['seeds']}: rerun calibrate_final")
    return {
        "temperatures": " ".join(f"{calibration['temperatures'][seed]:.4f}"
                                 for seed in sorted(calibration["temperatures"], key=int)),
        "calibration_bins": calibration["bins"],
        **{column: calibration[column] for column in CALIBRATION_COLUMNS},
    }


def _cell(row, column: str) -> str:
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    if mean is None or pd.isna(mean):
        return "–"
    return format_mean_std(float(mean), None if pd.isna(std) else float(std))


def _interval_cell(row, column: str) -> str:
    from genreflow.intervals import bracket

    return f"{_cell(row, column)} {bracket(row[f'{column}_low'], row[f'{column}_high'])}"


def _delta_cell(row) -> str:
    from genreflow.intervals import bracket

    if pd.isna(row["delta_macro_f1"]):
        return "(chosen)"
    return (f"{row['delta_macro_f1']:+.3f} "
            f"{bracket(row['delta_macro_f1_low'], row['delta_macro_f1_high'], signed=True)}")


def table5_markdown(
    summary: pd.DataFrame, notes: Sequence[str], bootstrap, genres: Sequence[str] = ()
) -> str:
    """The study's Table 5 (every model and round), ranked by validation, the validation and
    test scores side by side, and each model's test difference to the chosen one."""
    segmented = summary["test_segment_macro_f1_mean"].notna().any()
    n_seeds = sorted(set(summary["n_seeds"]))
    if n_seeds == [1]:
        spread = "one seed, so no ± over seeds"
    elif len(n_seeds) == 1:
        spread = f"mean ± sample sd over {n_seeds[0]} seeds"
    else:
        spread = "mean ± sample sd over the seeds counted in the last column"
    from genreflow.intervals import absent_note, na_note

    chosen = summary.iloc[0]
    lines = caveat_banner(notes)
    absent = str(chosen["test_absent_genres"] or "").split() if pd.notna(chosen["test_absent_genres"]) else []
    if absent:
        lines.append(absent_note(absent, genres))
    lines.append(
        f"**Chosen on validation: {chosen['model']}, round {chosen['round']}: test macro-F1 "
        f"{_interval_cell(chosen, 'test_macro_f1')}.**\n"
    )
    lines.append(
        f"Final models ranked by validation macro-F1 ({spread}; ties broken by validation "
        "loss); the first is the chosen model. The test columns were not used to choose. "
        f"Brackets: the {bootstrap.describe()}; the last column is each model's test "
        "macro-F1 minus the chosen model's on the same test tracks, with the interval of "
        "that paired difference (an interval holding 0: the test split cannot tell the two "
        "apart).\n"
    )
    if note := na_note(summary.filter(regex="_na$").to_numpy().ravel()):
        lines.append(note)
    header = ["rank", "model", "round", "validation macro-F1",
              "test macro-F1" + (" (tracks)" if segmented else "")]
    if segmented:
        header.append("test macro-F1 (segments)")
    header += ["test accuracy", "vs chosen (test macro-F1)", "seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---:", "---", "---:"] + ["---:"] * (len(header) - 3)) + "|")
    for row in summary.to_dict("records"):
        cells = [str(row["rank"]), row["model"], str(row["round"]),
                 _cell(row, "valid_macro_f1"), _interval_cell(row, "test_macro_f1")]
        if segmented:
            cells.append(_cell(row, "test_segment_macro_f1"))
        cells += [_interval_cell(row, "test_accuracy"), _delta_cell(row), str(row["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline(summary: pd.DataFrame, bootstrap, notes: Sequence[str]) -> dict:
    """The chosen model and its test scores with their intervals: the report's front page."""
    chosen = summary.iloc[0]
    return {
        "model": chosen["model"],
        "backbone": chosen["backbone"],
        "feature": chosen["feature"],
        "round": int(chosen["round"]),
        "n_models": int(len(summary)),
        "chosen_by": "validation macro-F1 (mean over seeds), ties by validation loss",
        "valid_macro_f1": float(chosen["valid_macro_f1_mean"]),
        **{
            f"test_{metric}": {"mean": float(chosen[f"test_{metric}_mean"]),
                               "low": _finite_or_none(chosen[f"test_{metric}_low"]),
                               "high": _finite_or_none(chosen[f"test_{metric}_high"]),
                               "missing": _text_or_none(chosen.get(f"test_{metric}_na"))}
            for metric in ("macro_f1", "accuracy")
        },
        "interval": bootstrap.describe(),
        "calibration": _calibration_headline(chosen),
        "caveats": list(notes),
    }


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _calibration_headline(chosen) -> dict | None:
    """The chosen model's calibration on the test split, for the front page (None without
    calibration.json)."""
    if pd.isna(chosen["test_ece_before"]):
        return None
    return {
        "temperatures": [float(t) for t in str(chosen["temperatures"]).split()],
        "bins": int(chosen["calibration_bins"]),
        **{column: float(chosen[column]) for column in CALIBRATION_COLUMNS},
    }


def _finite_or_none(value) -> float | None:
    return None if pd.isna(value) else float(value)


# One job's entry point: a parameter per input, param and output of its rule
# (summarize_final), passed by name from the thin script.
def summarize_final(
    metrics_jsons: Sequence[str],
    predictions_csvs: Sequence[str],
    calibration_jsons: Sequence[str],
    about: Mapping,
    genres: Sequence[str],
    bootstrap: Mapping,
    out_summary: str,
    out_table: str,
    out_table_html: str,
    out_scores: str,
    out_headline: str,
    log=print,
) -> None:
    """Summary CSV (with each model's calibration), Table 5 in Markdown, a figure of the
    final models, and the headline (with the chosen model's calibration)."""
    from genreflow.intervals import Bootstrap
    from genreflow.plots.final import plot_final_scores
    from genreflow.tables import write_summary

    bootstrap = Bootstrap.from_config(bootstrap)
    summary = summary_table(metrics_jsons, predictions_csvs, genres, bootstrap, calibration_jsons)
    notes = caveats(about)
    write_summary(summary, table5_markdown(summary, notes, bootstrap, genres),
                  "Table 5: the final models", notes, out_summary, out_table, out_table_html, log)
    plot_final_scores(summary, out_scores, notes)
    write_json(out_headline, headline(summary, bootstrap, notes))
    chosen = summary.iloc[0]
    log(
        f"{len(summary)} final models; chosen on validation: {chosen['model']} round "
        f"{chosen['round']} (validation macro-F1 {_cell(chosen, 'valid_macro_f1')}), test "
        f"macro-F1 {_interval_cell(chosen, 'test_macro_f1')} ({bootstrap.describe()})"
    )
