"""Backbones, pretrained weights, head and training for the screening stage.

Compute nodes have no internet, so pretrained weights are never downloaded implicitly:
`fetch_weights` (run by a local Snakemake rule) puts the Keras ImageNet "notop" files in
a weights directory, and every model build loads an explicit file from there.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from genreflow.data import image_dataset
from genreflow.io import Embeddings, file_md5, load_embeddings, save_embeddings  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the workflow needs to know about one keras.applications backbone."""

    constructor: Callable[..., keras.Model]
    preprocess_input: Callable
    min_size: int
    weights_file: str
    weights_url: str
    weights_md5: str
    # Size of the last block in layers (model.layers, input layer included in the
    # total), i.e. the study's fine-tuning unit; `last_block_after` names the layer
    # that closes the previous block so that the count can be checked against Keras.
    last_block_layers: int
    last_block_after: str


_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

# URLs, file names and md5 hashes are those keras.applications uses for
# weights="imagenet", include_top=False, so the files are byte-identical to
# what Keras itself would download.
BACKBONES: dict[str, BackboneSpec] = {
    "efficientnetb0": BackboneSpec(
        constructor=keras.applications.EfficientNetB0,
        preprocess_input=keras.applications.efficientnet.preprocess_input,
        min_size=32,
        weights_file="efficientnetb0_notop.h5",
        weights_url="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        weights_md5="50bc09e76180e00e4465e1a485ddc09d",
        last_block_layers=16,  # block7a + top conv/bn/activation
        last_block_after="block6d_add",
    ),
    "inceptionv3": BackboneSpec(
        constructor=keras.applications.InceptionV3,
        preprocess_input=keras.applications.inception_v3.preprocess_input,
        min_size=75,
        weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=_KERAS_APPS
        + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_md5="bcbd6486424b2319ff4ef7d526e38f63",
        last_block_layers=31,  # the last mixed block (mixed10), as in the study
        last_block_after="mixed9",
    ),
    "resnet50": BackboneSpec(
        constructor=keras.applications.ResNet50,
        preprocess_input=keras.applications.resnet.preprocess_input,
        min_size=32,
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=_KERAS_APPS
        + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_md5="4d473c1dd8becc155b73f8504c6f6626",
        last_block_layers=32,  # stage conv5 (three bottleneck blocks)
        last_block_after="conv4_block6_out",
    ),
    "vgg16": BackboneSpec(
        constructor=keras.applications.VGG16,
        preprocess_input=keras.applications.vgg16.preprocess_input,
        min_size=32,
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=_KERAS_APPS
        + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_md5="6d6bbae143d832006294945121d1f1fc",
        last_block_layers=4,  # block5: three convolutions and the pooling layer
        last_block_after="block4_pool",
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}"
        ) from None


def check_image_size(name: str, image_size: int) -> None:
    spec = backbone_spec(name)
    if image_size < spec.min_size:
        raise ValueError(
            f"image size {image_size} is below the minimum input size {spec.min_size} "
            f"of backbone {name!r}"
        )


# --------------------------------------------------------------------------- weights


def imagenet_weights_path(backbone: str, weights_dir: str | os.PathLike) -> Path:
    """Where the local fetch rule puts (and training looks for) ImageNet weights."""
    return Path(weights_dir) / backbone_spec(backbone).weights_file


_KERAS_WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _missing_imagenet_message(backbone: str, path: Path) -> str:
    spec = backbone_spec(backbone)
    return (
        f"ImageNet weights for backbone {backbone!r} not found at {path}. Download "
        f"{spec.weights_url} (md5 {spec.weights_md5}) and put it at exactly that path; "
        f"`snakemake fetch_weights` (the local fetch rule, which runs "
        f"genreflow.models.fetch_weights on a machine with internet) does it. "
        f"Training never downloads weights itself."
    )


def resolve_weights(
    setting: str | os.PathLike, backbone: str, weights_dir: str | os.PathLike
) -> str | None:
    """Weights setting -> file to load, or None for random initialisation.

    `setting` is "imagenet", "none", or the path of a weights file.
    """
    backbone_spec(backbone)
    if isinstance(setting, str) and setting.lower() == "imagenet":
        path = imagenet_weights_path(backbone, weights_dir)
        if not path.is_file():
            raise FileNotFoundError(_missing_imagenet_message(backbone, path))
        return str(path)
    if isinstance(setting, str) and setting.lower() == "none":
        return None
    path = Path(setting)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} for backbone {backbone!r} does not exist; the weights "
            f"setting must be 'imagenet', 'none' or the path of an existing weights file"
        )
    if not path.name.endswith(_KERAS_WEIGHT_SUFFIXES):
        raise ValueError(
            f"weights file {path} has an unsupported suffix; Keras loads "
            f"{', '.join(_KERAS_WEIGHT_SUFFIXES)}"
        )
    return str(path)


def fetch_weights(backbone: str, dest: str | os.PathLike) -> Path:
    """Download the ImageNet notop weights of `backbone` to file `dest`, hash-checked.

    Downloads next to `dest` and renames only after the md5 matches the published
    hash, so an interrupted or corrupted download never looks like a weights file.
    """
    spec = backbone_spec(backbone)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        urllib.request.urlretrieve(spec.weights_url, tmp)
        actual = file_md5(tmp)
        if actual != spec.weights_md5:
            raise OSError(
                f"{spec.weights_url}: md5 {actual} differs from the published "
                f"{spec.weights_md5}; not installing it at {dest}"
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _is_legacy_h5(path: str | os.PathLike) -> bool:
    # The ImageNet files use the Keras 2 layout (root attribute "layer_names");
    # Keras 3 `save_weights` writes a different layout that only loads when the
    # name ends in ".weights.h5", because Keras picks the reader by suffix.
    with h5py.File(path, "r") as handle:
        return "layer_names" in handle.attrs or "model_weights" in handle


def _suffix_for_content(path: Path) -> str | None:
    """The suffix Keras needs to read `path` with the right reader, or None if fine."""
    name = path.name
    if name.endswith(".keras"):
        return None
    legacy = _is_legacy_h5(path)
    if legacy and name.endswith(".weights.h5"):
        return ".h5"
    if not legacy and not name.endswith(".weights.h5"):
        return ".weights.h5"
    return None


@contextlib.contextmanager
def _keras_readable(path: str | os.PathLike) -> Iterator[str]:
    """Yield a name for `path` whose suffix makes Keras use the reader its content needs."""
    path = Path(path)
    suffix = _suffix_for_content(path)
    if suffix is None:
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="genreflow-weights-") as tmp:
        alias = Path(tmp) / f"weights{suffix}"
        alias.symlink_to(path.resolve())
        yield str(alias)


def build_backbone(
    name: str, image_size: int, weights_path: str | os.PathLike | None
) -> keras.Model:
    """keras.applications backbone without top, weights loaded from `weights_path`.

    The file is passed as `weights=` so that it takes the very code path Keras uses
    for its own ImageNet files. Any load failure raises: a run that silently trained
    from random weights would look like a bad backbone in the screening.
    """
    spec = backbone_spec(name)
    check_image_size(name, image_size)
    shape = (image_size, image_size, 3)
    if weights_path is None:
        return spec.constructor(include_top=False, weights=None, input_shape=shape)
    if not Path(weights_path).is_file():
        raise FileNotFoundError(
            f"weights file {weights_path} for {name!r} does not exist"
        )
    try:
        with _keras_readable(weights_path) as readable, _loader_warnings_raise():
            return spec.constructor(
                include_top=False, weights=readable, input_shape=shape
            )
    except Exception as error:
        raise RuntimeError(
            f"could not load weights {weights_path} into backbone {name!r} "
            f"({image_size}x{image_size}): {error}"
        ) from error


def _from_keras_saving(warning: warnings.WarningMessage) -> bool:
    parts = Path(warning.filename).parts
    return "keras" in parts and "saving" in parts


@contextlib.contextmanager
def _loader_warnings_raise() -> Iterator[None]:
    """Turn warnings of the Keras weight loaders into errors.

    Keras 3 only *warns* for some parts of a `.weights.h5` file it cannot match
    ("Skipping nested container ... Affected layers will retain their
    freshly-initialized weights"): a partially random backbone that would pass
    unnoticed. Other warnings are re-emitted unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    loader = [warning for warning in caught if _from_keras_saving(warning)]
    for warning in caught:
        if warning not in loader:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if loader:
        raise ValueError(
            "Keras reported incompletely loaded weights: "
            + " | ".join(str(warning.message) for warning in loader[:3])
        )


# ------------------------------------------------------------------------------ head

HEAD_DEFAULTS: dict[str, Any] = {
    "dense_layers": 1,
    "units": 256,
    "dropout": 0.5,
    "activation": "relu",
    "batch_norm": False,
    "trainable_layers": 0,
    "learning_rate": 1e-3,
}
_PER_LAYER_KEYS = ("units", "dropout", "activation")


def _per_layer(key: str, value: Any, n_layers: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ValueError(
            f"head {key!r} has {len(values)} values for {n_layers} dense layers"
        )
    return values


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
    for key in _PER_LAYER_KEYS:
        config[key] = _per_layer(key, config[key], n_layers)
    config["units"] = [int(units) for units in config["units"]]
    config["dropout"] = [float(rate) for rate in config["dropout"]]
    config["batch_norm"] = bool(config["batch_norm"])
    config["learning_rate"] = float(config["learning_rate"])
    return config


def feature_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance of training embeddings, for the head's input scaling."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return embeddings.mean(axis=0), np.maximum(embeddings.var(axis=0), 1e-12)


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
    return keras.layers.Dense(n_classes, activation="softmax", name="head_predictions")(
        x
    )


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


def resolve_trainable_layers(name: str, value: int | str, n_layers: int) -> int:
    """Head `trainable_layers` -> a layer count; "last_block" means the spec's block."""
    count = (
        backbone_spec(name).last_block_layers if value == "last_block" else int(value)
    )
    if not 0 <= count <= n_layers:
        raise ValueError(
            f"trainable_layers={value} outside 0..{n_layers} for backbone {name!r}"
        )
    return count


def set_trainable_tail(backbone: keras.Model, k: int) -> None:
    """Make the last k layers of the backbone trainable and freeze the rest."""
    backbone.trainable = k > 0
    for position, layer in enumerate(backbone.layers):
        layer.trainable = position >= len(backbone.layers) - k


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras (initialisers, dropout, shuffling).

    Op determinism is switched on too: measured on the 2-core CPU nodes it did not
    slow VGG16/ResNet50 fine-tuning, and it guarantees that parallel kernels and
    tf.data give the same metrics for the same config on the same machine.
    """
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


@keras.saving.register_keras_serializable(package="genreflow")
class InferenceMode(keras.layers.Layer):
    """Runs the wrapped backbone in inference mode, also inside `fit`.

    Keras 3 overrides a `training=False` given when a nested model is called in
    the functional API with fit's `training=True` (keras-team/keras#20285), so
    that argument alone does not keep batch-norm statistics and dropout of a
    backbone still. This layer's `call` has no `training` argument, so nothing
    is injected into it, and it passes `training=False` explicitly.
    """

    def __init__(self, backbone: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs):
        return self.backbone(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.backbone.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
        }

    @classmethod
    def from_config(cls, config):
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        return cls(backbone, **config)


def _pooled_features(backbone: keras.Model, inputs):
    features = InferenceMode(backbone, name="backbone")(inputs)
    return keras.layers.GlobalAveragePooling2D(name="pool")(features)


def build_classifier(
    backbone_name: str,
    image_size: int,
    weights_path: str | os.PathLike | None,
    head: dict | None,
    n_classes: int = 10,
    seed: int | None = None,
    stats=None,
) -> keras.Model:
    """Compiled image classifier: backbone -> global average pooling -> head.

    The backbone always runs in inference mode (`InferenceMode`), also where its
    last layers are trainable: batch-norm statistics re-estimated from small
    fine-tuning batches would wreck the pretrained features, and a frozen backbone
    then yields exactly the features `compute_embeddings` caches, during training
    too (EfficientNet's dropout layers would perturb them otherwise).
    """
    if seed is not None:
        seed_everything(seed)
    config = normalize_head(head)
    backbone = build_backbone(backbone_name, image_size, weights_path)
    k = resolve_trainable_layers(
        backbone_name, config["trainable_layers"], len(backbone.layers)
    )
    set_trainable_tail(backbone, k)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = _pooled_features(backbone, inputs)
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


# ------------------------------------------------------------------------ embeddings


def embedding_model(backbone: keras.Model) -> keras.Model:
    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    return keras.Model(inputs, _pooled_features(backbone, inputs), name="embedder")


def compute_embeddings(
    backbone_name: str,
    image_size: int,
    weights_path: str | os.PathLike | None,
    paths: Sequence[str | os.PathLike],
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Pooled backbone features of the images at `paths`, shape (N, D), float32.

    Seeded, so that a randomly initialised backbone (`backbones.weights: none`) is the same
    network in every run and for every segment length it embeds: otherwise each job would
    draw another backbone and a comparison across jobs would compare networks.
    """
    seed_everything(seed)
    backbone = build_backbone(backbone_name, image_size, weights_path)
    dataset = image_dataset(
        paths,
        None,
        image_size,
        batch_size,
        shuffle=False,
        seed=0,
        preprocess=backbone_spec(backbone_name).preprocess_input,
    )
    return np.asarray(
        embedding_model(backbone).predict(dataset, verbose=0), dtype=np.float32
    )


# -------------------------------------------------------------------------- training

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def _is_dataset(data) -> bool:
    return isinstance(data, tf.data.Dataset)


def _history_frame(history: keras.callbacks.History) -> pd.DataFrame:
    frame = pd.DataFrame(history.history)
    # 1-based, like Keras' "Epoch 1/n" progress lines.
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame[[column for column in HISTORY_COLUMNS if column in frame.columns]]


@contextlib.contextmanager
def _progress_to(log) -> Iterator[None]:
    """Send Keras' progress lines (printed to stdout) to `log`: a path, stream or None."""
    if log is None:
        yield
    elif hasattr(log, "write"):
        with contextlib.redirect_stdout(log):
            yield
    else:
        with (
            open(log, "a", encoding="utf-8") as handle,
            contextlib.redirect_stdout(handle),
        ):
            yield
            handle.flush()


def train(
    model: keras.Model,
    train_data,
    valid_data,
    epochs: int,
    batch_size: int = 32,
    patience: int = 5,
    seed: int = 0,
    log=None,
) -> pd.DataFrame:
    """Fit with early stopping on val_loss; the model ends with its best-epoch weights.

    `train_data`/`valid_data` are batched tf.data datasets (batch_size is then unused)
    or (x, y) array pairs. Returns one row per epoch run (HISTORY_COLUMNS).
    """
    seed_everything(seed)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    fit_args: dict[str, Any] = {"epochs": epochs, "callbacks": [stop], "verbose": 2}
    if _is_dataset(train_data):
        # The pipeline shuffles (seeded); Keras can't shuffle a dataset anyway.
        fit_args["x"], fit_args["shuffle"] = train_data, False
    else:
        fit_args["x"], fit_args["y"] = train_data
        fit_args["batch_size"] = batch_size
        fit_args["shuffle"] = True
    fit_args["validation_data"] = (
        valid_data if _is_dataset(valid_data) else tuple(valid_data)
    )
    if not _is_dataset(valid_data):
        fit_args["validation_batch_size"] = batch_size
    with _progress_to(log):
        history = model.fit(**fit_args)
    sys.stdout.flush()
    return _history_frame(history)


def predict_proba(model: keras.Model, data, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, n_classes) for a dataset (labels ignored) or an array."""
    if _is_dataset(data):
        return np.asarray(model.predict(data, verbose=0))
    return np.asarray(model.predict(np.asarray(data), batch_size=batch_size, verbose=0))
