"""Fine-tuning on cached activations (genreflow.models.activations) is the end-to-end model."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genreflow.models import activations
from genreflow.models.activations import ActivationCache, activation_dataset, cut_backbone
from genreflow.models.backbones import (
    BACKBONES,
    build_backbone,
    compute_embeddings,
    resolve_trainable_layers,
)
from genreflow.models.build import build_model, end_to_end_model
from genreflow.models.data import ModelData
from genreflow.models.heads import feature_statistics
from genreflow.models.images import image_dataset
from genreflow.models.train import predict_proba, train

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

GENRES = ["a", "b", "c"]
HEAD = {"dense_layers": 1, "units": 8, "dropout": 0.3, "activation": "relu",
        "batch_norm": False, "learning_rate": 1e-4, "batch_size": 4, "epochs": 3}
SIZES = {"efficientnetb0": 32, "inceptionv3": 75, "resnet50": 32, "vgg16": 32}


def _calibrated(backbone, images):
    """Set every batch norm's statistics to those of its inputs on `images`, as a trained
    network's are: randomly initialised EfficientNetB0 and InceptionV3 otherwise give
    features that hardly vary between images (spread 1e-7), and standardising those turns
    float rounding into chaos. With momentum 0, one training-mode pass sets them."""
    norms = [layer for layer in backbone.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    backbone(images, training=True)
    for layer in norms:
        layer.momentum = 0.99


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Factory: image size -> (examples per split, image paths); 12 train, 6 valid, 6 test
    images of three genres whose pictures differ (bands at genre-typical heights)."""
    made = {}

    def make(size):
        if size in made:
            return made[size]
        directory = tmp_path_factory.mktemp(f"images{size}")
        rng = np.random.default_rng(size)
        frames = {}
        for split, n in (("train", 12), ("valid", 6), ("test", 6)):
            rows = []
            for i in range(n):
                label = i % 3
                pixels = rng.integers(0, 120, (size, size)).astype(np.uint8)
                band = slice(label * size // 3, (label + 1) * size // 3)
                pixels[band] += 120
                path = directory / f"{split}{i}.png"
                Image.fromarray(pixels, mode="L").save(path)
                rows.append({"clip": f"{split}{i}", "segment": 0, "genre": GENRES[label],
                             "image": str(path), "label": label})
            frames[split] = pd.DataFrame(rows)
        made[size] = frames
        return frames

    return make


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    made = {}

    def make(name, size, examples):
        if name not in made:
            backbone = build_backbone(name, size, None, seed=1)
            images = np.stack([np.asarray(Image.open(path)) for path in examples["image"]])
            rgb = np.repeat(images[..., None].astype(np.float32), 3, axis=-1)
            _calibrated(backbone, BACKBONES[name].preprocess_input(rgb))
            path = directory / f"{name}.weights.h5"
            backbone.save_weights(path)
            made[name] = str(path)
            keras.backend.clear_session()
        return made[name]

    return make


def _model_data(name, corpus, weights, storage="float16") -> ModelData:
    size = SIZES[name]
    examples = corpus(size)
    path = weights(name, size, examples["train"])
    train_embeddings = compute_embeddings(name, size, path, list(examples["train"]["image"]))
    return ModelData(kind="transfer", backbone=name, genres=GENRES, image_size=size,
                     weights=path, examples=examples,
                     stats=feature_statistics(train_embeddings), activation_storage=storage)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_a_cut_backbone_is_the_backbone(name):
    """frozen then tail = the backbone, exactly; the tail holds the last k layers (and their
    weights, shared), for the last block and for cuts inside a block (two boundaries)."""
    size = SIZES[name]
    backbone = build_backbone(name, size, None, seed=3)
    images = np.random.default_rng(0).uniform(-1, 1, (3, size, size, 3)).astype(np.float32)
    whole = np.asarray(backbone(images, training=False))
    for k in (BACKBONES[name].last_block_layers, 2, 5):
        cut = cut_backbone(backbone, k)
        boundary = cut.frozen(images, training=False)
        np.testing.assert_array_equal(np.asarray(cut.tail(boundary, training=False)), whole)
        assert {id(w) for w in cut.tail.weights} == {
            id(w) for layer in backbone.layers[-k:] for w in layer.weights}
    everything = cut_backbone(backbone, len(backbone.layers))  # all: the image is the boundary
    assert everything.boundary == [backbone.layers[0].name]
    np.testing.assert_array_equal(
        np.asarray(everything.tail(everything.frozen(images), training=False)), whole)
    if name == "resnet50":  # inside a residual block the shortcut is read too
        assert cut_backbone(backbone, 3).boundary == ["conv5_block3_3_conv", "conv5_block2_out"]
    assert cut_backbone(backbone, BACKBONES[name].last_block_layers).boundary == [
        BACKBONES[name].last_block_after]


def test_the_activation_dataset_shuffles_as_the_image_dataset(corpus):
    frame = corpus(32)["train"]
    labels = frame["label"].to_numpy()
    images = image_dataset(list(frame["image"]), labels, 32, 5, True, 7, None)
    rows = activation_dataset([np.arange(len(frame), dtype=np.float32)[:, None]], labels, 5,
                              True, 7)
    for _ in range(2):  # two epochs: reshuffled alike
        for (image, label), (row, row_label) in zip(images, rows):
            np.testing.assert_array_equal(label, row_label)
            order = np.asarray(row)[:, 0].astype(int)
            expected = np.stack([np.asarray(Image.open(frame["image"][i])) for i in order])
            np.testing.assert_array_equal(np.asarray(image)[..., 0], expected)


def _train(built, epochs=3):
    return train(built.model, built.train_data, built.validation, epochs=epochs, patience=5,
                 batch_size=built.batch_size, seed=0)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_fine_tuning_on_cached_activations_is_fine_tuning_end_to_end(name, corpus, weights):
    """The same model trained from the same weights and seed, once end to end on images and
    once on the cached activations below its trainable tail, predicts the same and ends
    with the same backbone weights. Float32 storage (the default): float16 is the next test."""
    params = {**HEAD, "trainable_layers": "last_block"}
    data = _model_data(name, corpus, weights, storage="float32")  # the default

    keras.backend.clear_session()  # as before every trial (tuning.train_trial)
    tail = build_model(data, params, seed=0)
    assert tail.trained_on == "activations"
    fitted_tail = _train(tail)
    on_activations = predict_proba(tail.model, tail.validation.inputs)
    tail_backbone = tail.backbone.get_weights()

    keras.backend.clear_session()
    whole = end_to_end_model(data, params, seed=0)
    assert whole.trained_on == "images"
    fitted_whole = _train(whole)
    on_images = predict_proba(whole.model, whole.validation.inputs)

    np.testing.assert_allclose(fitted_tail.history["loss"], fitted_whole.history["loss"],
                               rtol=1e-4)
    np.testing.assert_allclose(on_activations, on_images, atol=1e-4)
    end_to_end = whole.model.get_layer("backbone").backbone.get_weights()
    k = resolve_trainable_layers(name, "last_block", len(tail.backbone.layers))
    moved = 0
    for layer_tail, layer_whole in zip(tail.backbone.layers, whole.model.get_layer(
            "backbone").backbone.layers):
        for a, b in zip(layer_tail.get_weights(), layer_whole.get_weights()):
            np.testing.assert_allclose(a, b, atol=1e-4)
    for before, after in zip(
            build_backbone(name, SIZES[name], data.weights).get_weights(), tail_backbone):
        moved += not np.array_equal(before, after)
    assert moved > 0 and len(end_to_end) == len(tail_backbone) and k > 0


def test_float16_activations_predict_as_float32(corpus, weights, monkeypatch):
    """Stored as float16 (`training.activation_storage: float16`, half the memory) the
    activations train a model whose predictions agree with float32 storage's to 1e-2 on a
    stable training, and the cache says what it stores."""
    params = {**HEAD, "trainable_layers": "last_block"}
    data = _model_data("vgg16", corpus, weights)
    said = []
    data.log = said.append
    keras.backend.clear_session()
    half = build_model(data, params, seed=0)
    assert half.validation.inputs.dtype == np.float16
    assert "float16" in said[0] and "block4_pool" in said[0]
    _train(half)
    data.activations, data.activation_storage = None, "float32"
    keras.backend.clear_session()
    full = build_model(data, params, seed=0)
    assert full.validation.inputs.dtype == np.float32
    _train(full)
    np.testing.assert_allclose(predict_proba(half.model, half.validation.inputs),
                               predict_proba(full.model, full.validation.inputs), atol=1e-2)


def test_float16_is_refused_where_it_would_move_the_heads_input(corpus, weights, monkeypatch):
    monkeypatch.setattr(activations, "FLOAT16_SPREAD_TOLERANCE", 1e-4)
    data = _model_data("vgg16", corpus, weights)
    said = []
    data.log = said.append
    built = build_model(data, {**HEAD, "trainable_layers": "last_block"}, seed=0)
    assert built.validation.inputs.dtype == np.float32
    assert "float32" in said[0] and "float16 moves the head's input by" in said[0]
    assert "float32" in said[1]  # valid follows train's choice


def test_activations_are_computed_once_per_job(corpus, weights):
    data = _model_data("vgg16", corpus, weights, storage="float32")
    said = []
    data.log = said.append
    params = {**HEAD, "trainable_layers": "last_block"}
    for seed in (0, 1, 2):
        build_model(data, params, seed=seed)
    assert len([line for line in said if line.startswith("cached")]) == 2  # train, valid
    assert "float32" in said[0] and "float16 moves" not in said[0]  # not even tried
    build_model(data, {**params, "trainable_layers": 2}, seed=0)
    assert len([line for line in said if line.startswith("cached")]) == 4  # another cut


def test_float16_is_kept_only_where_it_is_exact_enough():
    rng = np.random.default_rng(0)
    assert activations._as_stored(rng.normal(0, 1, 1000)).dtype == np.float16
    assert activations._as_stored(rng.normal(0, 1e-7, 1000)).dtype == np.float32  # subnormal
    assert activations._as_stored(rng.normal(0, 1, 1000) * 1e5).dtype == np.float32  # range
    cache = ActivationCache(lambda split: None)
    assert cache.by_k == {}


def test_a_nearly_constant_feature_is_not_blown_up_to_unit_spread():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(0, 1e-7, (50, 4))  # the scale of a random-init EfficientNetB0
    embeddings[:, 3] = 5e-7 + rng.normal(0, 1e-12, 50)  # a unit that hardly ever moves
    mean, variance = feature_statistics(embeddings)
    np.testing.assert_allclose(variance[:3], embeddings[:, :3].var(axis=0))  # standardised
    assert variance[3] == pytest.approx(1e-2 * embeddings.var(axis=0).mean())


def test_a_cross_validated_fine_tuning_trial_is_the_mean_of_its_folds(corpus, weights, tmp_path):
    """cv_folds with fine-tuning: each fold trains the tail on the cached activations of the
    pooled train and validation images (computed once), the head standardised by the other
    folds' embeddings; the trial's value is the mean over the folds."""
    import optuna
    from optuna.trial import TrialState

    from genreflow.journal import journal_storage
    from genreflow.tuning.space import RoundPlan
    from genreflow.tuning.study import claim_trial
    from genreflow.tuning.trial import TrialRule
    from genreflow.tuning.worker import RoundContext, run_trial

    data = _model_data("vgg16", corpus, weights, storage="float32")
    for split in ("train", "valid"):
        frame = data.examples[split]
        data.embeddings[split] = compute_embeddings("vgg16", 32, data.weights, list(frame["image"]))
        data.embedding_rows[split] = {key: frame[key].to_numpy()
                                      for key in ("clip", "segment", "label")}
    said = []
    data.log = said.append
    study = optuna.create_study(storage=journal_storage(tmp_path / "s.journal", lambda m: None),
                                study_name="s", direction="maximize")
    plan = RoundPlan.from_config({"fixed": {**HEAD, "trainable_layers": "last_block"},
                                  "n_trials": 1}, "transfer")
    trial = claim_trial(study, 1, 0, "x")
    state = run_trial(study, trial, RoundContext(plan, HEAD, {}, TrialRule(plan.objective, 8, 3),
                                                 data=data), log=said.append)
    assert state == TrialState.COMPLETE, said
    done = study.trials[0]
    folds = done.user_attrs["fold_values"]
    assert len(folds) == 3 and done.value == pytest.approx(np.mean(folds), abs=1e-6)
    cached = [line for line in said if line.startswith("cached")]
    assert len(cached) == 1 and "for pool: 18 images" in cached[0]  # once, all 3 folds
