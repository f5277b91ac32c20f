"""What the models of one (backbone, feature) train and score on (`ModelData`): the image
rows and cached embeddings of each split, and the job's activation cache."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from genreflow.names import SPLITS, is_audio_backbone, model_kind
from genreflow.scoring import split_rows

# --------------------------------------------------------------------------------- data


@dataclass
class ModelData:
    """What the models of one (backbone, feature) train and score on: a worker's trials,
    and the final models (`genreflow.evaluation`).

    `embeddings` (the screening cache's rows of train and valid) feed heads on a frozen
    backbone, and their training statistics (`stats`) standardise every transfer head's
    input; `examples` (image rows) feed models that train on images. `backbone_seed` draws
    a randomly initialised backbone: the cache's network, so the statistics fit it.
    """

    kind: str
    backbone: str
    genres: list[str]
    image_size: int
    weights: Any  # genreflow.models.backbones.BackboneWeights, or None for random initialisation
    examples: dict[str, pd.DataFrame]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    # per split, the clip, segment and label of each embedding row
    embedding_rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stats: tuple | None = None
    backbone_seed: int = 0
    fold_seed: int = 0  # of the cross-validation folds (the round's seed)
    # genreflow.models.activations.ActivationCache of fine-tuning models, made on first use
    activations: Any = None
    activation_storage: str = "float32"  # config training.activation_storage
    log: Any = print
    # Augmented views of the train (and valid) tracks (`load_views`), for models whose
    # `augment` asks for them: their embedding cache rows (clip: the view's id, track: its
    # track) and their image rows (columns of `examples` and `track`). A model adds the
    # views of its training tracks only (genreflow.models.views.training_views).
    view_embeddings: np.ndarray | None = None
    view_rows: dict[str, np.ndarray] = field(default_factory=dict)
    view_examples: pd.DataFrame | None = None

    @property
    def has_views(self) -> bool:
        return self.view_embeddings is not None or self.view_examples is not None


def split_examples(
    index_csv: str | os.PathLike, manifests: Mapping[str, str], genres: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Image rows of each split, labelled by position in `genres` (as the embeddings are)."""
    from genreflow.models.images import examples_for_split

    return {split: examples_for_split(index_csv, manifests[split], genres) for split in SPLITS}


def load_model_data(
    backbone: str,
    index_csv: str | None,
    manifests: Mapping[str, str],
    genres: Sequence[str],
    image_size: int,
    embeddings_npz: str | None = None,
    weights=None,
    backbone_seed: int = 0,
) -> ModelData:
    """What a worker's trials need; an audio backbone (no images) has embeddings only."""
    data = ModelData(
        kind=model_kind(backbone),
        backbone=backbone,
        genres=list(genres),
        image_size=int(image_size),
        weights=weights,
        examples=split_examples(index_csv, manifests, genres) if index_csv else {},
        backbone_seed=int(backbone_seed),
    )
    if data.kind == "transfer":
        from genreflow.io import load_embeddings
        from genreflow.models.heads import feature_statistics

        cache = load_embeddings(embeddings_npz)
        rows = split_rows(cache.clip, manifests)
        for split in SPLITS:
            picked = rows[split]
            data.embeddings[split] = cache.embeddings[picked]
            data.embedding_rows[split] = {"clip": cache.clip[picked],
                                          "segment": cache.segment[picked],
                                          "label": cache.label[picked]}
        data.stats = feature_statistics(data.embeddings["train"])
    return data


def split_dataset(
    data_examples: pd.DataFrame,
    backbone: str,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """A batched tf.data dataset of (images, labels) with the model's input preprocessing."""
    paths, labels = list(data_examples["image"]), data_examples["label"].to_numpy()
    if model_kind(backbone) == "baseline":
        from genreflow.models.baseline import baseline_dataset

        return baseline_dataset(paths, labels, image_size, batch_size, shuffle, seed)
    from genreflow.models.backbones import backbone_spec
    from genreflow.models.images import image_dataset

    return image_dataset(
        paths,
        labels,
        image_size,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        preprocess=backbone_spec(backbone).preprocess_input,
    )


def image_model_input(images: np.ndarray, backbone: str) -> np.ndarray:
    """8-bit gray images (N, H, W) as a model of `backbone` that takes images reads them:
    the training pipeline's batch preprocessing (`split_dataset`), on arrays. For a final
    model.keras (its backbone and head in one) and the bundle, which feed it images made
    outside that pipeline."""
    from genreflow.models.images import to_backbone_input

    if model_kind(backbone) == "baseline":
        from genreflow.models.baseline import baseline_preprocess as preprocess
    else:
        from genreflow.models.backbones import backbone_spec

        preprocess = backbone_spec(backbone).preprocess_input
    return np.asarray(to_backbone_input(np.asarray(images)[..., None], preprocess))


def load_views(data: ModelData, manifests: Mapping[str, str], view_index_csv: str | None,
               view_embeddings_npz: str | None) -> None:
    """The views' image rows and embeddings into `data`: every view must be a copy of a
    train or validation track (`check_view_tracks`), and its label its track's."""
    from genreflow.models.views import check_view_tracks, track_of

    if view_embeddings_npz:
        from genreflow.io import load_embeddings

        cache = load_embeddings(view_embeddings_npz)
        tracks = track_of(cache.clip)
        check_view_tracks(tracks, manifests, view_embeddings_npz)
        data.view_embeddings = cache.embeddings
        data.view_rows = {"clip": cache.clip, "track": tracks, "segment": cache.segment,
                          "label": cache.label}
    if view_index_csv:
        from genreflow.models.images import INDEX_COLUMNS
        from genreflow.scoring import genre_labels

        index = pd.read_csv(view_index_csv, dtype={"clip": str, "genre": str})
        missing = [column for column in INDEX_COLUMNS if column not in index.columns]
        if missing:
            raise ValueError(f"{view_index_csv}: missing column(s) {missing}")
        index["track"] = track_of(index["clip"]) if len(index) else []
        check_view_tracks(index["track"].to_numpy(), manifests, view_index_csv)
        index["segment"] = index["segment"].astype(int)
        index["label"] = genre_labels(index["genre"], data.genres, view_index_csv)
        data.view_examples = index.sort_values(["clip", "segment"], kind="mergesort"
                                               ).reset_index(drop=True)


def pooled_examples(data: ModelData) -> pd.DataFrame:
    """The train and validation image rows together: what cross-validation folds cut."""
    return pd.concat([data.examples["train"], data.examples["valid"]], ignore_index=True)


def _images(data: ModelData, split: str, batch_size: int = 32):
    """The unshuffled images of a split, of "pool" (`pooled_examples`), or of "views" (every
    augmented view's, `ModelData.view_examples`)."""
    if split == "views":
        frame = data.view_examples
    else:
        frame = pooled_examples(data) if split == "pool" else data.examples[split]
    return split_dataset(frame, data.backbone, data.image_size, batch_size, False, 0)


def activation_cache(data: ModelData):
    """The job's cache of frozen-layer activations for `data`'s (backbone, feature)."""
    from genreflow.models.activations import ActivationCache

    if data.activations is None:
        spread = None if data.stats is None else np.sqrt(data.stats[1])
        data.activations = ActivationCache(lambda split: _images(data, split), data.log, spread,
                                           data.activation_storage)
    return data.activations


@dataclass(frozen=True)
class ModelSettings:
    """What a model of (backbone, feature) is built and trained with besides its
    hyperparameters: the rules' `get_model_settings` params, the same for a round's trials
    and its final models, so that these are built from the data their trials had.

    `patience` (early stopping) and `cv_folds` (a trial's folds) are the training rule;
    `weights` (the backbones.weights setting), `backbone_seed` (draws a randomly initialised
    backbone: the embedding cache's network) and `activation_storage` apply to backbones only
    (None for the baseline CNN)."""

    genres: tuple[str, ...]
    image_size: int
    patience: int
    cv_folds: int = 1
    weights: str | None = None
    backbone_seed: int | None = None
    activation_storage: str | None = None

    @classmethod
    def from_params(cls, params: Mapping) -> ModelSettings:
        return cls(**{**params, "genres": tuple(params["genres"])})

    def as_params(self) -> dict:
        """The params it came from (key-sorted, without the keys a baseline lacks): what a
        round's study fingerprint hashes."""
        values = {**vars(self), "genres": list(self.genres)}
        return {key: values[key] for key in sorted(values) if values[key] is not None}


def resolved_weights(backbone: str, settings: ModelSettings, weights_path: str | None):
    """The BackboneWeights of an image backbone's settings; None for random init and for
    models without an image backbone."""
    if model_kind(backbone) == "baseline" or is_audio_backbone(backbone):
        return None
    from genreflow.models.backbones import resolve_weights

    return resolve_weights(settings.weights, weights_path, backbone)


@dataclass(frozen=True)
class ModelInputs:
    """The files a tune or final job of (backbone, feature) reads: the split manifests,
    and per `genreflow.plan.model_inputs` and `weights_input` the image index, the
    embedding cache and the weights file (None where the model has none)."""

    manifests: Mapping[str, str]
    index_csv: str | None = None
    embeddings_npz: str | None = None
    weights_path: str | None = None
    # the augmented views' image index and embedding cache, where the model may train on them
    view_index_csv: str | None = None
    view_embeddings_npz: str | None = None

    @classmethod
    def of_job(cls, job_input) -> ModelInputs:
        """From a Snakemake job's `input` (rules/tuning.smk, rules/evaluation.smk)."""
        return cls({split: job_input[split] for split in SPLITS}, job_input.get("index"),
                   job_input.get("embeddings"), job_input.get("weights"),
                   job_input.get("view_index"), job_input.get("view_embeddings"))


def job_model_data(backbone: str, inputs: ModelInputs, settings: ModelSettings, log=print,
                   fold_seed: int = 0) -> ModelData:
    """The ModelData of a tune or final job, from its inputs and settings."""
    data = load_model_data(
        backbone, inputs.index_csv, inputs.manifests, settings.genres,
        settings.image_size, inputs.embeddings_npz,
        resolved_weights(backbone, settings, inputs.weights_path),
        settings.backbone_seed or 0,
    )
    data.log, data.fold_seed = log, fold_seed
    data.activation_storage = settings.activation_storage or "float32"
    load_views(data, inputs.manifests, inputs.view_index_csv, inputs.view_embeddings_npz)
    return data
