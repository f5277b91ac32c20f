"""Fine-tuning on cached activations: train only what is trainable.

A fine-tuning model (`trainable_layers` k > 0) runs its whole backbone in inference mode
(`genreflow.models.backbones.InferenceMode`), and the images are not augmented, so everything below
the trainable tail computes the same output for an image in every epoch of every trial.
`cut_backbone` splits a backbone there: `frozen` maps an image to the tensors the tail
reads (its boundary), `tail` maps those to the backbone's output and shares its layers
(and so its weights) with the backbone. The boundary's values are computed once per job
and (backbone, feature, k, weights, image size) (`ActivationCache`), and each trial
trains the tail and head on them: a VGG16 `last_block` trial then costs three of its
thirteen convolutions per image instead of a full forward and backward pass.

The model trained this way is the end-to-end model: same layers, weights, batch order
(`activation_dataset` shuffles as `genreflow.models.images.image_dataset` does), and the
tests compare the two trained from the same weights and seed. Activations are stored as
float32 (the exact model), or with `training.activation_storage: float16` in half the memory
where that keeps them to 1e-3 of their size and moves the head's input by at most 5% of each
feature's spread over the training images (else float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

# float16 keeps an activation array if its relative RMS rounding error stays below this,
# and if it moves no feature of the head's input (on any probed image) by more than
# FLOAT16_SPREAD_TOLERANCE of that feature's spread over the training images
FLOAT16_TOLERANCE = 1e-3
FLOAT16_SPREAD_TOLERANCE = 0.05


@dataclass
class BackboneCut:
    """A backbone split below its last `k` layers (`cut_backbone`)."""

    frozen: keras.Model  # image -> boundary tensors (a list, possibly of one)
    tail: keras.Model  # boundary tensors -> backbone output; layers shared with the backbone
    boundary: list[str]  # the layers whose outputs the tail reads
    k: int


def _producer(tensor) -> keras.layers.Layer:
    return tensor._keras_history[0]


def cut_backbone(backbone: keras.Model, k: int) -> BackboneCut:
    """Split `backbone` so that its last `k` layers (`genreflow.models.backbones.set_trainable_tail`'s
    trainable ones) form the tail. The boundary is every tensor a tail layer reads from a
    layer below the tail: one tensor at a block boundary (`last_block`), several inside a
    residual block (the shortcut too)."""
    layers = backbone.layers
    if k == len(layers) and isinstance(layers[0], keras.layers.InputLayer):
        k -= 1  # the input layer has nothing to train: the boundary is the (preprocessed) image
    if not 0 < k < len(layers):
        raise ValueError(f"cannot cut {backbone.name} below its last {k} of {len(layers)} layers")
    tail_layers = set(id(layer) for layer in layers[len(layers) - k:])
    # the backbone's own graph only: a sub-model built on a layer's output adds nodes to it
    own_nodes = {id(node) for nodes in backbone._nodes_by_depth.values() for node in nodes}
    boundary, seen = [], set()
    for layer in layers[len(layers) - k:]:
        for node in (node for node in layer._inbound_nodes if id(node) in own_nodes):
            for tensor in node.input_tensors:
                producer = _producer(tensor)
                if id(producer) not in tail_layers and id(tensor) not in seen:
                    seen.add(id(tensor))
                    boundary.append(tensor)
    tail = keras.Model(boundary, backbone.output, name=f"{backbone.name}_tail")
    frozen = keras.Model(backbone.input, boundary, name=f"{backbone.name}_frozen")
    # The tail must hold exactly the last k layers, or it would train other weights than
    # the end-to-end model does (a layer below the boundary that the tail reached again).
    inner = [layer for layer in tail.layers if not isinstance(layer, keras.layers.InputLayer)]
    if sorted(map(id, inner)) != sorted(tail_layers - {id(backbone.layers[0])}):
        raise ValueError(f"the last {k} layers of {backbone.name} are not a closed tail")
    return BackboneCut(frozen, tail, [_producer(t).name for t in boundary], k)


def _as_stored(values: np.ndarray) -> np.ndarray:
    """float16 when it is exact enough (and in range), else float32."""
    values = np.asarray(values, dtype=np.float32)
    scale = float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0
    if scale == 0.0 or float(np.max(np.abs(values))) >= np.finfo(np.float16).max:
        return values
    half = values.astype(np.float16)
    error = float(np.sqrt(np.mean(np.square(half.astype(np.float32) - values))))
    return half if error <= FLOAT16_TOLERANCE * scale else values


def _pooled(tail: keras.Model, values: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """The tail's pooled output (the head's input) for activations `values`."""
    pooled = []
    for start in range(0, len(values[0]), batch_size):
        parts = [part[start:start + batch_size].astype(np.float32) for part in values]
        out = np.asarray(tail(model_input(parts), training=False))
        pooled.append(out.mean(axis=(1, 2)))
    return np.concatenate(pooled)


def float16_gap(tail: keras.Model, full: list[np.ndarray], half: list[np.ndarray],
                spread: np.ndarray, probe: int = 256) -> float:
    """How far float16 storage moves the head's input, in units of each feature's spread
    over the training images (what the head's standardisation divides by): rounding of
    1e-3 of a value is harmless where features vary by more than their size, fatal where
    they sit at a nearly constant value (a random-init VGG16 at 224 px)."""
    rows = slice(0, min(probe, len(full[0])))
    gap = np.abs(_pooled(tail, [v[rows] for v in half]) - _pooled(tail, [v[rows] for v in full]))
    return float(np.max(gap / np.asarray(spread, dtype=np.float64)))


@dataclass
class ActivationCache:
    """The boundary values of one (backbone, feature, k, weights, image size), per split,
    computed on first use: one frozen forward pass per job instead of one per epoch."""

    images: Callable[[str], tf.data.Dataset]  # split -> batched, unshuffled backbone input
    log: Callable = print
    # the spread (sd) of each pooled feature over the training images, or None
    spread: np.ndarray | None = None
    storage: str = "float32"  # config training.activation_storage: float32 or float16
    by_k: dict[int, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    half: dict[int, bool] = field(default_factory=dict)  # float16 storage, per cut

    def get(self, cut: BackboneCut, split: str) -> list[np.ndarray]:
        cached = self.by_k.setdefault(cut.k, {})
        if split not in cached:
            outputs = cut.frozen.predict(self.images(split), verbose=0)
            outputs = [np.asarray(values, dtype=np.float32) for values in
                       (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
            candidates = [_as_stored(values) for values in outputs]
            why = ""
            if cut.k not in self.half:  # decided on the first split cached, kept for all
                half = self.storage == "float16" and all(c.dtype == np.float16
                                                         for c in candidates)
                if half and self.spread is not None:
                    gap = float16_gap(cut.tail, outputs, candidates, self.spread)
                    half, why = gap <= FLOAT16_SPREAD_TOLERANCE, f" (float16 moves the head's input by {gap:.1e} of its spread)"
                self.half[cut.k] = half
            stored = [c if self.half[cut.k] else o for c, o in zip(candidates, outputs)]
            cached[split] = stored
            self.log(
                f"cached the activations below the last {cut.k} layers "
                f"({', '.join(cut.boundary)}) for {split}: {len(stored[0])} images x "
                f"{sum(int(np.prod(v.shape[1:])) for v in stored):,} values, "
                f"{', '.join(str(v.dtype) for v in stored)}, "
                f"{sum(v.nbytes for v in stored) / 2**20:.0f} MiB{why}"
            )
        return cached[split]


def model_input(values: list[np.ndarray]):
    """What a tail model takes: the one boundary array, or the list of them."""
    return values if len(values) > 1 else values[0]


def activation_dataset(
    activations: list[np.ndarray],
    labels: np.ndarray | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rows: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of (activations, labels) in the order `genreflow.models.images.image_dataset` gives
    the same examples' images: tf.data's shuffle depends on the seed, the buffer and the
    count only, so shuffling row numbers gives the images' permutation. `rows` (row numbers
    of a cross-validation fold; `labels` are theirs) picks examples without copying."""
    tensors = [tf.constant(values) for values in activations]
    rows = np.arange(len(activations[0])) if rows is None else np.asarray(rows)
    n = len(rows)
    rows = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))
    if labels is not None:
        rows = tf.data.Dataset.zip((rows, tf.data.Dataset.from_tensor_slices(
            np.asarray(labels, dtype=np.int32))))
    else:
        rows = rows.map(lambda row: (row, tf.constant(0, tf.int32)))
    rows = rows.cache()
    if shuffle:
        rows = rows.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    rows = rows.batch(batch_size)

    def gather(row, label):
        inputs = model_input(tuple(tf.cast(tf.gather(values, row), tf.float32)
                                   for values in tensors))
        return (inputs, label) if labels is not None else inputs

    return rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def build_tail_classifier(
    cut: BackboneCut, head: Mapping, n_classes: int, stats=None
) -> keras.Model:
    """Compiled tail + pooling + head, taking the boundary activations: the trainable part
    of `genreflow.models.heads.build_classifier`'s model with the same k, layers named alike so
    that the head's weights transfer to the full model by name."""
    from genreflow.models.backbones import InferenceMode
    from genreflow.models.heads import _apply_head, _compile, normalize_head

    config = normalize_head(dict(head))
    cut.tail.trainable = True
    for layer in cut.tail.layers:
        layer.trainable = True
    inputs = [keras.Input(shape=tensor.shape[1:], name=f"boundary_{i}")
              for i, tensor in enumerate(cut.tail.inputs)]
    inputs = model_input(inputs)
    features = InferenceMode(cut.tail, name="backbone")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(inputs, _apply_head(pooled, config, n_classes, stats),
                        name="tail_classifier")
    _compile(model, config["learning_rate"])
    return model
