"""A final model's seeds combined (`combine_seeds`): its metrics as mean ± sample sd over
seeds, its predictions and training histories in one file each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.evaluation import HEADLINE_LEVEL, SCORES, score_column
from genreflow.io import read_json, write_csv, write_json
from genreflow.names import model_label


def mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (None for one value) of a seed's scores."""
    values = [float(value) for value in values]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "n": len(values),
    }


def _level_summary(levels: Sequence[Mapping], genres: Sequence[str]) -> dict:
    """Mean ± sd of one (split, level)'s scores over seeds; confusion counts pooled."""
    return {
        "macro_f1": mean_std([level["macro_f1"] for level in levels]),
        "accuracy": mean_std([level["accuracy"] for level in levels]),
        "loss": mean_std([level["loss"] for level in levels]),
        "per_class": {
            genre: {
                metric: mean_std([level["per_class"][genre][metric] for level in levels])
                for metric in ("precision", "recall", "f1")
            }
            | {"support": int(levels[0]["per_class"][genre]["support"])}
            for genre in genres
        },
        "confusion_matrix_pooled": np.sum(
            [np.asarray(level["confusion_matrix"]) for level in levels], axis=0
        ).tolist(),
    }


_MODEL_KEYS = ("backbone", "feature", "round")


# One job's entry point: a parameter per input, param and output of its rule
# (combine_final_seeds), passed by name from the thin script.
def combine_seeds(
    metrics_jsons: Sequence[str],
    predictions_csvs: Sequence[str],
    history_csvs: Sequence[str],
    genres: Sequence[str],
    out_metrics: str,
    out_predictions: str,
    out_history: str,
    log=print,
) -> None:
    """One model's seeds -> its metrics (mean ± sd), predictions and histories."""
    records = [read_json(path) for path in metrics_jsons]
    models = {tuple(record.get(key) for key in _MODEL_KEYS) for record in records}
    if len(models) != 1:
        raise ValueError(f"seed results of different models: {sorted(models, key=str)}")
    seeds = [record["seed"] for record in records]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seeds {seeds}")
    order = np.argsort(seeds, kind="stable")
    records = [records[i] for i in order]
    first = records[0]
    summary = {
        split: {
            level: _level_summary([record[split][level] for record in records], genres)
            for level in ("tracks", "examples")
        }
        for split in ("valid", "test")
    }
    flat = {}
    for split, level, metric in SCORES:
        if level == "examples" and not first["segmented"]:
            continue
        stats = summary[split][level][metric]
        flat[score_column(split, level, metric) + "_mean"] = stats["mean"]
        flat[score_column(split, level, metric) + "_std"] = stats["std"]
    per_seed_keys = ("seed", "epochs_run", "best_epoch", *_headline_keys(first))
    about = {
        key: value
        for key, value in first.items()
        if key not in ("valid", "test", "seed", "epochs_run", "best_epoch")
        and key not in _headline_keys(first)
    }
    write_csv(out_predictions, pd.concat(
        [pd.read_csv(path, dtype={"clip": str}) for path in predictions_csvs], ignore_index=True
    ).sort_values(["seed", "split", "clip", "segment"], kind="mergesort"))
    write_csv(out_history, pd.concat(
        [pd.read_csv(path) for path in history_csvs], ignore_index=True
    ).sort_values(["seed", "epoch"], kind="mergesort"))
    write_json(
        out_metrics,
        {
            **about,
            "model": model_label(first["backbone"], first["feature"]),
            "seeds": [record["seed"] for record in records],
            "n_seeds": len(records),
            "level": HEADLINE_LEVEL,
            **flat,
            "per_seed": [{key: record[key] for key in per_seed_keys} for record in records],
            "valid": summary["valid"],
            "test": summary["test"],
        },
    )
    log(
        f"{about.get('backbone')} + {about.get('feature')} round {about.get('round')}: "
        f"test macro-F1 {format_mean_std(flat['test_macro_f1_mean'], flat['test_macro_f1_std'])}"
        f" over seeds {[record['seed'] for record in records]}"
    )


def choose_seed(metrics_jsons: Sequence[str]) -> int:
    """Index of the seed whose model is exported (its bundle) and whose representations the
    unfamiliar score is fitted on: the best validation macro-F1, ties by the lower
    validation loss, then the lower seed (validation only, as ever)."""
    records = [read_json(path) for path in metrics_jsons]
    keys = [(-r["valid"]["tracks"]["macro_f1"], r["valid"]["tracks"]["loss"], r["seed"])
            for r in records]
    return int(min(range(len(records)), key=keys.__getitem__))


def _headline_keys(record: Mapping) -> list[str]:
    return [
        score_column(split, level, metric)
        for split, level, metric in SCORES
        if level == HEADLINE_LEVEL or record.get("segmented")
    ]


def format_mean_std(mean: float, std: float | None, digits: int = 3) -> str:
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
