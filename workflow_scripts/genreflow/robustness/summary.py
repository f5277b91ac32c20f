"""The robustness stage's results (`summarize_robustness`): one row per final model and
condition with the test scores and their intervals, and each condition's paired difference
against the same model on the clean test split; an HTML table and a figure for the report;
and the front page's line (`headline.json`).

Models come in the order of Table 5 (ranked on validation; the first is the chosen model),
conditions in the config's order after the clean split, then the second rendering. The
paired difference is "the model under the condition minus the same model clean", on the
same test tracks and the same bootstrap resamples (`genreflow.intervals.paired_difference`):
an interval below 0 is a loss the test split can tell from chance.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd

from genreflow.io import write_csv, write_json, write_text_atomic
from genreflow.names import CLEAN, SECOND_RENDERING

SUMMARY_COLUMNS = (
    "rank", "chosen", "model", "backbone", "feature", "round", "condition", "description",
    "n_seeds", "n_tracks",
    "test_macro_f1", "test_macro_f1_low", "test_macro_f1_high",
    "test_accuracy", "test_accuracy_low", "test_accuracy_high",
    "delta_macro_f1", "delta_macro_f1_low", "delta_macro_f1_high",
    "delta_accuracy", "delta_accuracy_low", "delta_accuracy_high",
    "final_test_macro_f1",
    # why an interval is n/a (genreflow.intervals: too few test tracks, or too few wrong)
    "test_macro_f1_na", "test_accuracy_na", "delta_macro_f1_na", "delta_accuracy_na",
)
CLEAN_DESCRIPTION = "the test split as it is (the final models' own test scores)"
SECOND_RENDERING_DESCRIPTION = ("the same test songs rendered again: other instruments, "
                                "another room, EQ and noise (synthetic corpus)")


def condition_rows(conditions: Sequence[Mapping]) -> list[dict]:
    """Every condition with its description, the clean split first."""
    return [{"name": CLEAN, "description": CLEAN_DESCRIPTION}, *conditions]


def model_rows(predictions: pd.DataFrame, conditions: Sequence[Mapping], genres, bootstrap
               ) -> list[dict]:
    """One model's rows (one per condition): scores with intervals, paired differences."""
    from genreflow.intervals import (
        paired_difference,
        same_tracks,
        score_intervals,
        tracks_of_test_split,
    )

    by_condition = {name: frame for name, frame in predictions.groupby("condition", sort=False)}
    clean = tracks_of_test_split(by_condition[CLEAN], genres)
    rows = []
    for condition in condition_rows(conditions):
        if condition["name"] not in by_condition:
            raise ValueError(f"no predictions under condition {condition['name']}")
        tracks = tracks_of_test_split(by_condition[condition["name"]], genres)
        same_tracks(clean, tracks, f"condition {condition['name']}")
        row = {"condition": condition["name"], "description": condition["description"],
               "n_seeds": int(tracks.predicted.shape[0]), "n_tracks": int(tracks.labels.size)}
        scores = score_intervals(tracks.labels, tracks.predicted, len(genres), bootstrap)
        deltas = paired_difference(clean.labels, tracks.predicted, clean.predicted, len(genres),
                                   bootstrap)
        for metric in ("macro_f1", "accuracy"):
            row[f"test_{metric}"] = scores[metric].estimate
            row[f"test_{metric}_low"] = scores[metric].low
            row[f"test_{metric}_high"] = scores[metric].high
            row[f"delta_{metric}"] = deltas[metric].estimate
            row[f"delta_{metric}_low"] = deltas[metric].low
            row[f"delta_{metric}_high"] = deltas[metric].high
            row[f"test_{metric}_na"] = scores[metric].missing
            row[f"delta_{metric}_na"] = deltas[metric].missing
        rows.append(row)
    return rows


def summary_table(predictions_csvs: Sequence[str], chains: Sequence[Sequence],
                  final_summary: pd.DataFrame, conditions: Sequence[Mapping], genres,
                  bootstrap) -> pd.DataFrame:
    """Every final model under every condition, in Table 5's order (`final_summary`:
    results/final/summary.csv, which lists the final models); `predictions_csvs` holds the
    predictions of every round of each chain of `chains` ((backbone, feature) pairs)."""
    files = {tuple(chain): path for chain, path in zip(chains, predictions_csvs, strict=True)}
    frames = {}
    rows = []
    for record in final_summary.sort_values("rank").to_dict("records"):
        chain = (record["backbone"], record["feature"])
        if chain not in files:
            raise ValueError(f"no robustness predictions of the chain {chain[0]}/{chain[1]} "
                             "in the final summary; they are of another run")
        if chain not in frames:
            frames[chain] = pd.read_csv(files[chain], dtype={"clip": str})
        predictions = frames[chain][frames[chain]["round"] == int(record["round"])]
        if predictions.empty:
            raise ValueError(f"{files[chain]} has no predictions of round {record['round']}")
        for row in model_rows(predictions, conditions, genres, bootstrap):
            rows.append({"rank": int(record["rank"]), "chosen": bool(record["chosen"]),
                         "model": record["model"], "backbone": chain[0], "feature": chain[1],
                         "round": int(record["round"]),
                         "final_test_macro_f1": record["test_macro_f1_mean"], **row})
    order = {condition["name"]: i for i, condition in enumerate(condition_rows(conditions))}
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    table["position"] = table["condition"].map(order)
    table = table.sort_values(["rank", "position"], kind="mergesort").drop(columns="position")
    return table.reset_index(drop=True)


def clean_mismatches(summary: pd.DataFrame) -> list[str]:
    """Models whose clean rows are not their final test scores: model.keras fed by this
    stage did not predict what the final model's job tested (it must)."""
    clean = summary[summary["condition"] == CLEAN]
    wrong = clean[(clean["test_macro_f1"] - clean["final_test_macro_f1"]).abs() > 1e-9]
    return [f"{row.model} round {row.round}: {row.test_macro_f1:.4f} here, "
            f"{row.final_test_macro_f1:.4f} in the final summary" for row in wrong.itertuples()]


def _interval_dict(row, column: str) -> dict:
    missing = row.get(f"{column}_na")
    return {"mean": float(row[column]), "low": _finite(row[f"{column}_low"]),
            "high": _finite(row[f"{column}_high"]),
            "missing": missing if isinstance(missing, str) and missing else None}


def _finite(value) -> float | None:
    return None if pd.isna(value) else float(value)


def headline(summary: pd.DataFrame, bootstrap) -> dict:
    """The chosen model's clean score, its worst perturbation (largest loss of test
    macro-F1) and, where there is one, its score on the second rendering."""
    chosen = summary[summary["chosen"]]
    clean = chosen[chosen["condition"] == CLEAN].iloc[0]
    perturbed = chosen[~chosen["condition"].isin([CLEAN, SECOND_RENDERING])]
    result = {
        "model": clean["model"], "backbone": clean["backbone"], "feature": clean["feature"],
        "round": int(clean["round"]), "clean": _interval_dict(clean, "test_macro_f1"),
        "worst": None, "second_rendering": None, "n_perturbations": int(len(perturbed)),
        "interval": bootstrap.describe(),
    }
    if len(perturbed):
        worst = perturbed.sort_values("delta_macro_f1", kind="mergesort").iloc[0]
        result["worst"] = {"condition": worst["condition"], "description": worst["description"],
                           "test_macro_f1": _interval_dict(worst, "test_macro_f1"),
                           "delta_macro_f1": _interval_dict(worst, "delta_macro_f1")}
    rendered = chosen[chosen["condition"] == SECOND_RENDERING]
    if len(rendered):
        row = rendered.iloc[0]
        result["second_rendering"] = {"test_macro_f1": _interval_dict(row, "test_macro_f1"),
                                      "delta_macro_f1": _interval_dict(row, "delta_macro_f1")}
    return result


# ------------------------------------------------------------------------------ HTML table
def _bracket(low, high, signed: bool = False) -> str:
    from genreflow.intervals import bracket

    return bracket(low, high, signed)


def _excludes_zero(row) -> bool:
    return bool(row["delta_macro_f1_high"] < 0 or row["delta_macro_f1_low"] > 0)


def _cell_colour(delta: float) -> str:
    """A red as deep as the loss (0.3 of macro-F1 and more: the deepest), green for gains."""
    strength = min(abs(delta) / 0.3, 1.0)
    if delta < 0:
        return f"rgba(214, 39, 40, {0.08 + 0.6 * strength:.2f})"
    if delta > 0:
        return f"rgba(44, 160, 44, {0.08 + 0.4 * strength:.2f})"
    return "transparent"


def table_html(summary: pd.DataFrame, conditions: Sequence[Mapping], notes: Sequence[str],
               bootstrap, corpus: str) -> str:
    """The reader's table: a row per final model (Table 5's order, the chosen model marked),
    a column per condition; each cell the test macro-F1 and, under it, the paired difference
    against the same model clean with its interval, in bold where the interval excludes 0."""
    columns = condition_rows(conditions)
    escape = html.escape
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Robustness</title>',
             "<style>body{font-family:sans-serif;font-size:13px}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 6px;"
             "text-align:center;vertical-align:top}th{background:#f3f3f3}"
             "td.model{text-align:left;white-space:nowrap}tr.chosen td.model{font-weight:bold;"
             "background:#fff3c4}.delta{font-size:11px;color:#333}"
             ".caveat{color:#b00020;font-weight:bold}</style></head><body>"]
    parts += [f'<p class="caveat">{escape(note)}</p>' for note in notes]
    parts.append(
        f"<p>Test macro-F1 of every final model on the <b>{escape(corpus)}</b> corpus's test "
        "split under each condition (one column each); under it, the paired difference to "
        "the same model on the clean test split (same tracks, same resamples) with its "
        f"interval. Brackets: the {escape(bootstrap.describe())}. <b>Bold</b>: the interval "
        "of the difference excludes 0. Rows in Table 5's order (ranked on validation); the "
        "highlighted row is the chosen model.</p>")
    from genreflow.intervals import na_note

    if note := na_note(summary.filter(regex="_na$").to_numpy().ravel()):
        parts.append(f"<p>{escape(note)}</p>")
    parts.append("<table><tr><th>model</th>" + "".join(
        f'<th title="{escape(column["description"])}">{escape(column["name"])}<br>'
        f'<span class="delta">{escape(column["description"])}</span></th>'
        for column in columns) + "</tr>")
    for (rank, model, n), group in summary.groupby(["rank", "model", "round"], sort=True):
        group = group.set_index("condition")
        chosen = bool(group["chosen"].iloc[0])
        cells = [f'<td class="model">{rank}. {escape(str(model))}, round {n}'
                 + (" (chosen)" if chosen else "") + "</td>"]
        for column in columns:
            row = group.loc[column["name"]]
            score = (f"{row['test_macro_f1']:.3f} "
                     f"{_bracket(row['test_macro_f1_low'], row['test_macro_f1_high'])}")
            if column["name"] == CLEAN:
                cells.append(f"<td>{score}</td>")
                continue
            delta = (f"{row['delta_macro_f1']:+.3f} "
                     f"{_bracket(row['delta_macro_f1_low'], row['delta_macro_f1_high'], True)}")
            if _excludes_zero(row):
                delta = f"<b>{delta}</b>"
            cells.append(f'<td style="background:{_cell_colour(row["delta_macro_f1"])}">'
                         f'{score}<br><span class="delta">{delta}</span></td>')
        parts.append(f'<tr class="{"chosen" if chosen else ""}">' + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


# One job's entry point: a parameter per input, param and output of its rule
# (summarize_robustness), passed by name from the thin script.
def summarize_robustness(
    predictions_csvs: Sequence[str],
    chains: Sequence[Sequence],
    final_summary_csv: str,
    conditions: Sequence[Mapping],
    genres: Sequence[str],
    bootstrap: Mapping,
    about: Mapping,
    out_summary: str,
    out_table: str,
    out_figure: str,
    out_headline: str,
    log=print,
) -> None:
    """summary.csv, the HTML table, the figure and headline.json of the robustness stage."""
    from genreflow.intervals import Bootstrap
    from genreflow.plots.robustness import plot_robustness
    from genreflow.run_info import caveats

    bootstrap = Bootstrap.from_config(bootstrap)
    final_summary = pd.read_csv(final_summary_csv)
    summary = summary_table(predictions_csvs, chains, final_summary, conditions, genres,
                            bootstrap)
    for problem in clean_mismatches(summary):
        log("WARNING: the clean test macro-F1 through model.keras differs from the final "
            f"model's: {problem}")
    notes = caveats(about)
    write_csv(out_summary, summary)
    write_text_atomic(out_table, table_html(summary, conditions, notes, bootstrap,
                                            about.get("corpus", "")))
    plot_robustness(summary, out_figure, notes)
    top = headline(summary, bootstrap)
    write_json(out_headline, top)
    if top["worst"]:
        worst = top["worst"]
        log(f"chosen model {top['model']} round {top['round']}: clean test macro-F1 "
            f"{top['clean']['mean']:.3f}; worst perturbation {worst['condition']} "
            f"({worst['description']}): {worst['test_macro_f1']['mean']:.3f}, "
            f"{worst['delta_macro_f1']['mean']:+.3f} "
            f"{_bracket(worst['delta_macro_f1']['low'], worst['delta_macro_f1']['high'], True)}")
    log(f"{summary['rank'].nunique()} final models x {summary['condition'].nunique()} "
        "conditions")
