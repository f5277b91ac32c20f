import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import hashlib
import inspect
import shutil

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from conftest import write_legacy_h5
from PIL import Image

from genreflow.io import file_md5, load_embeddings, save_embeddings
from genreflow.models.backbones import (
    BACKBONES,
    BackboneWeights,
    build_backbone,
    compute_embeddings,
    fetch_weights,
    resolve_trainable_layers,
    resolve_weights,
)
from genreflow.models.heads import (
    build_classifier,
    build_head,
    classifier_backbone,
    feature_statistics,
    normalize_head,
    transfer_head_weights,
)
from genreflow.models.images import image_dataset
from genreflow.models.train import Diverged, Validation, predict_proba, train

# Keras' own get_weights() triggers a NumPy 2 deprecation warning per variable.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)

SMALL_HEAD = {"dense_layers": 1, "units": 8, "dropout": 0.2, "learning_rate": 1e-3}


# ----------------------------------------------------------------------------- helpers


def _perturbed_weights(model, seed):
    """Fresh-init weights plus noise, so a file's weights differ from any fresh build."""
    rng = np.random.default_rng(seed)
    return [
        w + rng.normal(0.0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()
    ]


def _assert_same_weights(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Factory: (backbone, size) -> (Keras 3 .weights.h5 path, its weight arrays)."""
    directory = tmp_path_factory.mktemp("weights")
    made = {}

    def make(name, size):
        if (name, size) not in made:
            backbone = build_backbone(name, size, None)
            weights = _perturbed_weights(backbone, seed=len(made))
            backbone.set_weights(weights)
            path = directory / f"{name}_{size}.weights.h5"
            backbone.save_weights(path)
            made[name, size] = (str(path), weights)
        return made[name, size]

    return make


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """12 random grayscale 32x32 PNGs and labels."""
    directory = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        path = directory / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(
            path
        )
        paths.append(str(path))
    return paths, np.arange(12) % 10


# ---------------------------------------------------------------------------- registry


def test_registry_matches_keras_sources():
    efficientnet = pytest.importorskip("keras.src.applications.efficientnet")
    from keras.src.applications import inception_v3, resnet, vgg16

    assert BACKBONES["vgg16"].weights_url == vgg16.WEIGHTS_PATH_NO_TOP
    assert BACKBONES["inceptionv3"].weights_url == inception_v3.WEIGHTS_PATH_NO_TOP
    assert (
        BACKBONES["resnet50"].weights_url
        == resnet.BASE_WEIGHTS_PATH + BACKBONES["resnet50"].weights_file
    )
    assert BACKBONES["resnet50"].weights_md5 == resnet.WEIGHTS_HASHES["resnet50"][1]
    assert (
        BACKBONES["efficientnetb0"].weights_url
        == efficientnet.BASE_WEIGHTS_PATH + "efficientnetb0_notop.h5"
    )
    assert (
        BACKBONES["efficientnetb0"].weights_md5 == efficientnet.WEIGHTS_HASHES["b0"][1]
    )
    for name, module in [("vgg16", vgg16), ("inceptionv3", inception_v3)]:
        source = inspect.getsource(module)
        assert f'file_hash="{BACKBONES[name].weights_md5}"' in source
        assert f'"{BACKBONES[name].weights_file}"' in source
    for spec in BACKBONES.values():
        assert spec.weights_url.endswith("/" + spec.weights_file)
        assert f"min_size={spec.min_size}," in inspect.getsource(
            inspect.getmodule(spec.constructor)
        )


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_last_block_boundaries_match_keras_models(name):
    spec = BACKBONES[name]
    layers = build_backbone(name, spec.min_size, None).layers
    boundary = [layer.name for layer in layers].index(spec.last_block_after)
    assert len(layers) - 1 - boundary == spec.last_block_layers
    if name == "inceptionv3":
        assert len(layers) == 311 and layers[-1].name == "mixed10"
    if name == "vgg16":
        assert [layer.name for layer in layers[-4:]] == [
            "block5_conv1",
            "block5_conv2",
            "block5_conv3",
            "block5_pool",
        ]


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError) as error:
        build_classifier("alexnet", 64, None, SMALL_HEAD)
    assert "alexnet" in str(error.value)
    for name in BACKBONES:
        assert name in str(error.value)


def test_image_size_below_backbone_minimum():
    with pytest.raises(
        ValueError, match="minimum input size 75 of backbone 'inceptionv3'"
    ):
        build_classifier("inceptionv3", 64, None, SMALL_HEAD)
    with pytest.raises(ValueError, match="minimum input size 32"):
        build_backbone("vgg16", 31, None)


# ----------------------------------------------------------------------------- weights


def test_resolve_weights_settings(tmp_path):
    assert resolve_weights("none", None, "vgg16") is None
    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"another training")
    resolved = resolve_weights(str(weights), str(weights), "vgg16")
    assert resolved == BackboneWeights("file", str(weights), hashlib.md5(b"another training").hexdigest())
    assert "not the published ImageNet file" in resolved.describe()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_weights("x", str(tmp_path / "absent.weights.h5"), "vgg16")
    odd = tmp_path / "weights.pt"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="suffix"):
        resolve_weights(str(odd), str(odd), "vgg16")
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_weights("none", None, "vgg17")


def test_missing_imagenet_weights_say_where_and_how(tmp_path):
    target = tmp_path / "resources/weights/inceptionv3/imagenet_notop.h5"
    with pytest.raises(FileNotFoundError) as error:
        resolve_weights("imagenet", str(target), "inceptionv3")
    message = str(error.value)
    spec = BACKBONES["inceptionv3"]
    assert spec.weights_url in message
    assert str(target) in message
    # a target Snakemake accepts (fetch_weights has a wildcard, so its name is none)
    assert f"`snakemake --cores 1 {target}`" in message


def test_imagenet_setting_refuses_a_file_that_is_not_the_published_one(tmp_path):
    wrong = tmp_path / "imagenet_notop.h5"
    wrong.write_bytes(b"a damaged download")
    with pytest.raises(ValueError) as error:
        resolve_weights("imagenet", str(wrong), "resnet50")
    message = str(error.value)
    assert hashlib.md5(b"a damaged download").hexdigest() in message
    assert BACKBONES["resnet50"].weights_md5 in message
    assert f"`snakemake --cores 1 {wrong}`" in message


def test_a_path_with_the_published_md5_is_imagenet(tmp_path, monkeypatch):
    """A user path of ImageNet weights is recognised by the md5 Keras publishes for it."""
    path = tmp_path / "copied_by_hand.h5"
    path.write_bytes(b"pretend published weights")
    md5 = hashlib.md5(b"pretend published weights").hexdigest()
    monkeypatch.setitem(BACKBONES, "vgg16", dataclasses.replace(BACKBONES["vgg16"], weights_md5=md5))
    assert resolve_weights(str(path), str(path), "vgg16") == BackboneWeights("imagenet", str(path), md5)
    assert resolve_weights("imagenet", str(path), "vgg16").kind == "imagenet"


def _keras_imagenet_reference(name, size, weights_file, keras_home, monkeypatch):
    """keras.applications.<Backbone>(include_top=False, weights="imagenet") as Keras builds
    it, with only its download redirected: urlretrieve copies `weights_file`, and the hash
    check accepts it (the file is the test's, not the published one)."""
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    spec = BACKBONES[name]
    asked = []

    def download(origin, target, *args):
        asked.append(origin)
        shutil.copy(weights_file, target)

    keras_home.mkdir()  # get_file falls back to /tmp/.keras for a folder it cannot write
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(keras_home))
    monkeypatch.setattr(file_utils, "urlretrieve", download)
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)
    reference = spec.constructor(include_top=False, weights="imagenet", input_shape=(size, size, 3))
    assert asked == [spec.weights_url]
    return reference


def _layer_signature(model):
    """Each layer's class and config without its (counter-numbered) name, in order."""
    signature = []
    for layer in model.layers:
        config = {key: value for key, value in layer.get_config().items() if key != "name"}
        signature.append((type(layer).__name__, repr(sorted(config.items()))))
    return signature


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_imagenet_file_builds_the_network_keras_builds_for_imagenet(name, tmp_path, monkeypatch):
    """The backbone genreflow builds from an ImageNet file has Keras' weights="imagenet"
    layers, in the same order, with the same configs and weights, and computes the same
    outputs. For EfficientNetB0 the network Keras builds for a weights *path* lacks the
    input Rescaling(1/sqrt(stddev)) that its ImageNet weights expect."""
    size = BACKBONES[name].min_size
    source = build_backbone(name, size, None)
    source.set_weights(_perturbed_weights(source, seed=5))
    weights_file = tmp_path / BACKBONES[name].weights_file
    write_legacy_h5(source, weights_file)

    ours = build_backbone(name, size, BackboneWeights("imagenet", str(weights_file), "test"))
    reference = _keras_imagenet_reference(name, size, weights_file, tmp_path / "keras", monkeypatch)
    assert _layer_signature(ours) == _layer_signature(reference)
    _assert_same_weights(ours.get_weights(), reference.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    np.testing.assert_array_equal(ours.predict(x, verbose=0), reference.predict(x, verbose=0))

    as_path = build_backbone(name, size, str(weights_file))
    if name == "efficientnetb0":
        assert len(as_path.layers) == len(reference.layers) - 1
        assert not np.allclose(as_path.predict(x, verbose=0), reference.predict(x, verbose=0))
    else:
        assert _layer_signature(as_path) == _layer_signature(reference)


def test_imagenet_build_fails_loudly_if_keras_asks_for_another_file(tmp_path, monkeypatch):
    source = build_backbone("vgg16", 32, None)
    weights_file = tmp_path / "vgg16.h5"
    write_legacy_h5(source, weights_file)
    moved = dataclasses.replace(BACKBONES["vgg16"], weights_url="https://example.org/elsewhere.h5")
    monkeypatch.setitem(BACKBONES, "vgg16", moved)
    with pytest.raises(RuntimeError, match="registry no longer matches"):
        build_backbone("vgg16", 32, BackboneWeights("imagenet", str(weights_file), "test"))


def test_imagenet_setting_loads_legacy_file_from_the_weights_target(tmp_path, monkeypatch):
    source = build_backbone("vgg16", 32, None)
    weights = _perturbed_weights(source, seed=11)
    source.set_weights(weights)
    target = tmp_path / "resources/weights/vgg16/imagenet_notop.h5"
    target.parent.mkdir(parents=True)
    write_legacy_h5(source, target)
    monkeypatch.setitem(
        BACKBONES, "vgg16", dataclasses.replace(BACKBONES["vgg16"], weights_md5=file_md5(target))
    )

    resolved = resolve_weights("imagenet", str(target), "vgg16")
    assert resolved.kind == "imagenet"
    model = build_classifier("vgg16", 32, resolved, SMALL_HEAD)
    _assert_same_weights(classifier_backbone(model).get_weights(), weights)


def test_classifier_loads_keras3_weights_file(weight_files, tmp_path):
    path, weights = weight_files("vgg16", 32)
    model = build_classifier("vgg16", 32, resolve_weights(path, path, "vgg16"), SMALL_HEAD)
    _assert_same_weights(classifier_backbone(model).get_weights(), weights)


def test_weight_files_load_whatever_their_suffix(weight_files, tmp_path):
    # Keras picks its reader by suffix; content that disagrees with the name still loads.
    path, weights = weight_files("vgg16", 32)
    keras3_as_h5 = tmp_path / "vgg16_keras3.h5"
    shutil.copy(path, keras3_as_h5)
    _assert_same_weights(
        build_backbone("vgg16", 32, keras3_as_h5).get_weights(), weights
    )

    source = build_backbone("vgg16", 32, path)
    legacy_as_weights_h5 = tmp_path / "vgg16_legacy.weights.h5"
    write_legacy_h5(source, legacy_as_weights_h5)
    _assert_same_weights(
        build_backbone("vgg16", 32, legacy_as_weights_h5).get_weights(), weights
    )


def test_incomplete_or_foreign_weights_raise(weight_files, tmp_path):
    path, _ = weight_files("vgg16", 32)
    cut = tmp_path / "cut.weights.h5"
    shutil.copy(path, cut)
    with h5py.File(cut, "a") as handle:
        del handle["layers/conv2d_12"]
    with pytest.raises(RuntimeError, match="could not load weights"):
        build_backbone("vgg16", 32, cut)

    legacy = tmp_path / "short.h5"
    write_legacy_h5(build_backbone("vgg16", 32, None), legacy)
    with h5py.File(legacy, "a") as handle:
        handle.attrs["layer_names"] = handle.attrs["layer_names"][:-4]
    with pytest.raises(RuntimeError, match="could not load weights"):
        build_backbone("vgg16", 32, legacy)

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(RuntimeError, match="could not load weights"):
        build_backbone("vgg16", 32, garbage)


def test_fetch_weights_checks_hash_and_installs_atomically(tmp_path, monkeypatch):
    published = tmp_path / "server" / "weights_notop.h5"
    published.parent.mkdir()
    published.write_bytes(b"pretend weights")
    md5 = hashlib.md5(b"pretend weights").hexdigest()
    spec = dataclasses.replace(
        BACKBONES["vgg16"], weights_url=published.as_uri(), weights_md5=md5
    )
    monkeypatch.setitem(BACKBONES, "vgg16", spec)

    dest = tmp_path / "weights" / spec.weights_file
    assert fetch_weights("vgg16", dest) == dest
    assert dest.read_bytes() == b"pretend weights"

    monkeypatch.setitem(
        BACKBONES, "vgg16", dataclasses.replace(spec, weights_md5="0" * 32)
    )
    other = tmp_path / "other" / spec.weights_file
    with pytest.raises(OSError, match="md5"):
        fetch_weights("vgg16", other)
    assert list(other.parent.iterdir()) == []


# -------------------------------------------------------------------------------- head


def test_normalize_head_expands_and_validates():
    head = normalize_head({"dense_layers": 2, "units": [64, 32], "dropout": 0.3})
    assert head["units"] == [64, 32] and head["dropout"] == [0.3, 0.3]
    assert head["activation"] == ["relu", "relu"]
    # one rule for every per-layer value (genreflow.hyperparameters.fit_layers): one value
    # is every layer's, different values must be one per layer
    assert normalize_head({"dense_layers": 2, "units": [64]})["units"] == [64, 64]
    with pytest.raises(ValueError, match="units has 2 different per-layer values for 3 layers"):
        normalize_head({"dense_layers": 3, "units": [64, 32]})
    with pytest.raises(ValueError, match="unknown head key"):
        normalize_head({"dense_layer": 2})
    assert resolve_trainable_layers("vgg16", "last_block", 19) == 4
    with pytest.raises(ValueError, match="outside"):
        resolve_trainable_layers("vgg16", 20, 19)


def test_head_layers_and_compilation():
    head = {
        "dense_layers": 2,
        "units": [16, 8],
        "activation": ["relu", "tanh"],
        "dropout": [0.1, 0.2],
        "batch_norm": True,
        "learning_rate": 0.01,
    }
    model = build_head(24, head, n_classes=10)
    layers = {layer.name: layer for layer in model.layers}
    assert [name for name in layers if name.startswith("head_")] == [
        "head_dense_0",
        "head_batch_norm_0",
        "head_dropout_0",
        "head_dense_1",
        "head_batch_norm_1",
        "head_dropout_1",
        "head_predictions",
    ]
    assert layers["head_dense_1"].units == 8
    assert layers["head_dense_1"].activation.__name__ == "tanh"
    assert layers["head_dropout_1"].rate == 0.2
    assert model.output_shape == (None, 10)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    no_hidden = build_head(24, {"dense_layers": 0})
    assert [layer.name for layer in no_hidden.layers] == [
        "embedding",
        "head_predictions",
    ]


# ---------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_fine_tuning_changes_only_the_trainable_tail(
    name, weight_files, images, tmp_path
):
    path, weights = weight_files(name, 32)
    k = BACKBONES[name].last_block_layers
    model = build_classifier(
        name, 32, path, {**SMALL_HEAD, "trainable_layers": k}, seed=0
    )
    backbone = classifier_backbone(model)
    _assert_same_weights(backbone.get_weights(), weights)

    paths, labels = images
    preprocess = BACKBONES[name].preprocess_input
    train_ds = image_dataset(
        paths, labels, 32, 4, shuffle=True, seed=0, preprocess=preprocess
    )
    valid_ds = image_dataset(
        paths[:4], labels[:4], 32, 4, shuffle=False, seed=0, preprocess=preprocess
    )
    validation = Validation(valid_ds, np.asarray(labels[:4]), np.asarray(paths[:4]), list("abcdefghij"))
    fitted = train(model, train_ds, validation, epochs=1, patience=2, seed=0)
    assert len(fitted.history) == 1 and fitted.best_epoch == 1

    before = iter(weights)
    for position, layer in enumerate(backbone.layers):
        saved = [next(before) for _ in layer.weights]
        now = layer.get_weights()
        if position < len(backbone.layers) - k:
            assert not layer.trainable
            _assert_same_weights(now, saved)
        else:
            assert layer.trainable
            # Trainable variables move; batch-norm statistics stay (inference mode).
            for variable, old, new in zip(layer.weights, saved, now):
                assert variable.trainable != np.array_equal(old, new), variable.path


def test_train_keeps_the_epoch_of_lowest_validation_loss_and_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 12)).astype(np.float32)
    y = rng.integers(0, 10, 80)
    head = {"dense_layers": 1, "units": 64, "dropout": 0.0, "learning_rate": 0.05}
    clips = np.array([f"c{i}" for i in range(20)])
    seen = []

    def run():
        model = build_head(12, head, seed=4)
        fitted = train(model, (x[:60], y[:60]), Validation(x[60:], y[60:], clips, list("abcdefghij")),
                       epochs=12, patience=3, batch_size=16, seed=4,
                       on_epoch=lambda epoch, scores: seen.append(epoch))
        return model, fitted

    model, fitted = run()
    history = fitted.history
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert seen == list(range(len(history)))
    # Random labels: the head overfits, so the lowest validation loss is an earlier epoch,
    # and training stopped `patience` epochs after it.
    assert fitted.best_epoch == history["val_loss"].idxmin() + 1 < len(history)
    assert len(history) == min(12, fitted.best_epoch + 3)
    # the model ends with that epoch's weights; val_loss is Keras' own cross-entropy
    keras_loss = model.evaluate(x[60:], y[60:], verbose=0)[0]
    assert keras_loss == pytest.approx(history["val_loss"].min(), rel=1e-5)
    assert fitted.best_scores["examples"]["loss"] == pytest.approx(keras_loss, rel=1e-5)

    again, fitted_again = run()
    pd.testing.assert_frame_equal(history, fitted_again.history)
    np.testing.assert_array_equal(predict_proba(model, x), predict_proba(again, x))


def test_train_stops_a_diverging_model():
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    model = build_head(4, {"dense_layers": 1, "units": 8, "dropout": 0.0, "learning_rate": 1e30}, 2,
                       seed=0)
    with pytest.raises(Diverged, match="diverged"):
        train(model, (x, y), Validation(x, y, np.arange(40).astype(str), ["a", "b"]),
              epochs=5, patience=5, batch_size=8)


# -------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("standardised", [False, True], ids=["raw", "standardised"])
def test_head_on_cached_embeddings_equals_full_image_model(
    weight_files, images, tmp_path, standardised
):
    name = "efficientnetb0"
    path, _ = weight_files(name, 32)
    paths, labels = images
    embeddings = compute_embeddings(name, 32, path, paths, batch_size=5)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(paths), 1280)

    cache = tmp_path / "cache" / "train.npz"
    save_embeddings(
        cache, embeddings, [f"c{i}" for i in range(12)], np.zeros(12), labels
    )
    cached = load_embeddings(cache)

    head = {"dense_layers": 1, "units": 16, "dropout": 0.3, "batch_norm": True}
    # the screening head standardises its input with the training embeddings' statistics
    stats = feature_statistics(cached.embeddings) if standardised else None
    head_model = build_head(cached.embeddings.shape[1], head, seed=0, stats=stats)
    validation = Validation(cached.embeddings, cached.label, cached.clip, list("abcdefghij"))
    train(head_model, (cached.embeddings, cached.label), validation, epochs=2, patience=2,
          batch_size=4, seed=0)

    full = build_classifier(name, 32, path, {**head, "trainable_layers": 0}, stats=stats)
    transfer_head_weights(head_model, full)
    dataset = image_dataset(
        paths,
        None,
        32,
        4,
        shuffle=False,
        seed=0,
        preprocess=BACKBONES[name].preprocess_input,
    )
    full_probabilities = predict_proba(full, dataset)
    head_probabilities = predict_proba(head_model, cached.embeddings)
    # Standardising divides by the embeddings' spread (1e-6 for this perturbed
    # EfficientNet), which magnifies float32 rounding of the two forward passes.
    np.testing.assert_allclose(
        full_probabilities, head_probabilities, atol=2e-3 if standardised else 1e-4
    )
    np.testing.assert_array_equal(full_probabilities.argmax(1), head_probabilities.argmax(1))


def test_embedding_cache_round_trip(tmp_path):
    path = tmp_path / "emb.npz"
    embeddings = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    save_embeddings(path, embeddings, ["a.1", "a.1", "b.2"], [0, 1, 0], [1, 1, 2])
    loaded = load_embeddings(path)
    np.testing.assert_array_equal(loaded.embeddings, embeddings)
    assert loaded.clip.tolist() == ["a.1", "a.1", "b.2"]
    assert loaded.segment.tolist() == [0, 1, 0] and loaded.label.tolist() == [1, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npz"]
    with pytest.raises(ValueError, match="length"):
        save_embeddings(tmp_path / "bad.npz", embeddings, ["a"], [0], [1])
    assert not (tmp_path / "bad.npz").exists()


def test_transfer_head_weights_requires_same_head():
    with pytest.raises(ValueError, match="head layers differ"):
        transfer_head_weights(
            build_head(4, {"dense_layers": 2}), build_head(4, {"dense_layers": 1})
        )


# The optimizer has no state before training; Keras warns that it skips it.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_classifier_survives_keras_save_and_load(weight_files, tmp_path):
    path, _ = weight_files("vgg16", 32)
    model = build_classifier("vgg16", 32, path, {**SMALL_HEAD, "trainable_layers": 4})
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict_proba(loaded, x), predict_proba(model, x))
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_random_init_embeddings_are_the_same_network_for_the_same_seed(images):
    """backbones.weights none: each embed job must draw the same backbone for its seed, or
    runs (and the segment lengths of one run) would compare different random networks."""
    paths, _ = images
    first = compute_embeddings("vgg16", 32, None, paths[:4], batch_size=4, seed=0)
    again = compute_embeddings("vgg16", 32, None, paths[:4], batch_size=4, seed=0)
    other = compute_embeddings("vgg16", 32, None, paths[:4], batch_size=4, seed=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_every_model_of_a_random_init_backbone_is_the_network_of_its_cache(images):
    """Trials and final models draw a randomly initialised backbone with the cache's seed
    (backbone_seed), whatever their own seed: the head's input statistics come from the
    cache, so they must be that network's."""
    from genreflow.models.backbones import embedding_model

    paths, _ = images
    cache = compute_embeddings("vgg16", 32, None, paths[:4], batch_size=4, seed=3)
    dataset = image_dataset(paths[:4], None, 32, 4, shuffle=False, seed=0,
                            preprocess=BACKBONES["vgg16"].preprocess_input)

    def features(model):
        return predict_proba(embedding_model(classifier_backbone(model)), dataset)

    for head_seed in (0, 11):
        model = build_classifier("vgg16", 32, None, SMALL_HEAD, seed=head_seed, backbone_seed=3)
        np.testing.assert_allclose(features(model), cache, rtol=1e-5, atol=1e-6)
    other = build_classifier("vgg16", 32, None, SMALL_HEAD, seed=0, backbone_seed=4)
    assert not np.allclose(features(other), cache)
