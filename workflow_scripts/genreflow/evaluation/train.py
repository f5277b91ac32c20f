"""One final model, one seed (`train_final`): built from its best_trial.json by
`genreflow.models.build` as its trials were, trained by `genreflow.models.train`'s rule,
tested once, and saved whole (`genreflow.models.assemble`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from genreflow.evaluation import SCORES, score_column
from genreflow.io import read_json, write_csv, write_json
from genreflow.names import SPLITS, model_label
from genreflow.scoring import predictions_frame, score


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


def _headline(scores: Mapping, segmented: bool) -> dict:
    """Flat copies of the scores a table needs, from a {split: score(...)} mapping."""
    flat = {}
    for split, level, metric in SCORES:
        if level == "examples" and not segmented:
            continue
        flat[score_column(split, level, metric)] = scores[split][level][metric]
    return flat


FINAL_OUTPUTS = ("metrics", "predictions", "history", "model")


# About 70 lines, most of them its docstring and the metrics.json record (a key per line);
# the building, scoring, logging and saving are the helpers below.
def train_final(
    best_trial_json: str,
    seed: int,
    inputs,  # genreflow.models.data.ModelInputs
    settings,  # genreflow.models.data.ModelSettings
    about: Mapping,
    training: Mapping,
    out: Mapping[str, str],
    log=print,
) -> None:
    """Train one model with its best hyperparameters and `seed`; test it once; write the
    `out` files (keys `FINAL_OUTPUTS`: metrics.json, predictions.csv, history.csv,
    model.keras).

    The model is its trial's (`genreflow.models.build.build_model`) trained by the trial's
    rule (`genreflow.models.train.train`: the epoch of lowest validation loss), so the final model
    is the tuned one. `settings` are its trials' (`ModelSettings`); `training` may override
    `epochs` and `patience` (None: the tuned configuration's). A frozen backbone's head
    trains on the cached embeddings, and the saved model.keras is backbone + head
    (`genreflow.models.assemble`); an audio backbone's model is its head, which takes an
    embedding.
    """
    from genreflow.models.assemble import save_model_atomic, saved_model
    from genreflow.models.build import build_model
    from genreflow.models.data import job_model_data
    from genreflow.models.train import train

    best = read_json(best_trial_json)
    check_best_trial(best, about, best_trial_json)
    params = dict(best["params"])
    if training.get("epochs") is not None:
        params["epochs"] = int(training["epochs"])
    patience = int(training.get("patience") or settings.patience)
    data = job_model_data(best["backbone"], inputs, settings, log)
    built = build_model(data, params, seed)
    log(_final_model_line(data, built, best, params, seed, patience))
    fitted = train(built.model, built.train_data, built.validation, epochs=params["epochs"],
                   patience=patience, batch_size=built.batch_size, seed=seed)
    scores, predictions = _scored_once(data, built, settings.genres)
    segmented = any(scores[split]["tracks"]["n"] < scores[split]["examples"]["n"]
                    for split in scores)
    predictions.insert(0, "seed", int(seed))
    history = fitted.history
    history.insert(0, "seed", int(seed))
    save_model_atomic(saved_model(data, best, built, log), out["model"])
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
            # augmented views among the training rows (params' augment; 0: none)
            "train_views": int(built.n_views),
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
    from genreflow.models.build import split_inputs

    sizes = ", ".join(f"{split} {len(split_inputs(data, built, split)[1])}" for split in SPLITS)
    if built.n_views:
        sizes += f" (train + {built.n_views} augmented views of its tracks)"
    return (
        f"{model_label(data.backbone, best['feature'])}, round {best.get('round')}, "
        f"seed {seed}: {sizes} {described}; {params['epochs']} epochs max, patience "
        f"{patience}, batch {built.batch_size}; "
        + ("random init" if data.weights is None else data.weights.describe())
    )


def _scored_once(data, built, genres: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """Scores and predictions of the trained model on the validation and test splits."""
    from genreflow.models.build import split_inputs
    from genreflow.models.train import predict_proba

    scores, predictions = {}, []
    for split in ("valid", "test"):
        inputs, clips, segments, labels = split_inputs(data, built, split)
        probabilities = predict_proba(built.model, inputs)
        scores[split] = score(clips, labels, probabilities, genres)
        predictions.append(predictions_frame(split, clips, segments, labels, probabilities,
                                             genres))
    return scores, pd.concat(predictions, ignore_index=True)


def _tuning_record(best: Mapping) -> dict:
    keys = ("value", "objective", "best_epoch", "valid_loss", "patience", "trial_number",
            "n_trials", "n_complete",
            "n_pruned", "n_failed", "n_interrupted", "sampler", "seed", "study_name",
            "inherited", "fixed")
    return {key: best[key] for key in keys if key in best}
