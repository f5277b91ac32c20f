"""Training and prediction: seeding, the one training rule (`train`: the epoch of lowest
validation loss, early stopping), divergence checks, `predict_proba`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras (initialisers, dropout, shuffling).

    Op determinism is switched on too: measured on the 2-core CPU nodes it did not
    slow VGG16/ResNet50 fine-tuning, and it guarantees that parallel kernels and
    tf.data give the same metrics for the same config on the same machine.
    """
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


# -------------------------------------------------------------------------- training

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def _is_dataset(data) -> bool:
    return isinstance(data, tf.data.Dataset)


class Diverged(Exception):
    """Training produced a non-finite loss or non-finite probabilities."""


@dataclass
class Validation:
    """The validation split as a model sees it: its inputs (an array, or a dataset whose
    labels are ignored), the labels, each example's track, and the run's genres."""

    inputs: Any
    labels: np.ndarray
    clips: np.ndarray
    genres: Sequence[str]


@dataclass
class Fitted:
    """What `train` did: one history row per epoch run, the epoch it kept (1-based) and
    `genreflow.scoring.score` of the validation split after every epoch."""

    history: pd.DataFrame
    best_epoch: int
    scores: list[dict]

    @property
    def best_scores(self) -> dict:
        return self.scores[self.best_epoch - 1]


class _KeepLowestValidationLoss(keras.callbacks.Callback):
    """After each epoch: score the validation split, remember the weights of the epoch with
    the lowest validation loss, stop after `patience` epochs without a lower one, and hand
    the scores to `on_epoch` (tuning reports them to Optuna, which may prune)."""

    def __init__(self, validation: Validation, patience: int, on_epoch: Callable | None):
        super().__init__()
        self.validation, self.patience, self.on_epoch = validation, patience, on_epoch
        self.rows: list[dict] = []
        self.scores: list[dict] = []
        self.best_epoch, self.best_weights, self.waited = 0, None, 0

    def _check_loss(self, logs, where: str) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise Diverged(f"diverged: training loss {float(loss)} {where}")

    def on_train_batch_end(self, batch, logs=None):
        self._check_loss(logs, f"in epoch {len(self.rows) + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        from genreflow.scoring import score

        self._check_loss(logs, f"after epoch {epoch + 1}")
        validation = self.validation
        probabilities = predict_proba(self.model, validation.inputs)
        if not np.all(np.isfinite(probabilities)):
            raise Diverged("diverged: the model predicts non-finite probabilities")
        scores = score(validation.clips, validation.labels, probabilities, validation.genres)
        self.scores.append(scores)
        self.rows.append(
            {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": scores["examples"]["loss"],
                "val_accuracy": scores["examples"]["accuracy"],
            }
        )
        best_loss = self.rows[self.best_epoch - 1]["val_loss"] if self.best_epoch else np.inf
        if self.rows[-1]["val_loss"] < best_loss:
            self.best_epoch, self.best_weights, self.waited = epoch + 1, self.model.get_weights(), 0
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.model.stop_training = True
        if self.on_epoch is not None:
            self.on_epoch(epoch, scores)


def train(
    model: keras.Model,
    train_data,
    validation: Validation,
    epochs: int,
    patience: int,
    batch_size: int = 32,
    seed: int = 0,
    on_epoch: Callable | None = None,
) -> Fitted:
    """Fit and keep the epoch of lowest validation loss: the one rule of screening, tuning
    trials and final models, so that a tuned value and its final model come from the same
    kind of epoch.

    The validation loss is the mean cross-entropy of the validation examples (Keras'
    val_loss). Training stops after `patience` epochs without a lower one, and the model
    ends with the weights of that epoch. `train_data` is a batched tf.data dataset
    (shuffled by its pipeline) or an (x, y) array pair.
    """
    seed_everything(seed)
    keeper = _KeepLowestValidationLoss(validation, int(patience), on_epoch)
    fit_args: dict[str, Any] = {"epochs": int(epochs), "callbacks": [keeper], "verbose": 0}
    if _is_dataset(train_data):
        # The pipeline shuffles (seeded); Keras can't shuffle a dataset anyway.
        fit_args["x"], fit_args["shuffle"] = train_data, False
    else:
        fit_args["x"], fit_args["y"] = train_data
        fit_args["batch_size"] = int(batch_size)
        fit_args["shuffle"] = True
    model.fit(**fit_args)
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    return Fitted(pd.DataFrame(keeper.rows, columns=HISTORY_COLUMNS), keeper.best_epoch, keeper.scores)


def predict_proba(model: keras.Model, data, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, n_classes) for a dataset (labels ignored) or an array."""
    if _is_dataset(data):
        return np.asarray(model.predict(data, verbose=0))
    # Arrays (embeddings, or a list of activation arrays): calling the model skips
    # predict()'s per-call set-up, which costs more than a small validation split itself,
    # and this runs after every epoch.
    arrays = [np.asarray(part) for part in data] if isinstance(data, list) else [np.asarray(data)]
    if len(arrays[0]) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)

    def chunk(start: int):
        parts = [part[start : start + batch_size].astype(np.float32, copy=False) for part in arrays]
        return parts if len(parts) > 1 else parts[0]

    return np.concatenate(
        [
            np.asarray(model(chunk(start), training=False))
            for start in range(0, len(arrays[0]), batch_size)
        ]
    )
