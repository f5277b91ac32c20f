"""How far an input lies from what a model was trained on: the "unfamiliar" score.

A classifier gives a genre to anything, a microphone recording or a speech as much as a
song, and often with confidence: its probabilities say how the classes compare, not whether
the input is like any of them. The score here looks at what the model computes before it
decides: the representation its head reads (`representation_tensor`), and how far that lies
from the training examples' representations of the nearest genre (Lee et al., 2018).

- The representation is taken from the model itself (a sub-model of model.keras,
  `Representations`), so the score of an exported model is computed by the network that
  was exported: for an image backbone (frozen or fine-tuned) its pooled features, for a
  head on an audio backbone's embedding that embedding, for the baseline CNN its last
  hidden layer.
- Chosen by measurement over the input of the softmax layer (`softmax_input_tensor`, the
  head's last hidden layer; benchmarks/confidence.py --representation softmax_input,
  BENCHMARKS.md "Confidence"). On the demo's 16 final models the softmax input flagged a
  shifted rendering of the songs more often (median 50% against 32%) and its flagged songs
  were the less accurate ones more often (13 models of 16 against 8); but a head trained
  on few examples maps noise into its genres' region: on the tests' tiny run (2 epochs,
  16 units) it let white noise and near-silent clips through (0.75 and 0.96 of the
  threshold) where the head's input flagged them at 2.6 and 2.0 times it. The head's input
  never missed white noise, near-silent clips or speech on any measured model (the
  baseline CNN's last hidden layer excepted for speech), so it is the default; what it
  cannot see is what a given head learned to rely on (for a frozen backbone it is the same
  for every head trained on it).
- The distance is the Mahalanobis distance to the nearest genre's mean under one shared
  covariance, the features standardised by the training set's mean and spread and the
  covariance shrunk (Ledoit-Wolf: hundreds of features, tens to hundreds of training
  examples), divided by sqrt(features) so that it reads as a distance per feature.
- A track's score is the mean of its windows' scores (a long song is several windows).
  The mean, not the maximum: the threshold is fitted on tracks of one or a few windows, and
  the maximum of many windows would exceed it far more often than `rate` for in-distribution
  songs of many windows.
- The threshold is the (1 - rate) quantile of the validation tracks' scores
  (`threshold_for`): about `rate` of in-distribution tracks are flagged. Validation tracks,
  because the training examples are closer to their own means than unseen songs are.

What the flag says: this input is unlike what the model was trained on, so its prediction
is a guess about something the model never saw. What it does not say: that the genre is
wrong, nor that an unflagged prediction is right.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# The softmax layer of each kind of saved model: a head's (on a backbone or an embedding),
# the baseline CNN's.
SOFTMAX_LAYERS = ("head_predictions", "predictions")
POOL_LAYER = "pool"  # an image backbone classifier: backbone -> pool -> head
AGGREGATION = "mean"
# standardisation floor, as genreflow.models.heads.feature_statistics floors the head's
VARIANCE_FLOOR = 1e-2


def _softmax_layer(model):
    names = {layer.name for layer in model.layers}
    for name in SOFTMAX_LAYERS:
        if name in names:
            return model.get_layer(name)
    raise ValueError(f"model {model.name!r} has none of the layers {SOFTMAX_LAYERS}: not a "
                     "genreflow classifier")


def representation_name(model) -> str:
    """What `representation_tensor` takes from `model`, in words (for the bundle and logs)."""
    names = {layer.name for layer in model.layers}
    if POOL_LAYER in names:
        return "the backbone's pooled features, the head's input"
    if "head_predictions" in names:
        return "the embedding the head reads, the model's input"
    return "the last hidden layer, the input of the softmax layer"


def representation_tensor(model):
    """The symbolic tensor of `model` (a saved model.keras of genreflow) that the score
    measures: the head's input. That is the output of the pooling layer of an image
    classifier, the input of a head on an embedding (its own input), and for the baseline
    CNN (no head apart from its convolutions) the input of its softmax layer."""
    names = {layer.name for layer in model.layers}
    if POOL_LAYER in names:
        return model.get_layer(POOL_LAYER).output
    if "head_predictions" in names:
        return model.inputs[0]
    return _softmax_layer(model).input


def softmax_input_tensor(model):
    """The alternative measured against `representation_tensor` (benchmarks/confidence.py
    --representation softmax_input): the input of the softmax layer, the head's last hidden
    layer."""
    return _softmax_layer(model).input


class Representations:
    """`model`'s class probabilities and representations (`representation_tensor`) of a batch
    of inputs in one forward pass of the same network."""

    def __init__(self, model):
        import keras

        self.model = model
        tensor = representation_tensor(model)
        self.is_input = tensor is model.inputs[0]
        # one input tensor, not the list the model may have been built with: called on an
        # array, a list-built model warns that the structure differs (on the console)
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.both = None if self.is_input else keras.Model(inputs, [model.outputs[0], tensor])

    def __call__(self, inputs, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, classes), representations (n, features)) of `inputs`, an array
        or a batched tf.data dataset of (inputs, labels)."""
        from genreflow.models.train import predict_proba

        if self.is_input:
            return predict_proba(self.model, inputs), np.asarray(inputs, dtype=np.float64)
        if hasattr(inputs, "element_spec"):
            probabilities, features = self.both.predict(inputs, verbose=0)
            return np.asarray(probabilities), np.asarray(features, dtype=np.float64)
        arrays = np.asarray(inputs, dtype=np.float32)
        parts = [self.both(arrays[i:i + batch_size], training=False)
                 for i in range(0, len(arrays), batch_size)]
        if not parts:
            n_classes, n_features = (int(t.shape[-1]) for t in self.both.outputs)
            return np.zeros((0, n_classes)), np.zeros((0, n_features))
        return (np.concatenate([np.asarray(p) for p, _ in parts]),
                np.concatenate([np.asarray(f, dtype=np.float64) for _, f in parts]))


# ------------------------------------------------------------------------- the distance
@dataclass
class Unfamiliarity:
    """What the score of a model needs (saved beside it: `save`, `load`): the training
    representations' mean and spread (standardisation), each genre's mean and the shared
    precision matrix in standardised units, and once fitted on validation the threshold
    above which a track is flagged and the rate it was fitted for."""

    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    class_means: np.ndarray  # (genres with training examples, features), standardised
    classes: np.ndarray  # the labels of class_means' rows
    precision: np.ndarray  # (features, features), standardised
    shrinkage: float
    threshold: float = float("nan")
    rate: float = float("nan")

    @property
    def features(self) -> int:
        return int(self.mean.size)

    def window_scores(self, representations: np.ndarray) -> np.ndarray:
        """Each window's distance to the nearest genre: sqrt(min over genres of the squared
        Mahalanobis distance / features)."""
        z = (np.asarray(representations, dtype=np.float64) - self.mean) / self.scale
        if z.ndim != 2 or z.shape[1] != self.features:
            raise ValueError(f"representations of shape {z.shape}; this model's have "
                             f"{self.features} features")
        # (z - m)' P (z - m) = z'Pz - 2 z'Pm + m'Pm, for every window and genre at once
        pz = z @ self.precision
        pm = self.class_means @ self.precision
        squared = ((pz * z).sum(axis=1)[:, None] - 2.0 * pz @ self.class_means.T
                   + (pm * self.class_means).sum(axis=1)[None, :])
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0) / self.features)

    def track_scores(self, representations: np.ndarray, tracks: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """(tracks in sorted order, each one's score: the mean of its windows' scores)."""
        scores = self.window_scores(representations)
        names, owner = np.unique(np.asarray(tracks), return_inverse=True)
        totals = np.bincount(owner, weights=scores, minlength=len(names))
        return names, totals / np.bincount(owner, minlength=len(names))

    def relative(self, track_score: float) -> float:
        """A track's score in units of the threshold: above 1 is flagged."""
        return float(track_score) / self.threshold

    def flagged(self, track_score) -> np.ndarray | bool:
        return np.asarray(track_score) > self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "scale": self.scale, "class_means": self.class_means,
                "classes": self.classes, "precision": self.precision,
                "shrinkage": np.float64(self.shrinkage), "threshold": np.float64(self.threshold),
                "rate": np.float64(self.rate)}

    def save(self, path: str | os.PathLike) -> None:
        """An .npz (float32 precision: half the size, distances to 1e-6)."""
        from genreflow.io import atomic_path

        arrays = self.arrays()
        arrays["precision"] = arrays["precision"].astype(np.float32)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Unfamiliarity:
        with np.load(path, allow_pickle=False) as data:
            values = {key: data[key] for key in data.files}
        try:
            return cls(
                mean=values["mean"].astype(np.float64), scale=values["scale"].astype(np.float64),
                class_means=values["class_means"].astype(np.float64), classes=values["classes"],
                precision=values["precision"].astype(np.float64),
                shrinkage=float(values["shrinkage"]), threshold=float(values["threshold"]),
                rate=float(values["rate"]))
        except KeyError as missing:
            raise ValueError(f"{path}: not an unfamiliarity file (no {missing})") from None


def fit_statistics(representations: np.ndarray, labels: Sequence[int]) -> Unfamiliarity:
    """The score's statistics from the training examples' representations and labels
    (no threshold yet: `with_threshold`)."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(representations, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels) or len(x) < 2:
        raise ValueError(f"need (examples, features) representations with one label each, got "
                         f"{x.shape} and {labels.shape}")
    mean = x.mean(axis=0)
    variance = x.var(axis=0)
    floor = VARIANCE_FLOOR * float(variance.mean()) if variance.size else 0.0
    scale = np.sqrt(np.maximum(variance, max(floor, 1e-30)))
    z = (x - mean) / scale
    classes = np.unique(labels)
    class_means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    residuals = z - class_means[np.searchsorted(classes, labels)]
    shrunk = LedoitWolf(assume_centered=True).fit(residuals)
    return Unfamiliarity(mean=mean, scale=scale, class_means=class_means, classes=classes,
                         precision=np.asarray(shrunk.precision_, dtype=np.float64),
                         shrinkage=float(shrunk.shrinkage_))


def threshold_for(scores: Sequence[float], rate: float) -> float:
    """The (1 - rate) quantile of in-distribution tracks' scores (numpy's linear
    interpolation): about `rate` of tracks like these score above it."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0.0 < rate < 1.0:
        raise ValueError(f"unfamiliar rate must be between 0 and 1, got {rate}")
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"need finite validation scores to fit the threshold, got {scores.size}")
    return float(np.quantile(scores, 1.0 - rate))


def with_threshold(stats: Unfamiliarity, valid_track_scores: Sequence[float], rate: float) -> Unfamiliarity:
    from dataclasses import replace

    return replace(stats, threshold=threshold_for(valid_track_scores, rate), rate=float(rate))


def describe(stats: Unfamiliarity, representation: str) -> Mapping:
    """What preprocessing.json and the logs say about the score."""
    return {
        "score": ("Mahalanobis distance of the model's representation to the nearest genre's "
                  "mean of the training examples (shared covariance, Ledoit-Wolf shrinkage "
                  f"{stats.shrinkage:.3f}, standardised features), per feature"),
        "representation": representation,
        "features": stats.features,
        "aggregation": f"{AGGREGATION} over the track's windows",
        "threshold": stats.threshold,
        "rate": stats.rate,
    }
