"""One trial's model and its training: `trial_model` (also final models' builder),
`train_trial` and its cross-validated form."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from genreflow.run_info import BASELINE, is_audio_backbone
from genreflow.tuning.model_data import ModelData, activation_cache, pooled_examples, split_dataset
from genreflow.tuning.space import HEAD_KEYS, kind_of


class TrialFailed(Exception):
    """A trial that cannot give a score (diverged, out of memory): failed and counted."""


def head_config(params: Mapping) -> dict:
    return {key: params[key] for key in HEAD_KEYS}


def trains_on_embeddings(backbone: str, params: Mapping) -> bool:
    """Whether a model of `params` is a head on the cached embeddings: a frozen backbone
    gives exactly the cached embeddings (tests/test_models.py), so the head trains on them
    instead of running the backbone every epoch. Audio backbones always are."""
    from genreflow.models.backbones import backbone_spec

    if kind_of(backbone) == "baseline":
        return False
    if is_audio_backbone(backbone):
        return True  # frozen_backbone_plan fixed trainable_layers to 0
    value = params["trainable_layers"]
    return (backbone_spec(backbone).last_block_layers if value == "last_block" else int(value)) == 0


def build_model_from_best(
    best: Mapping,
    image_size: int,
    weights,
    n_classes: int,
    stats=None,
    backbone_seed: int = 0,
    seed: int | None = None,
):
    """The compiled image model of a best_trial.json: the backbone classifier (RGB 0..255
    images; `split_dataset` applies the backbone's preprocess_input) with `stats` in its
    head, drawn with `seed`, or the baseline CNN (`weights`, `stats`, `backbone_seed` and
    `seed` unused)."""
    params = best["params"]
    if best["backbone"] == BASELINE:
        from genreflow.baseline import build_baseline_cnn

        return build_baseline_cnn(params, image_size, n_classes)
    from genreflow.models.heads import build_classifier

    return build_classifier(
        best["backbone"], image_size, weights, head_config(params), n_classes, seed=seed,
        stats=stats, backbone_seed=backbone_seed,
    )


# ------------------------------------------------------------------------------ trials


def objective_value(scores: Mapping, objective: str) -> float:
    """A round's objective from `genreflow.scoring.score` of the validation split, per
    track (segment probabilities averaged): accuracy, macro-F1 or mean cross-entropy."""
    metric = {"valid_accuracy": "accuracy", "valid_macro_f1": "macro_f1", "valid_loss": "loss"}
    return float(scores["tracks"][metric[objective]])


def out_of_memory_errors() -> tuple:
    import tensorflow as tf

    return (MemoryError, tf.errors.ResourceExhaustedError)


@dataclass
class TrialModel:
    """A trial's compiled model and what `genreflow.models.train.train` feeds it: `trained_on`
    says which inputs ("embeddings", "activations" of the frozen layers, or "images");
    a model on activations keeps the backbone it trains the tail of, and the cut."""

    model: Any
    train_data: Any
    validation: Any  # genreflow.models.train.Validation
    batch_size: int
    trained_on: str = "images"
    backbone: Any = None
    cut: Any = None  # genreflow.activations.BackboneCut


def tail_trial_model(data: ModelData, params: Mapping, seed: int, fold=None) -> TrialModel:
    """A fine-tuning model that trains its backbone's last k layers on the cached
    activations below them (`genreflow.activations`); built, seeded and fed as
    `build_classifier`'s end-to-end model is, so that it is the same model.

    `fold` = (held, stats): a cross-validation fold of the pooled train and validation
    examples (`pooled_examples`; `held` marks the fold's validation rows) and the head's
    statistics from the other folds' embeddings, instead of the train and valid splits."""
    from genreflow.activations import activation_dataset, build_tail_classifier, cut_backbone
    from genreflow.activations import model_input
    from genreflow.models.backbones import build_backbone, resolve_trainable_layers
    from genreflow.models.train import Validation
    from genreflow.models.train import seed_everything

    backbone = build_backbone(data.backbone, data.image_size, data.weights,
                              seed=data.backbone_seed)
    seed_everything(seed)
    k = resolve_trainable_layers(data.backbone, params["trainable_layers"], len(backbone.layers))
    cut = cut_backbone(backbone, k)
    stats = data.stats if fold is None else fold[1]
    model = build_tail_classifier(cut, head_config(params), len(data.genres), stats=stats)
    cache = activation_cache(data)
    if fold is None:
        train, valid = data.examples["train"], data.examples["valid"]
        train_values, train_rows = cache.get(cut, "train"), None
        valid_values = cache.get(cut, "valid")
    else:
        pool, held = pooled_examples(data), np.asarray(fold[0])
        train, valid = pool[~held], pool[held]
        train_values, train_rows = cache.get(cut, "pool"), np.flatnonzero(~held)
        valid_values = [values[held] for values in train_values]
    seed_everything(seed)
    batch_size = int(params["batch_size"])
    train_data = activation_dataset(train_values, train["label"].to_numpy(), batch_size, True,
                                    seed, rows=train_rows)
    validation = Validation(model_input(valid_values), valid["label"].to_numpy(),
                            valid["clip"].to_numpy(), data.genres)
    return TrialModel(model, train_data, validation, batch_size, "activations", backbone, cut)


def trial_model(data: ModelData, params: Mapping, seed: int) -> TrialModel:
    """The model of one trial's `params`: a head on the cached embeddings, a backbone
    classifier fine-tuned on the cached activations of its frozen layers (on images when
    training images are augmented), or the baseline CNN; the head seeded with `seed`."""
    from genreflow.activations import check_no_augmentation
    from genreflow.models.heads import build_head
    from genreflow.models.train import Validation, seed_everything

    n_classes = len(data.genres)
    batch_size = int(params["batch_size"])
    if trains_on_embeddings(data.backbone, params):
        x, rows = data.embeddings, data.embedding_rows
        model = build_head(x["train"].shape[1], head_config(params), n_classes, seed=seed,
                           stats=data.stats)
        validation = Validation(x["valid"], rows["valid"]["label"], rows["valid"]["clip"],
                                data.genres)
        return TrialModel(model, (x["train"], rows["train"]["label"]), validation, batch_size,
                          "embeddings")
    if data.kind == "transfer" and check_no_augmentation(data.log):
        return tail_trial_model(data, params, seed)
    if data.kind == "transfer":
        best = {"backbone": data.backbone, "params": params}
        model = build_model_from_best(best, data.image_size, data.weights, n_classes,
                                      stats=data.stats, backbone_seed=data.backbone_seed,
                                      seed=seed)
    else:
        from genreflow.baseline import build_baseline_cnn

        seed_everything(seed)
        model = build_baseline_cnn(params, data.image_size, n_classes)
    seed_everything(seed)
    examples = data.examples
    train = split_dataset(examples["train"], data.backbone, data.image_size, batch_size, True, seed)
    valid = split_dataset(examples["valid"], data.backbone, data.image_size, batch_size, False, seed)
    validation = Validation(valid, examples["valid"]["label"].to_numpy(),
                            examples["valid"]["clip"].to_numpy(), data.genres)
    return TrialModel(model, train, validation, batch_size)


@dataclass
class TrialResult:
    value: float
    best_epoch: int
    curve: list[float]
    valid_loss: float


def _custom_gradient_names() -> set[str]:
    from tensorflow.python.framework import ops

    return set(getattr(getattr(ops, "_gradient_registry", None), "_registry", None) or ())


def _forget_custom_gradients(kept: set[str]) -> None:
    """Drop the gradient functions that tf.custom_gradient registered since `kept`.

    Each graph-mode use of tf.custom_gradient (Keras' TF backend has some in every
    train step) registers a uniquely named gradient in TensorFlow's global registry, which
    keeps the whole traced graph alive: about 5 MB per fit() of a small head, more for a
    backbone, and clear_session() does not free it (keras-team/keras#17458). Once a trial's
    model is gone nothing uses its entries.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if registry is None:  # another TensorFlow layout: nothing to clean
        return
    for name in [n for n in registry if n not in kept and n.startswith("CustomGradient-")]:
        del registry[name]


def train_trial(
    trial, params: Mapping, data: ModelData, objective: str, seed: int, prune: bool,
    patience: int, cv_folds: int = 1,
):
    """Train one trial's model as final models are trained (`genreflow.models.train.train`: the
    epoch of lowest validation loss is kept, `patience` epochs without a lower one stop
    it); its value is the objective at that epoch. Every epoch's objective is reported to
    Optuna, whose pruner may stop the trial. With `cv_folds` > 1 the value is the mean over
    folds instead (`cross_validated_trial`)."""
    import keras

    from genreflow.models.train import Diverged, train

    gradients = _custom_gradient_names()
    curve: list[float] = []

    def report(epoch: int, scores: Mapping) -> None:
        value = objective_value(scores, objective)
        curve.append(value)
        trial.report(value, epoch)
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {value:.4f}")

    built = None
    try:
        if cv_folds > 1:
            return cross_validated_trial(trial, params, data, objective, seed, prune, patience,
                                         cv_folds)
        built = trial_model(data, params, seed)
        try:
            fitted = train(built.model, built.train_data, built.validation,
                           epochs=int(params["epochs"]), patience=patience,
                           batch_size=built.batch_size, seed=seed, on_epoch=report)
        except Diverged as error:
            raise TrialFailed(str(error)) from None
        finally:
            trial.set_user_attr("epochs_run", len(curve))
            trial.set_user_attr("curve", [round(value, 6) for value in curve])
        best = fitted.best_scores["tracks"]
        return TrialResult(objective_value(fitted.best_scores, objective), fitted.best_epoch,
                           curve, float(best["loss"]))
    finally:
        # One process runs many trials: drop the model, Keras' global state (layer name
        # counters, cached functions) and TensorFlow's registered gradients, so that
        # memory does not grow trial after trial (benchmarks/tuning_memory.py).
        del built
        keras.backend.clear_session()
        _forget_custom_gradients(gradients)
        gc.collect()


def cv_pool(data: ModelData, folds: int, seed: int):
    """The train and validation embeddings pooled (the test split never enters), and each
    row's fold (`genreflow.folds.track_folds`: whole tracks, stratified by genre)."""
    from genreflow.folds import track_folds

    x = np.concatenate([data.embeddings["train"], data.embeddings["valid"]])
    rows = {key: np.concatenate([data.embedding_rows["train"][key], data.embedding_rows["valid"][key]])
            for key in ("clip", "segment", "label")}
    return x, rows, track_folds(rows["clip"], rows["label"], folds, seed)


def cross_validated_trial(trial, params, data: ModelData, objective: str, seed: int, prune: bool,
                          patience: int, folds: int) -> TrialResult:
    """A head on the cached embeddings (or a fine-tuning model on the cached activations),
    trained once per fold of the pooled train and validation tracks and scored on the
    held-out fold, by the same rule as a single split; the trial's value (and its loss) is
    the mean over folds. The running mean is reported to Optuna after each fold, so that the
    pruner can stop a hopeless trial early."""
    import keras

    from genreflow.folds import track_folds
    from genreflow.models.heads import build_head, feature_statistics
    from genreflow.models.train import Diverged, Validation, train

    x, rows, fold = cv_pool(data, folds, data.fold_seed)
    fine_tunes = not trains_on_embeddings(data.backbone, params)
    if fine_tunes:  # the same tracks make the same folds (folds.track_folds)
        pool = pooled_examples(data)
        pool_fold = track_folds(pool["clip"].to_numpy(), pool["label"].to_numpy(), folds,
                                data.fold_seed)
        fold_of_track = dict(zip(rows["clip"], fold))
        if any(fold_of_track.get(clip) != k for clip, k in zip(pool["clip"], pool_fold)):
            raise RuntimeError("the images and the embedding cache of the train and validation "
                               "splits hold other tracks: rerun embed_images for "
                               f"{data.backbone}")
    values, losses, epochs = [], [], []
    for k in range(folds):
        held, kept = fold == k, fold != k
        stats = feature_statistics(x[kept])
        if fine_tunes:
            keras.backend.clear_session()  # the previous fold's backbone
            built = tail_trial_model(data, params, seed, fold=(pool_fold == k, stats))
            model, train_data, validation = built.model, built.train_data, built.validation
        else:
            model = build_head(x.shape[1], head_config(params), len(data.genres), seed=seed,
                               stats=stats)
            train_data = (x[kept], rows["label"][kept])
            validation = Validation(x[held], rows["label"][held], rows["clip"][held],
                                    data.genres)
        try:
            fitted = train(model, train_data, validation,
                           epochs=int(params["epochs"]), patience=patience,
                           batch_size=int(params["batch_size"]), seed=seed)
        except Diverged as error:
            raise TrialFailed(f"fold {k + 1} of {folds}: {error}") from None
        values.append(objective_value(fitted.best_scores, objective))
        losses.append(float(fitted.best_scores["tracks"]["loss"]))
        epochs.append(fitted.best_epoch)
        trial.set_user_attr("fold_values", [round(value, 6) for value in values])
        running = float(np.mean(values))
        trial.report(running, k)
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {k + 1} of {folds} at {running:.4f}")
    trial.set_user_attr("epochs_run", int(sum(epochs)))
    trial.set_user_attr("fold_best_epochs", epochs)
    return TrialResult(float(np.mean(values)), int(np.median(epochs)), values,
                       float(np.mean(losses)))


