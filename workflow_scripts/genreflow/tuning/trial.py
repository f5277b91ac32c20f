"""One trial's training (`train_trial`) and its cross-validated form: the model is
`genreflow.models.build`'s, trained by `genreflow.models.train`'s rule, its value the
round's objective, reported to Optuna's pruner as it goes."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import optuna

from genreflow.models.build import (
    build_model,
    build_tail_model,
    head_config,
    trains_on_embeddings,
    with_view_embeddings,
)
from genreflow.models.data import ModelData, pooled_examples


class TrialFailed(Exception):
    """A trial that cannot give a score (diverged, out of memory): failed and counted."""


# ------------------------------------------------------------------------------ trials


def objective_value(scores: Mapping, objective: str) -> float:
    """A round's objective from `genreflow.scoring.score` of the validation split, per
    track (segment probabilities averaged): accuracy, macro-F1 or mean cross-entropy."""
    metric = {"valid_accuracy": "accuracy", "valid_macro_f1": "macro_f1", "valid_loss": "loss"}
    return float(scores["tracks"][metric[objective]])


def out_of_memory_errors() -> tuple:
    import tensorflow as tf

    return (MemoryError, tf.errors.ResourceExhaustedError)


@dataclass(frozen=True)
class TrialRule:
    """How every trial of a round is trained and scored: its `objective`, the early
    stopping `patience`, `cv_folds` (> 1: the mean over folds of the pooled train and
    validation tracks), and whether the pruner may stop it."""

    objective: str
    patience: int
    cv_folds: int = 1
    prune: bool = True


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


def train_trial(trial, params: Mapping, data: ModelData, seed: int, rule: TrialRule):
    """Train one trial's model as final models are trained (`genreflow.models.train.train`: the
    epoch of lowest validation loss is kept, `rule.patience` epochs without a lower one stop
    it); its value is the objective at that epoch. Every epoch's objective is reported to
    Optuna, whose pruner may stop the trial. With `rule.cv_folds` > 1 the value is the mean
    over folds instead (`cross_validated_trial`)."""
    import keras

    from genreflow.models.train import Diverged, train

    gradients = _custom_gradient_names()
    curve: list[float] = []

    def report(epoch: int, scores: Mapping) -> None:
        value = objective_value(scores, rule.objective)
        curve.append(value)
        trial.report(value, epoch)
        if rule.prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {value:.4f}")

    built = None
    try:
        if rule.cv_folds > 1:
            return cross_validated_trial(trial, params, data, seed, rule)
        built = build_model(data, params, seed)
        try:
            fitted = train(built.model, built.train_data, built.validation,
                           epochs=int(params["epochs"]), patience=rule.patience,
                           batch_size=built.batch_size, seed=seed, on_epoch=report)
        except Diverged as error:
            raise TrialFailed(str(error)) from None
        finally:
            trial.set_user_attr("epochs_run", len(curve))
            trial.set_user_attr("curve", [round(value, 6) for value in curve])
        best = fitted.best_scores["tracks"]
        return TrialResult(objective_value(fitted.best_scores, rule.objective), fitted.best_epoch,
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
    row's fold (`genreflow.splits.track_folds`: whole tracks, stratified by genre)."""
    from genreflow.splits import track_folds

    x = np.concatenate([data.embeddings["train"], data.embeddings["valid"]])
    rows = {key: np.concatenate([data.embedding_rows["train"][key], data.embedding_rows["valid"][key]])
            for key in ("clip", "segment", "label")}
    return x, rows, track_folds(rows["clip"], rows["label"], folds, seed)


def cross_validated_trial(trial, params, data: ModelData, seed: int,
                          rule: TrialRule) -> TrialResult:
    """A head on the cached embeddings (or a fine-tuning model on the cached activations),
    trained once per fold of the pooled train and validation tracks and scored on the
    held-out fold, by the same rule as a single split; the trial's value (and its loss) is
    the mean over folds. The running mean is reported to Optuna after each fold, so that the
    pruner can stop a hopeless trial early."""
    import keras

    from genreflow.models.heads import build_head, feature_statistics
    from genreflow.models.train import Diverged, Validation, train
    from genreflow.splits import track_folds

    folds = rule.cv_folds
    x, rows, fold = cv_pool(data, folds, data.fold_seed)
    fine_tunes = not trains_on_embeddings(data.backbone, params)
    if fine_tunes:  # the same tracks make the same folds (splits.track_folds)
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
            built = build_tail_model(data, params, seed, fold=(pool_fold == k, stats))
            model, train_data, validation = built.model, built.train_data, built.validation
        else:
            model = build_head(x.shape[1], head_config(params), len(data.genres), seed=seed,
                               stats=stats)
            # with `augment`, the views of the training folds' tracks join them: a view is in
            # its track's fold, so the held-out fold's views never train
            train_x, labels, _, _ = with_view_embeddings(data, params, x[kept], rows["label"][kept],
                                                         rows["clip"][kept], held=rows["clip"][held])
            train_data = (train_x, labels)
            validation = Validation(x[held], rows["label"][held], rows["clip"][held],
                                    data.genres)
        try:
            fitted = train(model, train_data, validation,
                           epochs=int(params["epochs"]), patience=rule.patience,
                           batch_size=int(params["batch_size"]), seed=seed)
        except Diverged as error:
            raise TrialFailed(f"fold {k + 1} of {folds}: {error}") from None
        values.append(objective_value(fitted.best_scores, rule.objective))
        losses.append(float(fitted.best_scores["tracks"]["loss"]))
        epochs.append(fitted.best_epoch)
        trial.set_user_attr("fold_values", [round(value, 6) for value in values])
        running = float(np.mean(values))
        trial.report(running, k)
        if rule.prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {k + 1} of {folds} at {running:.4f}")
    trial.set_user_attr("epochs_run", int(sum(epochs)))
    trial.set_user_attr("fold_best_epochs", epochs)
    return TrialResult(float(np.mean(values)), int(np.median(epochs)), values,
                       float(np.mean(losses)))


