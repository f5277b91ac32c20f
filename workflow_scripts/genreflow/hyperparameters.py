"""The hyperparameter table: every hyperparameter a model of each kind takes (a head on a
backbone, `transfer`; the baseline CNN, `baseline`), which ones take one value per layer
and which key counts those layers, the values each may take, the models' defaults, and
the one rule that expands a per-layer value to its layers.

Config validation (`genreflow.config`), tuning rounds (`genreflow.tuning.space`) and the
model builders (`genreflow.models.heads`, `genreflow.models.baseline`) all read it here;
no TensorFlow is imported, so validating a config stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# name -> the key counting its layers (it then takes one value per layer), or None.
TABLE: dict[str, dict[str, str | None]] = {
    "transfer": {
        "activation": "dense_layers",
        "augment": None,
        "batch_norm": None,
        "batch_size": None,
        "dense_layers": None,
        "dropout": "dense_layers",
        "epochs": None,
        "learning_rate": None,
        "trainable_layers": None,
        "units": "dense_layers",
    },
    "baseline": {
        "activation": None,
        "augment": None,
        "batch_norm": None,
        "batch_size": None,
        "conv_batch_norm": None,
        "conv_dropout": "conv_layers",
        "conv_layers": None,
        "dense_layers": None,
        "dropout": "dense_layers",
        "epochs": None,
        "kernel_size": "conv_layers",
        "kernels": "conv_layers",
        "learning_rate": None,
        "stride": "conv_layers",
        "units": "dense_layers",
    },
}
# How a model is trained rather than built.
TRAINING_KEYS = ("augment", "batch_size", "epochs")
# What `augment` may be: no augmented views, or the views drawn from the audio by every
# family of training.augment.families (genreflow.models.views, genreflow.augment).
AUGMENTATIONS = ("none", "audio")
# What the head on a backbone is built from (`genreflow.models.heads`).
HEAD_KEYS = tuple(sorted(set(TABLE["transfer"]) - set(TRAINING_KEYS)))

HEAD_DEFAULTS: dict[str, Any] = {
    "dense_layers": 1,
    "units": 256,
    "dropout": 0.5,
    "activation": "relu",
    "batch_norm": False,
    "trainable_layers": 0,
    "learning_rate": 1e-3,
}
BASELINE_DEFAULTS: dict[str, Any] = {
    "augment": "none",
    "conv_layers": 3,
    "kernels": 32,
    "kernel_size": 3,
    "stride": 1,
    "conv_dropout": 0.2,
    "conv_batch_norm": True,
    "activation": "relu",
    "dense_layers": 1,
    "units": 128,
    "dropout": 0.5,
    "batch_norm": False,
    "learning_rate": 1e-3,
    "batch_size": 32,
    "epochs": 8,
}


def per_layer_keys(kind: str) -> dict[str, str]:
    """{name: the key counting its layers} of the per-layer hyperparameters of `kind`."""
    return {name: count for name, count in TABLE[kind].items() if count}


def fit_layers(name: str, value: Any, n_layers: int) -> list:
    """A per-layer hyperparameter as a list of n_layers values.

    One value is repeated; a list of the right length is kept; a list whose values are all
    equal (e.g. inherited from a round that used one value for every layer) is stretched.
    """
    if not isinstance(value, (list, tuple)):
        return [value] * n_layers
    values = list(value)
    if len(values) == n_layers:
        return values
    if values and all(item == values[0] for item in values):
        return [values[0]] * n_layers
    raise ValueError(f"{name} has {len(values)} different per-layer values for {n_layers} layers")


def normalize_params(kind: str, values: Mapping) -> dict:
    """Every hyperparameter of `kind`, key-sorted, per-layer ones as lists of the right length."""
    known = TABLE[kind]
    # `augment` came later: values without it (an older best_trial.json) trained without views
    values = {"augment": AUGMENTATIONS[0], **values}
    missing = sorted(set(known) - set(values))
    unknown = sorted(set(values) - set(known))
    if missing or unknown:
        raise ValueError(f"{kind} hyperparameters: missing {missing}, unknown {unknown}")
    params = {}
    for name in sorted(known):
        count = known[name]
        params[name] = fit_layers(name, values[name], int(values[count])) if count else values[name]
    return params


# ------------------------------------------------------------------------------ values
# What values each hyperparameter takes: the range types it may be searched with, and a
# check of one (per-layer) value.
VALUE_KINDS = {
    "activation": "activation",
    "augment": "augment",
    "batch_norm": "bool",
    "batch_size": "positive_int",
    "conv_batch_norm": "bool",
    "conv_dropout": "rate",
    "conv_layers": "positive_int",
    "dense_layers": "count",
    "dropout": "rate",
    "epochs": "positive_int",
    "kernel_size": "positive_int",
    "kernels": "positive_int",
    "learning_rate": "positive",
    "stride": "positive_int",
    "trainable_layers": "trainable",
    "units": "positive_int",
}
ACTIVATIONS = (
    "elu",
    "gelu",
    "leaky_relu",
    "linear",
    "mish",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "softplus",
    "swish",
    "tanh",
)
# The Optuna dimension type a hyperparameter's range is searched with.
RANGE_TYPES = {
    "count": "int",
    "positive_int": "int",
    "trainable": "int",
    "rate": "float",
    "positive": "float",
}


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def value_problem(name: str, value) -> str | None:
    """What is wrong with one (per-layer) value of hyperparameter `name`, or None."""
    kind = VALUE_KINDS[name]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "activation": value in ACTIVATIONS,
        "augment": value in AUGMENTATIONS,
        "bool": isinstance(value, bool),
        "count": is_int(value) and value >= 0,
        "positive_int": is_int(value) and value >= 1,
        "trainable": value == "last_block" or (is_int(value) and value >= 0),
        "rate": number and 0 <= value < 1,
        "positive": number and value > 0,
    }[kind]
    if ok:
        return None
    expected = {
        "activation": f"one of {list(ACTIVATIONS)}",
        "augment": f"one of {list(AUGMENTATIONS)}",
        "bool": "true or false",
        "count": "an integer >= 0",
        "positive_int": "an integer >= 1",
        "trainable": "an integer >= 0 or 'last_block'",
        "rate": "a number in [0, 1)",
        "positive": "a number > 0",
    }[kind]
    return f"{value!r} is not a valid {name} ({expected})"


def range_type(name: str) -> str | None:
    """`int` or `float`: how a range of `name` is searched (None: only as categorical)."""
    return RANGE_TYPES.get(VALUE_KINDS[name])
