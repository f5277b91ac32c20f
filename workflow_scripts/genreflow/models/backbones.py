"""Image backbones: their Keras code (`BACKBONES`, from `genreflow.registry`'s facts), weights
(ImageNet files through Keras' own `weights="imagenet"` code path, a user's file, or random
initialisation), the trainable tail, inference mode, and the pooled embeddings.

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

import h5py
import keras
import numpy as np

from genreflow.io import atomic_path, file_md5
from genreflow.models.images import image_dataset
from genreflow.models.train import seed_everything
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
        f"`snakemake --cores 1 {path}` (the local rule fetch_weights, which runs "
        f"genreflow.models.backbones.fetch_weights on a machine with internet) does it. "
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
            f"damaged copy. Delete it and run `snakemake --cores 1 {path}` where there is "
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
    with atomic_path(dest) as tmp:
        urllib.request.urlretrieve(spec.weights_url, tmp)
        actual = file_md5(tmp)
        if actual != spec.weights_md5:
            raise OSError(
                f"{spec.weights_url}: md5 {actual} differs from the published "
                f"{spec.weights_md5}; not installing it at {dest}"
            )
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


def pooled_features(backbone: keras.Model, inputs):
    features = InferenceMode(backbone, name="backbone")(inputs)
    return keras.layers.GlobalAveragePooling2D(name="pool")(features)


# ------------------------------------------------------------------------ embeddings


def embedding_model(backbone: keras.Model) -> keras.Model:
    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    return keras.Model(inputs, pooled_features(backbone, inputs), name="embedder")


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
