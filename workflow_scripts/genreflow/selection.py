"""Choose which backbone/feature combinations go on from screening to tuning."""

from __future__ import annotations

import math

import pandas as pd

REQUIRED_COLUMNS = ("backbone", "feature")


def _check_summary(summary: pd.DataFrame, metric: str) -> None:
    if metric.startswith("test"):
        # The test split must stay untouched until the final evaluation; choosing
        # combinations by it would leak it into model selection and bias the
        # reported test scores upwards.
        raise ValueError(
            f"selecting on {metric!r} would leak the test set; use a validation metric"
        )
    missing = [c for c in (*REQUIRED_COLUMNS, metric) if c not in summary.columns]
    if missing:
        raise ValueError(f"screening summary lacks column(s) {missing}")
    duplicated = summary.duplicated(list(REQUIRED_COLUMNS))
    if duplicated.any():
        pairs = summary.loc[duplicated, list(REQUIRED_COLUMNS)].values.tolist()
        raise ValueError(
            f"screening summary has repeated backbone/feature rows: {pairs}"
        )


def best_feature_per_backbone(
    summary: pd.DataFrame, metric: str = "valid_macro_f1"
) -> pd.DataFrame:
    """One row per backbone: its feature with the highest `metric`.

    Ties go to the alphabetically first feature; runs without a score (NaN, e.g.
    failed) are ignored. Rows are ordered best first, ties by backbone name.
    """
    _check_summary(summary, metric)
    scored = summary.dropna(subset=[metric])
    ranked = scored.sort_values(
        [metric, "backbone", "feature"], ascending=[False, True, True], kind="mergesort"
    )
    best = ranked.drop_duplicates("backbone", keep="first")
    return best.reset_index(drop=True)


def select_combinations(
    summary: pd.DataFrame,
    min_f1: float | None = None,
    top_k: int | None = None,
    metric: str = "valid_macro_f1",
) -> list[dict]:
    """Best feature of each backbone, filtered by `min_f1` and/or capped at `top_k`.

    Selection uses validation scores only (see `_check_summary`); `test_macro_f1`
    in the summary is carried for reporting, never used here. With neither filter
    every backbone's best combination is kept. Returns
    [{"backbone", "feature", "valid_macro_f1"}...] best first (plus `metric` when
    it is another column).
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    best = best_feature_per_backbone(summary, metric)
    if min_f1 is not None:
        best = best[best[metric] >= min_f1]
    if top_k is not None:
        best = best.head(top_k)
    return [_selection_record(row, metric) for row in best.to_dict("records")]


def _selection_record(row: dict, metric: str) -> dict:
    record = {"backbone": row["backbone"], "feature": row["feature"]}
    for column in dict.fromkeys(("valid_macro_f1", metric)):
        value = row.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            record[column] = float(value)
    return record
