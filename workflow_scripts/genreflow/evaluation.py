"""The final evaluation: each tuned best configuration (and the baseline CNN) is trained
again with its best hyperparameters, once per seed, tested once on the held-out split,
and the seeds are summarised as mean ± standard deviation (the study's Table 5).

One Snakemake job trains one (model, seed), so seeds run in parallel on a cluster and a
killed job loses one seed; `combine_seeds` then writes the model's files and
`summarize_final` the table across models. Track-level scores (segment probabilities
averaged per track) come from `genreflow.screening.score`, as in screening; the track
level is the headline, and equals the clip level when clips are not cut into segments.

TensorFlow is imported only inside the functions that train, so that the combining and
summarising jobs start in a fraction of a second.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreflow.io import read_json, write_csv, write_json, write_text_atomic
from genreflow.screening import (
    SPLITS,
    caveats,
    predictions_frame,
    score,
    track_probabilities,
)

BASELINE = "baseline_cnn"

BACKBONE_NAMES = {
    "efficientnetb0": "EfficientNetB0",
    "inceptionv3": "InceptionV3",
    "resnet50": "ResNet50",
    "vgg16": "VGG16",
    "musicnn_msd": "musicnn (MSD)",
    "musicnn_mtt": "musicnn (MTT)",
    BASELINE: "Baseline CNN",
}
FEATURE_NAMES = {
    "mel": "mel spectrogram",
    "mfcc": "MFCC",
    "stft": "STFT",
    "spectrogram": "spectrogram",
    "chroma": "chromagram",
    "audio": "audio",
}

# Scores reported per model: (split, level, metric). "tracks" averages the segment
# probabilities of each track; "examples" scores every image (segment) on its own.
HEADLINE_LEVEL = "tracks"
_SCORES = [
    (split, level, metric)
    for split in ("test", "valid")
    for level in ("tracks", "examples")
    for metric in ("macro_f1", "accuracy")
]


def model_label(backbone: str, feature: str) -> str:
    """Human-readable model name, e.g. 'VGG16 + mel spectrogram'."""
    return (
        f"{BACKBONE_NAMES.get(backbone, backbone)} + "
        f"{FEATURE_NAMES.get(feature, feature)}"
    )


def _column(split: str, level: str, metric: str) -> str:
    # Track-level scores carry the plain names (test_macro_f1), as in screening.
    infix = "" if level == HEADLINE_LEVEL else "segment_"
    return f"{split}_{infix}{metric}"


# ---------------------------------------------------------------------- model inputs


def tuning_model_builder(best: Mapping, image_size: int, weights_path, n_classes: int, stats=None):
    """Default model builder: the tuning stage's own, so the final model is the tuned one."""
    from genreflow.tuning import build_model_from_best

    return build_model_from_best(best, image_size, weights_path, n_classes, stats=stats)


def tuning_data_builder(best: Mapping, index_csv: str, manifests: Mapping[str, str],
                        image_size: int, genres: Sequence[str], seed: int):
    """Default data builder: the tuning stage's datasets (train shuffled with `seed`;
    valid and test in the order of `.examples`), with the preprocessing it tuned with."""
    from genreflow.tuning import training_data

    return training_data(best, index_csv, manifests, image_size, genres, seed=seed)


def backbone_statistics(model, backbone: str, paths: Sequence[str], image_size: int,
                        batch_size: int = 32):
    """Mean and variance of the pooled backbone features of `paths` (the training images)
    under `model`'s own backbone, for the head's input standardisation.

    With pretrained weights these equal the statistics of the screening cache that tuning
    used. With random initialisation (`backbones.weights: none`) every build draws other
    backbone weights, so the cache's features come from a different network, at a scale
    that can differ by orders of magnitude; hence the model's own. None for models
    without a backbone (the baseline CNN).
    """
    from genreflow.data import image_dataset
    from genreflow.models import (
        backbone_spec,
        classifier_backbone,
        embedding_model,
        feature_statistics,
    )

    try:
        inner = classifier_backbone(model)
    except ValueError:
        return None
    images = image_dataset(list(paths), None, image_size, batch_size, shuffle=False, seed=0,
                           preprocess=backbone_spec(backbone).preprocess_input)
    return feature_statistics(embedding_model(inner).predict(images, verbose=0))


def embedding_training_data(embeddings_npz: str, manifests: Mapping[str, str],
                            genres: Sequence[str]):
    """TrainingData of an audio backbone: (embeddings, labels) arrays per split, and the
    examples' clip/segment/label frames in the same order."""
    from genreflow.io import load_embeddings
    from genreflow.screening import split_rows
    from genreflow.tuning import TrainingData

    cache = load_embeddings(embeddings_npz)
    rows = split_rows(cache.clip, manifests)
    arrays, examples = {}, {}
    for split in SPLITS:
        picked = rows[split]
        arrays[split] = (cache.embeddings[picked], cache.label[picked])
        examples[split] = pd.DataFrame({"clip": cache.clip[picked],
                                        "segment": cache.segment[picked],
                                        "label": cache.label[picked]})
    return TrainingData(**arrays, examples=examples)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _headline(scores: Mapping, segmented: bool) -> dict:
    """Flat copies of the scores a table needs, from a {split: score(...)} mapping."""
    flat = {}
    for split, level, metric in _SCORES:
        if level == "examples" and not segmented:
            continue
        flat[_column(split, level, metric)] = scores[split][level][metric]
    return flat


# -------------------------------------------------------------------------- one seed


def train_final(
    best_trial_json: str,
    seed: int,
    index_csv: str,
    manifests: Mapping[str, str],
    image_size: int,
    weights_path: str | None,
    genres: Sequence[str],
    about: Mapping,
    training: Mapping,
    out_metrics: str,
    out_predictions: str,
    out_history: str,
    out_model: str,
    build_model: Callable | None = None,
    build_data: Callable | None = None,
    embeddings_npz: str | None = None,
    log=print,
) -> None:
    """Train one model with its best hyperparameters and `seed`; test it once.

    `training` holds `patience` and `epochs` (None: the tuned `params["epochs"]`).
    `build_model(best, image_size, weights_path, n_classes, stats=...)` and
    `build_data(best, index_csv, manifests, image_size, genres, seed)` (returning
    `.train`, `.valid`, `.test` datasets and `.examples` frames) default to the tuning
    stage's `build_model_from_best` and `training_data`.

    A backbone model is built twice from the same seed: once to measure its pooled
    features on the training images (`backbone_statistics`), then with those statistics
    in its head; the seed makes both builds draw the same backbone weights.

    An audio backbone (musicnn) has no images: its head is trained on the cached
    embeddings (`embeddings_npz`) and the saved model takes an embedding as input.
    """
    from genreflow.audio_embeddings import is_audio_backbone
    from genreflow.models import build_head, feature_statistics, predict_proba
    from genreflow.models import seed_everything, train
    from genreflow.tuning import head_config

    build_model = build_model or tuning_model_builder
    build_data = build_data or tuning_data_builder
    best = read_json(best_trial_json)
    check_best_trial(best, about, best_trial_json)
    params = best["params"]
    backbone = best["backbone"]
    on_embeddings = is_audio_backbone(backbone)
    if on_embeddings:
        if embeddings_npz is None:
            raise ValueError(f"{backbone} trains on embeddings, but no embedding cache was given")
        data = embedding_training_data(embeddings_npz, manifests, genres)
    else:
        data = build_data(best, index_csv, manifests, image_size, genres, seed)
    examples = data.examples
    epochs = int(training["epochs"] if training.get("epochs") is not None else params["epochs"])
    batch_size = int(params.get("batch_size", 32))
    log(
        f"{model_label(backbone, best['feature'])}, round {best.get('round')}, seed {seed}: "
        + ", ".join(f"{split} {len(examples[split])}" for split in SPLITS)
        + f" {'embeddings' if on_embeddings else 'images'}; {epochs} epochs max, "
        + f"batch {batch_size}; "
        + ("head on cached audio embeddings" if on_embeddings
           else "random init" if weights_path is None else f"weights {weights_path}")
    )
    stats = None
    if on_embeddings:
        x_train = data.train[0]
        model = build_head(x_train.shape[1], head_config(params), len(genres), seed=seed,
                           stats=feature_statistics(x_train))
    else:
        if backbone != BASELINE:
            seed_everything(seed)
            probe = build_model(best, image_size, weights_path, len(genres), stats=None)
            stats = backbone_statistics(probe, backbone, examples["train"]["image"],
                                        image_size, batch_size)
            del probe
        seed_everything(seed)
        model = build_model(best, image_size, weights_path, len(genres), stats=stats)
    history = train(
        model, data.train, data.valid, epochs=epochs, batch_size=batch_size,
        patience=int(training["patience"]), seed=seed, log=None,
    )
    scores, predictions = {}, []
    for split in ("valid", "test"):
        frame = examples[split]
        inputs = getattr(data, split)
        probabilities = predict_proba(model, inputs[0] if on_embeddings else inputs)
        clips, labels = frame["clip"].to_numpy(), frame["label"].to_numpy()
        scores[split] = score(clips, labels, probabilities, genres)
        predictions.append(
            predictions_frame(split, clips, frame["segment"].to_numpy(), labels,
                              probabilities, genres)
        )
    segmented = any(scores[split]["tracks"]["n"] < scores[split]["examples"]["n"]
                    for split in scores)
    predictions = pd.concat(predictions, ignore_index=True)
    predictions.insert(0, "seed", int(seed))
    history.insert(0, "seed", int(seed))
    save_model_atomic(model, out_model)
    write_csv(out_history, history)
    write_csv(out_predictions, predictions)
    write_json(
        out_metrics,
        {
            **about,
            "seed": int(seed),
            "params": params,
            "tuning": _tuning_record(best),
            "epochs": epochs,
            "batch_size": batch_size,
            "epochs_run": int(len(history)),
            "best_epoch": int(history["val_loss"].idxmin()) + 1,
            "segmented": segmented,
            **_headline(scores, segmented),
            "valid": scores["valid"],
            "test": scores["test"],
        },
    )
    log(
        f"seed {seed}: valid macro-F1 {scores['valid']['tracks']['macro_f1']:.3f}, "
        f"test macro-F1 {scores['test']['tracks']['macro_f1']:.3f} after {len(history)} epochs"
    )


def _tuning_record(best: Mapping) -> dict:
    keys = ("value", "objective", "best_epoch", "trial_number", "n_trials", "n_complete",
            "n_pruned", "n_failed", "n_interrupted", "sampler", "seed", "study_name",
            "inherited", "fixed")
    return {key: best[key] for key in keys if key in best}


def track_predictions(predictions: pd.DataFrame, genres: Sequence[str]) -> pd.DataFrame:
    """Track-level rows of a predictions table: each track's segment probabilities
    averaged (`genreflow.screening.track_probabilities`) and the genre they pick.

    Works per seed and split when the table has those columns (as predictions.csv does).
    """
    columns = [f"p_{genre}" for genre in genres]
    keys = [key for key in ("seed", "split") if key in predictions.columns]
    groups = predictions.groupby(keys, sort=True) if keys else [((), predictions)]
    frames = []
    for key, group in groups:
        tracks, probabilities = track_probabilities(
            group["clip"].to_numpy(), group[columns].to_numpy(dtype=np.float64)
        )
        truth = group.groupby("clip")["true"].agg(_single_value)
        frame = pd.DataFrame({"clip": tracks, "true": truth.loc[tracks].to_numpy()})
        frame["predicted"] = [genres[i] for i in probabilities.argmax(axis=1)]
        frame[columns] = probabilities
        for name, value in zip(keys, key if isinstance(key, tuple) else (key,)):
            frame.insert(keys.index(name), name, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _single_value(values: pd.Series):
    if values.nunique() != 1:
        raise ValueError(f"segments of one track disagree on its genre: {sorted(set(values))}")
    return values.iloc[0]


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
    "model", "backbone", "feature", "round", "n_seeds", "seeds",
    "test_macro_f1_mean", "test_macro_f1_std", "test_accuracy_mean", "test_accuracy_std",
    "valid_macro_f1_mean", "valid_macro_f1_std", "valid_accuracy_mean", "valid_accuracy_std",
    "test_segment_macro_f1_mean", "test_segment_macro_f1_std",
    "test_segment_accuracy_mean", "test_segment_accuracy_std",
    "tuning_objective", "tuning_value", "corpus", "weights", "pretrained",
)


def summary_table(metrics_jsons: Sequence[str]) -> pd.DataFrame:
    """One row per final model (all its seeds), best test macro-F1 first.

    Ranking by the test score is reporting, not selection: nothing downstream uses it.
    Segment-level columns are empty when clips were not cut into segments.
    """
    rows = []
    for path in metrics_jsons:
        record = read_json(path)
        row = {key: record.get(key) for key in SUMMARY_COLUMNS}
        row["seeds"] = " ".join(str(seed) for seed in record["seeds"])
        row["tuning_objective"] = record.get("tuning", {}).get("objective")
        row["tuning_value"] = record.get("tuning", {}).get("value")
        rows.append(row)
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    summary = summary.sort_values(
        ["test_macro_f1_mean", "backbone", "feature", "round"],
        ascending=[False, True, True, True], kind="mergesort",
    )
    return summary.reset_index(drop=True)


def _cell(row, column: str) -> str:
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    if mean is None or pd.isna(mean):
        return "–"
    return format_mean_std(float(mean), None if pd.isna(std) else float(std))


def table5_markdown(summary: pd.DataFrame, notes: Sequence[str]) -> str:
    """The study's Table 5: model and round, macro-F1 on the test split, best first."""
    segmented = summary["test_segment_macro_f1_mean"].notna().any()
    n_seeds = sorted(set(summary["n_seeds"]))
    if n_seeds == [1]:
        spread = "one seed, so no spread"
    elif len(n_seeds) == 1:
        spread = f"mean ± sample sd over {n_seeds[0]} seeds"
    else:
        spread = "mean ± sample sd over the seeds counted in the last column"
    lines = [f"> **{note}**\n" for note in notes]
    lines.append(f"Test macro-F1 of the final models ({spread}), best first.\n")
    header = ["rank", "model", "round", "test macro-F1" + (" (tracks)" if segmented else "")]
    if segmented:
        header.append("test macro-F1 (segments)")
    header += ["test accuracy", "seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---:", "---", "---:"] + ["---:"] * (len(header) - 3)) + "|")
    for rank, row in enumerate(summary.to_dict("records"), start=1):
        cells = [str(rank), row["model"], str(row["round"]), _cell(row, "test_macro_f1")]
        if segmented:
            cells.append(_cell(row, "test_segment_macro_f1"))
        cells += [_cell(row, "test_accuracy"), str(row["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize_final(
    metrics_jsons: Sequence[str],
    about: Mapping,
    out_summary: str,
    out_table: str,
    out_scores: str,
    log=print,
) -> None:
    """Summary CSV, Table 5 in Markdown and a bar chart of the final models."""
    from genreflow.plots import plot_final_scores

    summary = summary_table(metrics_jsons)
    notes = caveats(about)
    for note in notes:
        log("WARNING: " + note)
    write_csv(out_summary, summary)
    write_text_atomic(out_table, table5_markdown(summary, notes))
    plot_final_scores(summary, out_scores, notes)
    best = summary.iloc[0]
    log(
        f"{len(summary)} final models; best: {best['model']} round {best['round']}, "
        f"test macro-F1 {_cell(best, 'test_macro_f1')}"
    )


# ----------------------------------------------------------------------- workflow

_BEST_TRIAL = re.compile(
    r"(?:^|/)results/tuning/(?P<backbone>[^/]+)/(?P<feature>[^/]+)/round_(?P<round>\d+)/best_trial\.json$"
)


def parse_best_trial_path(path: str) -> tuple[str, str, int]:
    """results/tuning/{backbone}/{feature}/round_{n}/best_trial.json -> (backbone, feature, n)."""
    match = _BEST_TRIAL.search(str(path).replace(os.sep, "/"))
    if match is None:
        raise ValueError(f"{path} is not a results/tuning/.../round_<n>/best_trial.json path")
    return match["backbone"], match["feature"], int(match["round"])


def final_about(run_about: Mapping, backbone: str, feature: str, round_: int) -> dict:
    """What a final model's files and figures say about it. The baseline CNN has no
    backbone to pretrain, so the not-pretrained caveat does not apply to it."""
    from genreflow.screening import backbone_about

    about: dict[str, Any] = {**backbone_about(run_about, backbone), "backbone": backbone,
                             "feature": feature, "round": int(round_)}
    if backbone == BASELINE:
        about["weights"] = "from scratch"
        about.pop("pretrained", None)
    return dict(sorted(about.items()))
