"""The baseline: a CNN trained from scratch on the grayscale spectrogram images.

It sees each image as the feature stage wrote it, one channel scaled to 0..1, not the
3-channel ImageNet input the backbones get. Its hyperparameters (the study's search space
for the baseline) are:

    conv_layers, kernels, kernel_size, stride, conv_dropout, conv_batch_norm, activation,
    dense_layers, units, dropout, batch_norm, learning_rate (+ batch_size, epochs for training)

`kernels`, `kernel_size`, `stride` and `conv_dropout` take one value or one per convolution
block; `units` and `dropout` one value or one per dense block.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from genreflow.hyperparameters import BASELINE_DEFAULTS, fit_layers, per_layer_keys
from genreflow.names import BASELINE

_INTEGER_LISTS = ("kernels", "kernel_size", "stride", "units")


def normalize_baseline(params: dict | None) -> dict[str, Any]:
    """Baseline params with defaults filled in and per-layer values expanded to lists."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(BASELINE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown baseline key(s) {unknown}; known: {sorted(BASELINE_DEFAULTS)}")
    config = {**BASELINE_DEFAULTS, **params}
    for count in ("conv_layers", "dense_layers"):
        config[count] = int(config[count])
    if config["conv_layers"] < 1 or config["dense_layers"] < 0:
        raise ValueError("baseline needs conv_layers >= 1 and dense_layers >= 0")
    for key, count in per_layer_keys("baseline").items():
        config[key] = fit_layers(f"baseline {key}", config[key], config[count])
    for key in _INTEGER_LISTS:
        config[key] = [int(value) for value in config[key]]
    for key in ("conv_dropout", "dropout"):
        config[key] = [float(value) for value in config[key]]
    for key in ("conv_batch_norm", "batch_norm"):
        config[key] = bool(config[key])
    config["learning_rate"] = float(config["learning_rate"])
    return config


def build_baseline_cnn(params: dict, image_size: int, n_classes: int) -> keras.Model:
    """Compiled CNN for (image_size, image_size, 1) images scaled to 0..1.

    Each convolution block is conv ("same" padding) -> batch norm -> activation -> 2x2 max
    pooling (while the feature map is at least 2 pixels wide) -> dropout; then flatten, the
    dense blocks (dense -> batch norm -> activation -> dropout) and a softmax. Flatten, not
    global pooling, so that the classifier still knows where in frequency a pattern sits.
    """
    config = normalize_baseline(params)
    activation = config["activation"]
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x, side = inputs, image_size
    for i in range(config["conv_layers"]):
        x = keras.layers.Conv2D(
            config["kernels"][i],
            config["kernel_size"][i],
            strides=config["stride"][i],
            padding="same",
            name=f"conv_{i}",
        )(x)
        side = -(-side // config["stride"][i])
        if config["conv_batch_norm"]:
            x = keras.layers.BatchNormalization(name=f"conv_batch_norm_{i}")(x)
        x = keras.layers.Activation(activation, name=f"conv_activation_{i}")(x)
        if side >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"conv_pool_{i}")(x)
            side //= 2
        x = keras.layers.Dropout(config["conv_dropout"][i], name=f"conv_dropout_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(config["dense_layers"]):
        x = keras.layers.Dense(config["units"][i], name=f"dense_{i}")(x)
        if config["batch_norm"]:
            x = keras.layers.BatchNormalization(name=f"dense_batch_norm_{i}")(x)
        x = keras.layers.Activation(activation, name=f"dense_activation_{i}")(x)
        x = keras.layers.Dropout(config["dropout"][i], name=f"dense_dropout_{i}")(x)
    # float32 even under a mixed-precision policy: a float16 softmax loses small probabilities
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions",
                                 dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=BASELINE)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def baseline_preprocess(rgb):
    """genreflow.models.images's 3-channel 0..255 batch -> one channel scaled to 0..1."""
    return rgb[..., :1] / 255.0


def baseline_dataset(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int] | np.ndarray | None,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """genreflow.models.images.image_dataset (cached PNG decoding, seeded shuffling, prefetching)
    with the baseline's input: batches of (N, H, W, 1) float32 in 0..1."""
    from genreflow.models.images import image_dataset

    return image_dataset(
        paths, labels, image_size, batch_size, shuffle, seed, preprocess=baseline_preprocess
    )
