"""The model of one set of hyperparameters, built for what it trains on. Tuning trials
(`genreflow.tuning.trial`) and final models (`genreflow.evaluation.train`) are both built
here, so a final model is its trial's model trained by the same rule.

- `build_model(data, params, seed)` -> `BuiltModel`: a head on the cached embeddings (a
  frozen backbone, and audio backbones always), the trainable tail and head of a fine-tuned
  backbone on the cached activations below the tail (`genreflow.models.activations`, one
  frozen forward pass per job), or the baseline CNN on images;
- `split_inputs(data, built, split)`: what a built model predicts on for a split;
- `end_to_end_model(data, params, seed)`: the same fine-tuning model trained on images end
  to end, which the activation cache must reproduce (tests/test_activations.py,
  benchmarks/finetune_cache.py compare the two);
- `build_model_from_best(...)`: the compiled image model of a best_trial.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from genreflow.hyperparameters import HEAD_KEYS
from genreflow.models.data import ModelData, activation_cache, pooled_examples, split_dataset
from genreflow.models.views import check_training_rows, training_views, uses_views
from genreflow.names import BASELINE, is_audio_backbone, model_kind


def head_config(params: Mapping) -> dict:
    return {key: params[key] for key in HEAD_KEYS}


def trains_on_embeddings(backbone: str, params: Mapping) -> bool:
    """Whether a model of `params` is a head on the cached embeddings: a frozen backbone
    gives exactly the cached embeddings (tests/test_models.py), so the head trains on them
    instead of running the backbone every epoch. Audio backbones always are."""
    from genreflow.models.backbones import backbone_spec

    if model_kind(backbone) == "baseline":
        return False
    if is_audio_backbone(backbone):
        return True  # frozen_backbone_plan fixed trainable_layers to 0
    value = params["trainable_layers"]
    return (backbone_spec(backbone).last_block_layers if value == "last_block" else int(value)) == 0


def build_model_from_best(
    best: Mapping,
    image_size: int,
    weights,
    n_classes: int,
    stats=None,
    backbone_seed: int = 0,
    seed: int | None = None,
):
    """The compiled image model of a best_trial.json: the backbone classifier (RGB 0..255
    images; `split_dataset` applies the backbone's preprocess_input) with `stats` in its
    head, drawn with `seed`, or the baseline CNN (`weights`, `stats`, `backbone_seed` and
    `seed` unused)."""
    params = best["params"]
    if best["backbone"] == BASELINE:
        from genreflow.models.baseline import build_baseline_cnn

        return build_baseline_cnn(params, image_size, n_classes)
    from genreflow.models.heads import build_classifier

    return build_classifier(
        best["backbone"], image_size, weights, head_config(params), n_classes, seed=seed,
        stats=stats, backbone_seed=backbone_seed,
    )


@dataclass
class BuiltModel:
    """A compiled model and what `genreflow.models.train.train` feeds it: `trained_on`
    says which inputs ("embeddings", "activations" of the frozen layers, or "images");
    a model on activations keeps the backbone it trains the tail of, and the cut."""

    model: Any
    train_data: Any
    validation: Any  # genreflow.models.train.Validation
    batch_size: int
    trained_on: str = "images"
    backbone: Any = None
    cut: Any = None  # genreflow.models.activations.BackboneCut
    # the track of every training row (a view's is the track it is a copy of), and how many
    # of the rows are augmented views: what the leakage checks and the logs read
    train_tracks: Any = None
    n_views: int = 0


def _views_needed(data: ModelData, params: Mapping, what: str) -> None:
    if what == "embeddings" and data.view_embeddings is None or (
            what == "images" and data.view_examples is None):
        raise ValueError(
            f"augment {params['augment']!r} trains on augmented views, but this job was given "
            f"no view {what}: training.augment.views must be > 0 (the rules then give every "
            "model that may use them the views' files)")


def held_tracks(data: ModelData, held: Any = ()) -> set:
    """The tracks a model must never train on: the test split's, and the validation
    split's (or, under cross-validation, the held-out fold's: `held`)."""
    source = data.embedding_rows if data.embedding_rows else {
        split: {"clip": frame["clip"].to_numpy()} for split, frame in data.examples.items()}
    tracks = set(source.get("test", {}).get("clip", ()))
    return tracks | (set(held) if len(held) else set(source.get("valid", {}).get("clip", ())))


def with_view_embeddings(data: ModelData, params: Mapping, x, labels, tracks, held=()):
    """The training rows of a head on embeddings: the clean rows (`x`, `labels`, their
    `tracks`), and with `augment` the views of those tracks; checked against `held_tracks`.
    Returns x, labels, tracks, number of views."""
    n_views = 0
    if uses_views(params):
        _views_needed(data, params, "embeddings")
        pick = training_views(data.view_rows["track"], set(tracks))
        x = np.concatenate([x, data.view_embeddings[pick]])
        labels = np.concatenate([labels, data.view_rows["label"][pick]])
        tracks = np.concatenate([np.asarray(tracks, dtype=str),
                                 data.view_rows["track"][pick].astype(str)])
        n_views = len(pick)
    check_training_rows(tracks, held_tracks(data, held), f"{data.backbone} training rows")
    return x, labels, tracks, n_views


def with_view_examples(data: ModelData, params: Mapping, frame):
    """The training image rows of a model on images: `frame`'s, and with `augment` the
    image rows of its tracks' views (their `clip` is the view's id). Returns the rows,
    the track of each, and the number of views."""
    tracks = frame["clip"].to_numpy().astype(str)
    if not uses_views(params):
        return frame, tracks, 0
    _views_needed(data, params, "images")
    views = data.view_examples
    picked = views.iloc[training_views(views["track"].to_numpy(), set(tracks))]
    return (pd.concat([frame, picked[list(frame.columns)]], ignore_index=True),
            np.concatenate([tracks, picked["track"].to_numpy().astype(str)]), len(picked))


def build_tail_model(data: ModelData, params: Mapping, seed: int, fold=None) -> BuiltModel:
    """A fine-tuning model that trains its backbone's last k layers on the cached
    activations below them (`genreflow.models.activations`); built, seeded and fed as
    `build_classifier`'s end-to-end model is, so that it is the same model.

    `fold` = (held, stats): a cross-validation fold of the pooled train and validation
    examples (`pooled_examples`; `held` marks the fold's validation rows) and the head's
    statistics from the other folds' embeddings, instead of the train and valid splits."""
    from genreflow.models.activations import (
        activation_dataset,
        build_tail_classifier,
        cut_backbone,
        model_input,
    )
    from genreflow.models.backbones import build_backbone, resolve_trainable_layers
    from genreflow.models.train import Validation, seed_everything

    backbone = build_backbone(data.backbone, data.image_size, data.weights,
                              seed=data.backbone_seed)
    seed_everything(seed)
    k = resolve_trainable_layers(data.backbone, params["trainable_layers"], len(backbone.layers))
    cut = cut_backbone(backbone, k)
    stats = data.stats if fold is None else fold[1]
    model = build_tail_classifier(cut, head_config(params), len(data.genres), stats=stats)
    cache = activation_cache(data)
    if fold is None:
        train, valid = data.examples["train"], data.examples["valid"]
        train_values, train_rows = cache.get(cut, "train"), None
        valid_values = cache.get(cut, "valid")
        held = ()
    else:
        pool, is_held = pooled_examples(data), np.asarray(fold[0])
        train, valid = pool[~is_held], pool[is_held]
        train_values, train_rows = cache.get(cut, "pool"), np.flatnonzero(~is_held)
        valid_values = [values[is_held] for values in train_values]
        held = valid["clip"].to_numpy()
    labels, tracks = train["label"].to_numpy(), train["clip"].to_numpy().astype(str)
    n_views = 0
    if uses_views(params):
        # the views' activations are cached once per job like the splits'; the rows of this
        # model's training tracks' views are appended to its training rows
        _views_needed(data, params, "images")
        views = data.view_examples
        pick = training_views(views["track"].to_numpy(), set(tracks))
        n = len(train_values[0])
        train_values = [np.concatenate([own, theirs]) for own, theirs in
                        zip(train_values, cache.get(cut, "views"))]
        train_rows = np.concatenate([np.arange(n) if train_rows is None else train_rows,
                                     n + pick])
        labels = np.concatenate([labels, views["label"].to_numpy()[pick]])
        tracks = np.concatenate([tracks, views["track"].to_numpy()[pick].astype(str)])
        n_views = len(pick)
    check_training_rows(tracks, held_tracks(data, held), f"{data.backbone} training rows")
    seed_everything(seed)
    batch_size = int(params["batch_size"])
    train_data = activation_dataset(train_values, labels, batch_size, True, seed, rows=train_rows)
    validation = Validation(model_input(valid_values), valid["label"].to_numpy(),
                            valid["clip"].to_numpy(), data.genres)
    return BuiltModel(model, train_data, validation, batch_size, "activations", backbone, cut,
                      tracks, n_views)


def build_model(data: ModelData, params: Mapping, seed: int) -> BuiltModel:
    """The model of `params`: a head on the cached embeddings, a backbone classifier
    fine-tuned on the cached activations of its frozen layers, or the baseline CNN on
    images; the head seeded with `seed`."""
    from genreflow.models.heads import build_head
    from genreflow.models.train import Validation

    if trains_on_embeddings(data.backbone, params):
        x, rows = data.embeddings, data.embedding_rows
        model = build_head(x["train"].shape[1], head_config(params), len(data.genres),
                           seed=seed, stats=data.stats)
        validation = Validation(x["valid"], rows["valid"]["label"], rows["valid"]["clip"],
                                data.genres)
        train_x, labels, tracks, n_views = with_view_embeddings(
            data, params, x["train"], rows["train"]["label"], rows["train"]["clip"])
        return BuiltModel(model, (train_x, labels), validation, int(params["batch_size"]),
                          "embeddings", train_tracks=tracks, n_views=n_views)
    if data.kind == "transfer":
        return build_tail_model(data, params, seed)
    from genreflow.models.baseline import build_baseline_cnn
    from genreflow.models.train import seed_everything

    seed_everything(seed)
    return _on_images(data, build_baseline_cnn(params, data.image_size, len(data.genres)),
                      params, seed)


def end_to_end_model(data: ModelData, params: Mapping, seed: int) -> BuiltModel:
    """A fine-tuning model trained end to end on the images: the backbone classifier with
    its last k layers trainable. `build_model` trains the same model on cached activations;
    this one is what they must equal."""
    best = {"backbone": data.backbone, "params": params}
    model = build_model_from_best(best, data.image_size, data.weights, len(data.genres),
                                  stats=data.stats, backbone_seed=data.backbone_seed, seed=seed)
    return _on_images(data, model, params, seed)


def _on_images(data: ModelData, model, params: Mapping, seed: int) -> BuiltModel:
    """`model` fed with the train split's images (seeded shuffling) and validated on the
    validation split's."""
    from genreflow.models.train import Validation, seed_everything

    batch_size = int(params["batch_size"])
    seed_everything(seed)
    examples = data.examples
    frame, tracks, n_views = with_view_examples(data, params, examples["train"])
    check_training_rows(tracks, held_tracks(data), f"{data.backbone} training rows")
    train = split_dataset(frame, data.backbone, data.image_size, batch_size, True, seed)
    valid = split_dataset(examples["valid"], data.backbone, data.image_size, batch_size, False, seed)
    validation = Validation(valid, examples["valid"]["label"].to_numpy(),
                            examples["valid"]["clip"].to_numpy(), data.genres)
    return BuiltModel(model, train, validation, batch_size, train_tracks=tracks,
                      n_views=n_views)


def split_inputs(data: ModelData, built: BuiltModel, split: str):
    """What a model built by `build_model` predicts on for `split`, and those examples'
    clip, segment and label, in the order of the inputs."""
    from genreflow.models.activations import model_input

    if built.trained_on == "embeddings":  # a head on the cached embeddings
        rows = data.embedding_rows[split]
        return data.embeddings[split], rows["clip"], rows["segment"], rows["label"]
    frame = data.examples[split]
    if built.trained_on == "activations":
        inputs = model_input(activation_cache(data).get(built.cut, split))
    else:
        inputs = split_dataset(frame, data.backbone, data.image_size, built.batch_size, False, 0)
    return inputs, frame["clip"].to_numpy(), frame["segment"].to_numpy(), frame["label"].to_numpy()
