"""The classification head (on cached embeddings, or on a backbone: `build_classifier`),
its per-layer settings and input standardisation."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from genreflow.hyperparameters import HEAD_DEFAULTS, fit_layers, per_layer_keys
from genreflow.models.backbones import (
    BackboneWeights,
    build_backbone,
    pooled_features,
    resolve_trainable_layers,
    set_trainable_tail,
)
from genreflow.models.train import seed_everything

# ------------------------------------------------------------------------------ head

def normalize_head(head: dict | None) -> dict[str, Any]:
    """Head config with defaults filled in and per-layer values expanded to lists."""
    head = dict(head or {})
    unknown = sorted(set(head) - set(HEAD_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown head key(s) {unknown}; known: {sorted(HEAD_DEFAULTS)}"
        )
    config = {**HEAD_DEFAULTS, **head}
    n_layers = int(config["dense_layers"])
    if n_layers < 0:
        raise ValueError(f"head dense_layers must be >= 0, got {n_layers}")
    config["dense_layers"] = n_layers
    for key in per_layer_keys("transfer"):
        config[key] = fit_layers(f"head {key}", config[key], n_layers)
    config["units"] = [int(units) for units in config["units"]]
    config["dropout"] = [float(rate) for rate in config["dropout"]]
    config["batch_norm"] = bool(config["batch_norm"])
    config["learning_rate"] = float(config["learning_rate"])
    return config


# A feature's variance counts as at least this fraction of the features' mean variance.
VARIANCE_FLOOR = 1e-2


def feature_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance of training embeddings, for the head's input scaling.

    A feature that hardly varies over the training images (a unit that is almost always
    off) is not blown up to unit spread: its variance is floored at `VARIANCE_FLOOR` of the
    mean variance. Scaled to unit spread, its float rounding, or the change a fine-tuned
    tail makes to it, would reach the head multiplied by a million. The floor is relative,
    so features of any scale (1e-7 for a random-init EfficientNetB0) are standardised alike.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    variance = embeddings.var(axis=0)
    floor = VARIANCE_FLOOR * float(variance.mean()) if variance.size else 0.0
    return embeddings.mean(axis=0), np.maximum(variance, max(floor, 1e-30))


def _apply_head(features, config: dict[str, Any], n_classes: int, stats=None):
    """Optional standardisation, dense blocks and softmax; layer names are fixed so
    weights transfer by name.

    Pooled backbone outputs come at wildly different scales (1e-6 for a randomly
    initialised EfficientNetB0, ~1 for ResNet50): standardising each feature with the
    training set's mean and variance (`stats`) lets one learning rate suit every backbone.
    """
    x = features
    if stats is not None:
        mean, variance = stats
        x = keras.layers.Normalization(
            mean=np.asarray(mean, dtype=np.float32),
            variance=np.asarray(variance, dtype=np.float32),
            name="head_normalization",
        )(x)
    for i in range(config["dense_layers"]):
        x = keras.layers.Dense(
            config["units"][i],
            activation=config["activation"][i],
            name=f"head_dense_{i}",
        )(x)
        if config["batch_norm"]:
            x = keras.layers.BatchNormalization(name=f"head_batch_norm_{i}")(x)
        x = keras.layers.Dropout(config["dropout"][i], name=f"head_dropout_{i}")(x)
    # float32 even under a mixed-precision policy: a float16 softmax loses small probabilities
    return keras.layers.Dense(n_classes, activation="softmax", name="head_predictions",
                              dtype="float32")(x)


def head_layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if layer.name.startswith("head_")]


def transfer_head_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy head weights (e.g. trained on cached embeddings) into another model."""
    names = head_layer_names(source)
    if names != head_layer_names(target):
        raise ValueError(f"head layers differ: {names} vs {head_layer_names(target)}")
    for name in names:
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())


def _compile(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def build_classifier(
    backbone_name: str,
    image_size: int,
    weights: BackboneWeights | str | os.PathLike | None,
    head: dict | None,
    n_classes: int = 10,
    seed: int | None = None,
    stats=None,
    backbone_seed: int = 0,
) -> keras.Model:
    """Compiled image classifier: backbone -> global average pooling -> head.

    The backbone always runs in inference mode (`InferenceMode`), also where its
    last layers are trainable: batch-norm statistics re-estimated from small
    fine-tuning batches would wreck the pretrained features, and a frozen backbone
    then yields exactly the features `compute_embeddings` caches, during training
    too (EfficientNet's dropout layers would perturb them otherwise).

    A randomly initialised backbone is drawn with `backbone_seed` (the embedding cache's
    seed), the head with `seed`: every trial and final model of a (backbone, feature)
    then shares the network whose cached embeddings gave the head's statistics.
    """
    config = normalize_head(head)
    backbone = build_backbone(backbone_name, image_size, weights, seed=backbone_seed)
    if seed is not None:
        seed_everything(seed)
    k = resolve_trainable_layers(
        backbone_name, config["trainable_layers"], len(backbone.layers)
    )
    set_trainable_tail(backbone, k)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = pooled_features(backbone, inputs)
    model = keras.Model(
        inputs, _apply_head(features, config, n_classes, stats), name="classifier"
    )
    _compile(model, config["learning_rate"])
    return model


def classifier_backbone(model: keras.Model) -> keras.Model:
    """The backbone model inside a `build_classifier` model."""
    return model.get_layer("backbone").backbone


def build_head(
    input_dim: int,
    head: dict | None,
    n_classes: int = 10,
    seed: int | None = None,
    stats=None,
) -> keras.Model:
    """Compiled head alone, for training on cached embeddings (frozen backbone)."""
    if seed is not None:
        seed_everything(seed)
    config = normalize_head(head)
    inputs = keras.Input(shape=(input_dim,), name="embedding")
    model = keras.Model(inputs, _apply_head(inputs, config, n_classes, stats), name="head")
    _compile(model, config["learning_rate"])
    return model
