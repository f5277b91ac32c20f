"""Backbones, pretrained weights, head and training for the screening stage.

Compute nodes have no internet, so pretrained weights are never downloaded implicitly:
`fetch_weights` (run by a local Snakemake rule) puts the Keras ImageNet "notop" files in
a weights directory, and every model build loads an explicit file from there.
"""

from __future__ import annotations

import contextlib
import os
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
from genreflow.registry import IMAGE_BACKBONES, ImageBackbone


@dataclass(frozen=True)
class BackboneSpec(ImageBackbone):
    """An image backbone's facts (`genreflow.registry`) and its keras.applications code."""

    constructor: Callable[..., keras.Model] = None
    preprocess_input: Callable = None


_KERAS_CODE = {
    "efficientnetb0": (keras.applications.EfficientNetB0, keras.applications.efficientnet),
    "inceptionv3": (keras.applications.InceptionV3, keras.applications.inception_v3),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet),
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16),
}
BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(
        **vars(facts),
        constructor=_KERAS_CODE[name][0],
        preprocess_input=_KERAS_CODE[name][1].preprocess_input,
    )
    for name, facts in IMAGE_BACKBONES.items()
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

_KERAS_WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class BackboneWeights:
    """A backbone's initial weights, and which network Keras builds for them.

    `imagenet`: Keras' published ImageNet file (recognised by its md5), built exactly as
    `keras.applications.<Backbone>(weights="imagenet")` builds it; for EfficientNet that
    network has an extra input `Rescaling` its ImageNet weights expect
    (tensorflow/tensorflow#49930), which Keras leaves out for a weights path. `file`: any
    other Keras weights file (another training), built as `weights=<path>` builds it.
    """

    kind: str
    path: str
    md5: str

    def describe(self) -> str:
        if self.kind == "imagenet":
            return f"ImageNet ({self.path}, md5 {self.md5})"
        return f"user weights file {self.path} (md5 {self.md5}; not the published ImageNet file)"


def _missing_weights_message(backbone: str, path: str | os.PathLike | None) -> str:
    spec = backbone_spec(backbone)
    return (
        f"ImageNet weights for backbone {backbone!r} not found at {path}. Download "
        f"{spec.weights_url} (md5 {spec.weights_md5}) and put it at exactly that path; "
        f"`snakemake fetch_weights` (the local fetch rule, which runs "
        f"genreflow.models.fetch_weights on a machine with internet) does it. "
        f"Training never downloads weights itself."
    )


def resolve_weights(
    setting: str, path: str | os.PathLike | None, backbone: str
) -> BackboneWeights | None:
    """backbones.weights and the file a job reads -> its BackboneWeights, None for random
    initialisation. `imagenet` must be the published file (md5 checked, so that a wrong
    file copied by hand is refused, not trained on); a path is ImageNet when its md5 is
    the published one, and otherwise a weights file of another training."""
    spec = backbone_spec(backbone)
    if setting == "none":
        return None
    if path is None or not Path(path).is_file():
        if setting == "imagenet":
            raise FileNotFoundError(_missing_weights_message(backbone, path))
        raise FileNotFoundError(
            f"weights file {path} for backbone {backbone!r} does not exist; backbones.weights "
            "must be 'imagenet', 'none' or the path of an existing weights file"
        )
    path = os.fspath(path)
    if not path.endswith(_KERAS_WEIGHT_SUFFIXES):
        raise ValueError(
            f"weights file {path} has an unsupported suffix; Keras loads "
            f"{', '.join(_KERAS_WEIGHT_SUFFIXES)}"
        )
    md5 = file_md5(path)
    if setting == "imagenet" and md5 != spec.weights_md5:
        raise ValueError(
            f"{path} has md5 {md5}, but Keras' published ImageNet file for {backbone} "
            f"({spec.weights_url}) has md5 {spec.weights_md5}: it is another file or a "
            "damaged copy. Delete it and run `snakemake fetch_weights` where there is "
            "internet, or put the published file there; to train from another weights "
            "file on purpose, give its path as backbones.weights."
        )
    return BackboneWeights("imagenet" if md5 == spec.weights_md5 else "file", path, md5)


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
    name: str,
    image_size: int,
    weights: BackboneWeights | str | os.PathLike | None,
    seed: int = 0,
) -> keras.Model:
    """keras.applications backbone without top, with `weights` (None: random init, seeded).

    ImageNet weights take Keras' own `weights="imagenet"` code path, with its download
    resolved to the local file (`_imagenet_download_from`), so the network is the one Keras
    builds for ImageNet; a plain path (or kind `file`) takes the `weights=<path>` path. Any
    load failure raises: a run that silently trained from random weights would look like
    a bad backbone in the screening.

    `seed` fixes the random initialisation, so that every job that builds a randomly
    initialised backbone (embeddings, tuning trials, final models) gets the same network.
    """
    spec = backbone_spec(name)
    check_image_size(name, image_size)
    shape = (image_size, image_size, 3)
    keras.utils.set_random_seed(int(seed))
    if weights is None:
        return spec.constructor(include_top=False, weights=None, input_shape=shape)
    if not isinstance(weights, BackboneWeights):
        weights = BackboneWeights("file", os.fspath(weights), "")
    if not Path(weights.path).is_file():
        raise FileNotFoundError(f"weights file {weights.path} for {name!r} does not exist")
    try:
        with _keras_readable(weights.path) as readable, _loader_warnings_raise():
            if weights.kind == "imagenet":
                with _imagenet_download_from(spec, readable):
                    return spec.constructor(
                        include_top=False, weights="imagenet", input_shape=shape
                    )
            return spec.constructor(include_top=False, weights=readable, input_shape=shape)
    except Exception as error:
        raise RuntimeError(
            f"could not load weights {weights.path} into backbone {name!r} "
            f"({image_size}x{image_size}): {error}"
        ) from error


@contextlib.contextmanager
def _imagenet_download_from(spec: BackboneSpec, local_path: str) -> Iterator[None]:
    """Within the block, Keras' ImageNet download of `spec` returns `local_path` instead.

    keras.applications fetch their weights through `keras.src.utils.file_utils.get_file`
    (looked up on that module at call time); everything else of the `weights="imagenet"`
    code path, the network it builds and `model.load_weights`, stays Keras' own. Any other
    download asked for inside the block fails, so that none can happen unnoticed.
    """
    from keras.src.utils import file_utils

    keras_get_file = file_utils.get_file

    def local_file(fname=None, origin=None, *args, **kwargs):
        if (fname, origin) != (spec.weights_file, spec.weights_url):
            raise RuntimeError(
                f"Keras asked for {fname} from {origin} while building {spec.name}, not "
                f"the ImageNet file {spec.weights_file} from {spec.weights_url} that "
                "genreflow.registry names: the registry no longer matches this Keras"
            )
        return local_path

    file_utils.get_file = local_file
    try:
        yield
    finally:
        file_utils.get_file = keras_get_file


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
    weights: BackboneWeights | str | os.PathLike | None,
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
    backbone = build_backbone(backbone_name, image_size, weights, seed=seed)
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
