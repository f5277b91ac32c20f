"""The "unfamiliar" score: the Mahalanobis distance to the nearest genre against a direct
computation, its threshold (about the rate of in-distribution tracks flagged), a track's
score from its windows, and the representation taken from each kind of saved model (an
image backbone's pooled features, fine-tuned or not; a head's embedding; the baseline
CNN's last hidden layer)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from genreflow.models.unfamiliar import (
    Unfamiliarity,
    fit_statistics,
    threshold_for,
    with_threshold,
)


# ------------------------------------------------------------------- the unfamiliar score
def gaussian_classes(n_per_class, seed, shift=0.0, dims=20):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(3, dims))
    mixing = np.random.default_rng(98).normal(size=(dims, dims)) / np.sqrt(dims)
    x = np.concatenate([rng.normal(size=(n_per_class, dims)) @ mixing + c + shift for c in centres])
    return 5.0 * x + 100.0, np.repeat(np.arange(3), n_per_class)


def test_the_score_is_the_mahalanobis_distance_to_the_nearest_genre():
    from sklearn.covariance import LedoitWolf

    x, labels = gaussian_classes(40, seed=0)
    stats = fit_statistics(x, labels)
    probe = gaussian_classes(5, seed=1, shift=0.5)[0]
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    means = np.stack([z[labels == c].mean(axis=0) for c in range(3)])
    precision = LedoitWolf(assume_centered=True).fit(z - means[labels]).precision_
    zp = (probe - x.mean(axis=0)) / x.std(axis=0)
    expected = [np.sqrt(min((v - m) @ precision @ (v - m) for m in means) / x.shape[1]) for v in zp]
    np.testing.assert_allclose(stats.window_scores(probe), expected, rtol=1e-6)
    assert 0 < stats.shrinkage < 1


def test_the_threshold_flags_about_the_rate_of_in_distribution_tracks_and_far_ones_all():
    assert threshold_for(np.arange(1, 101), 0.05) == pytest.approx(np.quantile(np.arange(1, 101), 0.95))
    with pytest.raises(ValueError, match="between 0 and 1"):
        threshold_for([1.0, 2.0], 0.0)
    x, labels = gaussian_classes(100, seed=2)
    stats = fit_statistics(x, labels)
    valid = gaussian_classes(100, seed=3)[0]
    stats = with_threshold(stats, stats.window_scores(valid), 0.1)
    fresh = gaussian_classes(2000, seed=4)[0]
    assert stats.flagged(stats.window_scores(fresh)).mean() == pytest.approx(0.1, abs=0.03)
    far = gaussian_classes(50, seed=5, shift=4.0)[0]
    assert stats.flagged(stats.window_scores(far)).all()
    assert stats.relative(stats.threshold) == 1.0


def test_a_track_scores_the_mean_of_its_windows_and_the_statistics_round_trip(tmp_path):
    x, labels = gaussian_classes(30, seed=6)
    stats = with_threshold(fit_statistics(x, labels), [1.0, 2.0, 3.0], 0.5)
    probe = gaussian_classes(2, seed=7, shift=1.0)[0]
    windows = stats.window_scores(probe)
    tracks, scores = stats.track_scores(probe, ["b", "a", "b", "a", "b", "a"])
    assert list(tracks) == ["a", "b"]
    assert scores == pytest.approx([windows[1::2].mean(), windows[0::2].mean()])
    stats.save(tmp_path / "u.npz")
    loaded = Unfamiliarity.load(tmp_path / "u.npz")
    assert loaded.threshold == 2.0 and loaded.rate == 0.5
    np.testing.assert_allclose(loaded.window_scores(probe), windows, rtol=1e-5)


# --------------------------------------------------- the representation of each kind of model
@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, size=(6, 32, 32, 3)).astype(np.float32)


def saved_and_loaded(model, path):
    import keras

    from genreflow.models.assemble import save_model_atomic

    save_model_atomic(model, path)
    return keras.saving.load_model(path, compile=False)


def softmax_of(features, model):
    """What the model's softmax layer makes of `features`."""
    from genreflow.models.unfamiliar import _softmax_layer

    weights, bias = _softmax_layer(model).get_weights()
    logits = features @ weights + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    return expected / expected.sum(axis=1, keepdims=True)


def test_an_image_models_representation_is_its_own_backbones_pooled_features(images, tmp_path):
    """A fine-tuned model.keras (its last backbone layers changed by training): the score
    reads the pooled features of its own backbone, not those of the frozen network the
    embedding cache was made with."""
    from genreflow.models.backbones import build_backbone, embedding_model
    from genreflow.models.heads import build_classifier, classifier_backbone
    from genreflow.models.train import predict_proba
    from genreflow.models.unfamiliar import Representations, representation_name

    model = build_classifier("vgg16", 32, None, {"trainable_layers": 2, "units": 8}, 3, seed=0)
    for layer in classifier_backbone(model).layers[-2:]:  # what fine-tuning does to the tail
        layer.set_weights([w * 1.5 + 0.01 for w in layer.get_weights()])
    loaded = saved_and_loaded(model, tmp_path / "model.keras")
    probabilities, features = Representations(loaded)(images)
    np.testing.assert_allclose(probabilities, predict_proba(loaded, images), atol=1e-6)
    own = predict_proba(embedding_model(classifier_backbone(loaded)), images)
    np.testing.assert_allclose(features, own, rtol=1e-4, atol=1e-6)
    frozen = predict_proba(embedding_model(build_backbone("vgg16", 32, None, seed=0)), images)
    assert np.abs(features - frozen).max() > 10 * np.abs(features - own).max()
    assert "pooled features" in representation_name(loaded)


def test_a_head_on_an_embedding_reads_the_embedding_and_the_baseline_its_last_hidden_layer(
        images, tmp_path):
    from genreflow.models.baseline import build_baseline_cnn
    from genreflow.models.heads import build_head
    from genreflow.models.unfamiliar import (
        Representations,
        representation_name,
        softmax_input_tensor,
    )

    head = saved_and_loaded(build_head(12, {"units": 8}, 3, seed=0), tmp_path / "head.keras")
    embeddings = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    _, features = Representations(head)(embeddings)
    np.testing.assert_array_equal(features, embeddings)
    assert "embedding" in representation_name(head)
    assert softmax_input_tensor(head).shape[-1] == 8  # the measured alternative: its hidden units
    cnn = saved_and_loaded(build_baseline_cnn({"conv_layers": 1, "kernels": 4, "dense_layers": 2,
                                               "units": [16, 8]}, 32, 3), tmp_path / "cnn.keras")
    probabilities, features = Representations(cnn)(images[..., :1] / 255.0)
    assert features.shape == (6, 8)  # the last dense block's units
    weights, bias = cnn.get_layer("predictions").get_weights()
    logits = features @ weights + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(axis=1, keepdims=True),
                               atol=1e-5)
    assert "last hidden layer" in representation_name(cnn)
