"""The final evaluation: each tuned best configuration (and the baseline CNN) is trained
again with its best hyperparameters, once per seed, tested once on the held-out split,
and the seeds are summarised as mean ± standard deviation (the study's Table 5).

One Snakemake job trains one (model, seed), so seeds run in parallel on a cluster and a
killed job loses one seed; `combine_seeds` then writes the model's files and
`summarize_final` the table across models. Track-level scores (segment probabilities
averaged per track) come from `genreflow.scoring.score`, as in screening; the track
level is the headline, and equals the clip level when clips are not cut into segments.

TensorFlow is imported only inside the functions that train, so that the combining and
summarising jobs start in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import atomic_path, read_json, write_csv, write_json, write_text_atomic
from genreflow.registry import model_label
from genreflow.run_info import caveats, is_audio_backbone
from genreflow.scoring import SPLITS, predictions_frame, score

# Scores reported per model: (split, level, metric). "tracks" averages the segment
# probabilities of each track; "examples" scores every image (segment) on its own.
HEADLINE_LEVEL = "tracks"
_SCORES = [
    (split, level, metric)
    for split in ("test", "valid")
    for level in ("tracks", "examples")
    for metric in ("macro_f1", "accuracy", "loss")
]


def _column(split: str, level: str, metric: str) -> str:
    # Track-level scores carry the plain names (test_macro_f1), as in screening.
    infix = "" if level == HEADLINE_LEVEL else "segment_"
    return f"{split}_{infix}{metric}"


# -------------------------------------------------------------------------- one seed


def check_best_trial(best: Mapping, about: Mapping, path: str) -> None:
    """The best trial must be the one of the model this job evaluates."""
    for key in ("backbone", "feature", "round"):
        if key in about and str(best.get(key)) != str(about[key]):
            raise ValueError(
                f"{path}: {key} is {best.get(key)!r} but this job evaluates "
                f"{key} {about[key]!r}"
            )
    missing = [key for key in ("params", "backbone") if key not in best]
    if missing:
        raise ValueError(f"{path}: best trial lacks key(s) {missing}")


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """model.save() to a temporary sibling (Keras wants the .keras suffix), then rename."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _headline(scores: Mapping, segmented: bool) -> dict:
    """Flat copies of the scores a table needs, from a {split: score(...)} mapping."""
    flat = {}
    for split, level, metric in _SCORES:
        if level == "examples" and not segmented:
            continue
        flat[_column(split, level, metric)] = scores[split][level][metric]
    return flat


def split_inputs(data, built, split: str):
    """What a model built by `trial_model` predicts on for `split`, and those examples'
    clip, segment and label, in the order of the inputs."""
    from genreflow.activations import model_input
    from genreflow.tuning.model_data import activation_cache, split_dataset

    if built.trained_on == "embeddings":  # a head on the cached embeddings
        rows = data.embedding_rows[split]
        return data.embeddings[split], rows["clip"], rows["segment"], rows["label"]
    frame = data.examples[split]
    if built.trained_on == "activations":
        inputs = model_input(activation_cache(data).get(built.cut, split))
    else:
        inputs = split_dataset(frame, data.backbone, data.image_size, built.batch_size, False, 0)
    return inputs, frame["clip"].to_numpy(), frame["segment"].to_numpy(), frame["label"].to_numpy()


def full_model_of_tail(data, best: Mapping, built, log=print):
    """The model to save for a fine-tuned model trained on cached activations: the whole
    backbone (its tail as trained) + the trained head, one file that takes images.

    Checked before it is saved: on the first test images it must give the probabilities the
    trained tail gave on their cached activations (to float noise in float32 storage, the
    default; float16 storage may move them a little more)."""
    from genreflow.activations import model_input
    from genreflow.models.heads import build_classifier, classifier_backbone
    from genreflow.models.train import predict_proba
    from genreflow.models.heads import transfer_head_weights
    from genreflow.tuning.model_data import activation_cache, split_dataset
    from genreflow.tuning.trial import head_config

    model = build_classifier(
        data.backbone, data.image_size, data.weights, head_config(best["params"]),
        len(data.genres), stats=data.stats, backbone_seed=data.backbone_seed,
    )
    classifier_backbone(model).set_weights(built.backbone.get_weights())
    transfer_head_weights(built.model, model)
    n = min(8, len(data.examples["test"]))
    images = split_dataset(data.examples["test"].iloc[:n], data.backbone, data.image_size,
                           built.batch_size, False, 0)
    values = [part[:n] for part in activation_cache(data).get(built.cut, "test")]
    expected = predict_proba(built.model, model_input(values))
    gap = float(np.max(np.abs(predict_proba(model, images) - expected)))
    if gap > 0.02:
        raise RuntimeError(
            f"the full {data.backbone} model assembled for model.keras predicts probabilities "
            f"up to {gap:.3f} away from its trained tail on the cached activations of the "
            "same test images: it is not the model that was tested"
        )
    log(f"model.keras = backbone (last {built.cut.k} layers trained) + head; on {n} test "
        f"images it predicts the tail's probabilities to {gap:.1e}")
    return model


def full_image_model(data, best: Mapping, head, batch_size: int, log=print):
    """The model to save for a head trained on cached embeddings of an image backbone:
    backbone + the trained head, one file that takes images.

    Its backbone must be the network the embedding cache was made with (the same weights,
    or for random init the same seed): on the first test images its pooled features must
    equal the cached ones, to within 5% of each feature's spread over the training images
    (float rounding of two forward passes stays orders of magnitude below, another network
    far above). Otherwise the job stops instead of saving a model that is not the one tested.
    """
    from genreflow.models.backbones import embedding_model
    from genreflow.models.heads import build_classifier, classifier_backbone
    from genreflow.models.heads import transfer_head_weights
    from genreflow.models.train import predict_proba
    from genreflow.tuning.model_data import split_dataset
    from genreflow.tuning.trial import head_config

    model = build_classifier(
        data.backbone, data.image_size, data.weights, head_config(best["params"]),
        len(data.genres), stats=data.stats, backbone_seed=data.backbone_seed,
    )
    transfer_head_weights(head, model)
    probe = data.examples["test"].iloc[: min(8, len(data.examples["test"]))]
    images = split_dataset(probe, data.backbone, data.image_size, batch_size, False, 0)
    rows = data.embedding_rows["test"]
    position = {key: i for i, key in enumerate(zip(rows["clip"], rows["segment"]))}
    cached = data.embeddings["test"][[position[key] for key in zip(probe["clip"], probe["segment"])]]
    features = predict_proba(embedding_model(classifier_backbone(model)), images)
    gap = float(np.max(np.abs(features - cached) / np.sqrt(data.stats[1])))
    if gap > 0.05:
        raise RuntimeError(
            f"the {data.backbone} backbone rebuilt for model.keras gives pooled features up "
            f"to {gap:.2f} spreads away from the cached embeddings of the same test images: "
            "it is not the network the embedding cache was made with (weights or "
            "screening.seed changed since?); rerun embed_images for it"
        )
    log(f"model.keras = backbone + head; its backbone reproduces the cached embeddings of "
        f"{len(probe)} test images to {gap:.1e} of their spread")
    return model


FINAL_OUTPUTS = ("metrics", "predictions", "history", "model")


# About 70 lines, most of them its docstring and the metrics.json record (a key per line);
# the building, scoring, logging and saving are the helpers below.
def train_final(
    best_trial_json: str,
    seed: int,
    inputs,  # genreflow.tuning.model_data.ModelInputs
    settings: Mapping,
    about: Mapping,
    training: Mapping,
    out: Mapping[str, str],
    log=print,
) -> None:
    """Train one model with its best hyperparameters and `seed`; test it once; write the
    `out` files (keys `FINAL_OUTPUTS`: metrics.json, predictions.csv, history.csv,
    model.keras).

    The model is its trial's (`genreflow.tuning.trial.trial_model`) trained by the trial's
    rule (`genreflow.models.train.train`: the epoch of lowest validation loss), so the final model
    is the tuned one. `settings` are the tuning settings (genres, image_size, weights,
    backbone_seed, patience); `training` may override `epochs` and `patience` (None: the
    tuned configuration's). A frozen backbone's head trains on the cached embeddings, and
    the saved model.keras is backbone + head (`full_image_model`); an audio backbone's model
    is its head, which takes an embedding.
    """
    from genreflow.models.train import train
    from genreflow.tuning.model_data import job_model_data
    from genreflow.tuning.trial import trial_model

    best = read_json(best_trial_json)
    check_best_trial(best, about, best_trial_json)
    params = dict(best["params"])
    if training.get("epochs") is not None:
        params["epochs"] = int(training["epochs"])
    patience = int(training.get("patience") or settings["patience"])
    data = job_model_data(best["backbone"], inputs, settings, log)
    built = trial_model(data, params, seed)
    log(_final_model_line(data, built, best, params, seed, patience))
    fitted = train(built.model, built.train_data, built.validation, epochs=params["epochs"],
                   patience=patience, batch_size=built.batch_size, seed=seed)
    scores, predictions = _scored_once(data, built, settings["genres"])
    segmented = any(scores[split]["tracks"]["n"] < scores[split]["examples"]["n"]
                    for split in scores)
    predictions.insert(0, "seed", int(seed))
    history = fitted.history
    history.insert(0, "seed", int(seed))
    save_model_atomic(_saved_model(data, best, built, log), out["model"])
    write_csv(out["history"], history)
    write_csv(out["predictions"], predictions)
    write_json(
        out["metrics"],
        {
            **about,
            "seed": int(seed),
            "params": params,
            "tuning": _tuning_record(best),
            "epochs": int(params["epochs"]),
            "patience": patience,
            "batch_size": built.batch_size,
            "epochs_run": int(len(history)),
            "best_epoch": fitted.best_epoch,
            "trained_on": built.trained_on,
            "segmented": segmented,
            **_headline(scores, segmented),
            "valid": scores["valid"],
            "test": scores["test"],
        },
    )
    log(
        f"seed {seed}: valid macro-F1 {scores['valid']['tracks']['macro_f1']:.3f}, "
        f"test macro-F1 {scores['test']['tracks']['macro_f1']:.3f} after {len(history)} "
        f"epochs (kept epoch {fitted.best_epoch})"
    )


def _final_model_line(data, built, best: Mapping, params: Mapping, seed: int,
                      patience: int) -> str:
    """The log's account of what a final model trains on and how."""
    described = {
        "embeddings": "embeddings (head on the cached embeddings)",
        "activations": f"activations (the last {built.cut and built.cut.k} layers trained on "
                       "the cached activations below them)",
        "images": "images",
    }[built.trained_on]
    sizes = ", ".join(f"{split} {len(split_inputs(data, built, split)[1])}" for split in SPLITS)
    return (
        f"{model_label(data.backbone, best['feature'])}, round {best.get('round')}, "
        f"seed {seed}: {sizes} {described}; {params['epochs']} epochs max, patience "
        f"{patience}, batch {built.batch_size}; "
        + ("random init" if data.weights is None else data.weights.describe())
    )


def _scored_once(data, built, genres: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """Scores and predictions of the trained model on the validation and test splits."""
    from genreflow.models.train import predict_proba

    scores, predictions = {}, []
    for split in ("valid", "test"):
        inputs, clips, segments, labels = split_inputs(data, built, split)
        probabilities = predict_proba(built.model, inputs)
        scores[split] = score(clips, labels, probabilities, genres)
        predictions.append(predictions_frame(split, clips, segments, labels, probabilities,
                                             genres))
    return scores, pd.concat(predictions, ignore_index=True)


def _saved_model(data, best: Mapping, built, log=print):
    """What model.keras holds: the whole network that takes the model's input (an image,
    or an audio backbone's embedding), checked against the trained model's predictions."""
    if built.trained_on == "embeddings" and not is_audio_backbone(data.backbone):
        return full_image_model(data, best, built.model, built.batch_size, log)
    if built.trained_on == "activations":
        return full_model_of_tail(data, best, built, log)
    return built.model


def _tuning_record(best: Mapping) -> dict:
    keys = ("value", "objective", "best_epoch", "valid_loss", "patience", "trial_number",
            "n_trials", "n_complete",
            "n_pruned", "n_failed", "n_interrupted", "sampler", "seed", "study_name",
            "inherited", "fixed")
    return {key: best[key] for key in keys if key in best}


# ------------------------------------------------------------------- across seeds


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
    for split, level, metric in _SCORES:
        if level == "examples" and not first["segmented"]:
            continue
        stats = summary[split][level][metric]
        flat[_column(split, level, metric) + "_mean"] = stats["mean"]
        flat[_column(split, level, metric) + "_std"] = stats["std"]
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


def _headline_keys(record: Mapping) -> list[str]:
    return [
        _column(split, level, metric)
        for split, level, metric in _SCORES
        if level == HEADLINE_LEVEL or record.get("segmented")
    ]


def format_mean_std(mean: float, std: float | None, digits: int = 3) -> str:
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ------------------------------------------------------------------- across models

SUMMARY_COLUMNS = (
    "rank", "chosen", "model", "backbone", "feature", "round", "n_seeds", "seeds",
    "valid_macro_f1_mean", "valid_macro_f1_std", "valid_loss_mean", "valid_accuracy_mean",
    "test_macro_f1_mean", "test_macro_f1_std", "test_macro_f1_low", "test_macro_f1_high",
    "test_accuracy_mean", "test_accuracy_std", "test_accuracy_low", "test_accuracy_high",
    "delta_macro_f1", "delta_macro_f1_low", "delta_macro_f1_high",
    "test_segment_macro_f1_mean", "test_segment_macro_f1_std",
    "test_segment_accuracy_mean", "test_segment_accuracy_std",
    "tuning_objective", "tuning_value", "corpus", "split", "weights", "pretrained",
    "test_absent_genres",
)


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
    bootstrap,
) -> pd.DataFrame:
    """One row per final model (all its seeds), ranked by validation (`rank_by_validation`),
    with a bootstrap interval on each test score and the paired difference of test
    macro-F1 to the chosen model (`genreflow.intervals`). Segment-level columns are empty
    when clips were not cut into segments."""
    from genreflow.intervals import paired_difference, same_tracks, score_intervals
    from genreflow.intervals import tracks_of_test_split

    rows, tracks = [], []
    for metrics_json, predictions_csv in zip(metrics_jsons, predictions_csvs, strict=True):
        record = read_json(metrics_json)
        row = {key: record.get(key) for key in SUMMARY_COLUMNS}
        row["seeds"] = " ".join(str(seed) for seed in record["seeds"])
        row["tuning_objective"] = record.get("tuning", {}).get("objective")
        row["tuning_value"] = record.get("tuning", {}).get("value")
        model_tracks = tracks_of_test_split(pd.read_csv(predictions_csv, dtype={"clip": str}),
                                            genres)
        for metric, interval in score_intervals(model_tracks.labels, model_tracks.predicted,
                                                len(genres), bootstrap).items():
            row[f"test_{metric}_low"], row[f"test_{metric}_high"] = interval.low, interval.high
        row["test_absent_genres"] = " ".join(model_tracks.absent(genres))
        rows.append(row)
        tracks.append(model_tracks)
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
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
    return order[list(SUMMARY_COLUMNS)]


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
    from genreflow.intervals import absent_note

    chosen = summary.iloc[0]
    lines = [f"> **{note}**\n" for note in notes]
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
                               "high": _finite_or_none(chosen[f"test_{metric}_high"])}
            for metric in ("macro_f1", "accuracy")
        },
        "interval": bootstrap.describe(),
        "caveats": list(notes),
    }


def _finite_or_none(value) -> float | None:
    return None if pd.isna(value) else float(value)


# One job's entry point: a parameter per input, param and output of its rule
# (summarize_final), passed by name from the thin script.
def summarize_final(
    metrics_jsons: Sequence[str],
    predictions_csvs: Sequence[str],
    about: Mapping,
    genres: Sequence[str],
    bootstrap: Mapping,
    out_summary: str,
    out_table: str,
    out_scores: str,
    out_headline: str,
    log=print,
) -> None:
    """Summary CSV, Table 5 in Markdown, a figure of the final models, and the headline."""
    from genreflow.intervals import Bootstrap
    from genreflow.plots.final import plot_final_scores

    bootstrap = Bootstrap.from_config(bootstrap)
    summary = summary_table(metrics_jsons, predictions_csvs, genres, bootstrap)
    notes = caveats(about)
    for note in notes:
        log("WARNING: " + note)
    write_csv(out_summary, summary)
    write_text_atomic(out_table, table5_markdown(summary, notes, bootstrap, genres))
    plot_final_scores(summary, out_scores, notes)
    write_json(out_headline, headline(summary, bootstrap, notes))
    chosen = summary.iloc[0]
    log(
        f"{len(summary)} final models; chosen on validation: {chosen['model']} round "
        f"{chosen['round']} (validation macro-F1 {_cell(chosen, 'valid_macro_f1')}), test "
        f"macro-F1 {_interval_cell(chosen, 'test_macro_f1')} ({bootstrap.describe()})"
    )
