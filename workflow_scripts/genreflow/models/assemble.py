"""What a final model's `model.keras` holds: the whole network that takes the model's input
(an image, or an audio backbone's embedding), assembled from what was trained and checked
against it before it is saved (`saved_model`, `save_model_atomic`).

A frozen image backbone's head trains on the cached embeddings, and a fine-tuned one's tail
on the cached activations below it (`genreflow.models.build`); neither is a model that takes
images. Here the backbone is built again (the same weights or seed) and the trained parts are
put into it, and the job stops if the result does not predict what the trained model did.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from genreflow.io import atomic_path
from genreflow.names import is_audio_backbone


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """model.save() to a temporary sibling (Keras wants the .keras suffix), then rename."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def full_model_of_tail(data, best: Mapping, built, log=print):
    """The model to save for a fine-tuned model trained on cached activations: the whole
    backbone (its tail as trained) + the trained head, one file that takes images.

    Checked before it is saved: on the first test images it must give the probabilities the
    trained tail gave on their cached activations (to float noise in float32 storage, the
    default; float16 storage may move them a little more)."""
    from genreflow.models.activations import model_input
    from genreflow.models.build import head_config
    from genreflow.models.data import activation_cache, split_dataset
    from genreflow.models.heads import build_classifier, classifier_backbone, transfer_head_weights
    from genreflow.models.train import predict_proba

    model = build_classifier(
        data.backbone, data.image_size, data.weights, head_config(best["params"]),
        len(data.genres), stats=data.stats, backbone_seed=data.backbone_seed,
    )
    classifier_backbone(model).set_weights(built.backbone.get_weights())
    transfer_head_weights(built.model, model)
    n = min(8, len(data.examples["test"]))
    images = split_dataset(data.examples["test"].iloc[:n], data.backbone, data.image_size,
                           built.batch_size, False, 0)
    values = [part[:n] for part in activation_cache(data).get(built.cut, "test")]
    expected = predict_proba(built.model, model_input(values))
    gap = float(np.max(np.abs(predict_proba(model, images) - expected)))
    if gap > 0.02:
        raise RuntimeError(
            f"the full {data.backbone} model assembled for model.keras predicts probabilities "
            f"up to {gap:.3f} away from its trained tail on the cached activations of the "
            "same test images: it is not the model that was tested"
        )
    log(f"model.keras = backbone (last {built.cut.k} layers trained) + head; on {n} test "
        f"images it predicts the tail's probabilities to {gap:.1e}")
    return model


def full_image_model(data, best: Mapping, head, batch_size: int, log=print):
    """The model to save for a head trained on cached embeddings of an image backbone:
    backbone + the trained head, one file that takes images.

    Its backbone must be the network the embedding cache was made with (the same weights,
    or for random init the same seed): on the first test images its pooled features must
    equal the cached ones, to within 5% of each feature's spread over the training images
    (float rounding of two forward passes stays orders of magnitude below, another network
    far above). Otherwise the job stops instead of saving a model that is not the one tested.
    """
    from genreflow.models.backbones import embedding_model
    from genreflow.models.build import head_config
    from genreflow.models.data import split_dataset
    from genreflow.models.heads import build_classifier, classifier_backbone, transfer_head_weights
    from genreflow.models.train import predict_proba

    model = build_classifier(
        data.backbone, data.image_size, data.weights, head_config(best["params"]),
        len(data.genres), stats=data.stats, backbone_seed=data.backbone_seed,
    )
    transfer_head_weights(head, model)
    probe = data.examples["test"].iloc[: min(8, len(data.examples["test"]))]
    images = split_dataset(probe, data.backbone, data.image_size, batch_size, False, 0)
    rows = data.embedding_rows["test"]
    position = {key: i for i, key in enumerate(zip(rows["clip"], rows["segment"]))}
    cached = data.embeddings["test"][[position[key] for key in zip(probe["clip"], probe["segment"])]]
    features = predict_proba(embedding_model(classifier_backbone(model)), images)
    gap = float(np.max(np.abs(features - cached) / np.sqrt(data.stats[1])))
    if gap > 0.05:
        raise RuntimeError(
            f"the {data.backbone} backbone rebuilt for model.keras gives pooled features up "
            f"to {gap:.2f} spreads away from the cached embeddings of the same test images: "
            "it is not the network the embedding cache was made with (weights or "
            "screening.seed changed since?); rerun embed_images for it"
        )
    log(f"model.keras = backbone + head; its backbone reproduces the cached embeddings of "
        f"{len(probe)} test images to {gap:.1e} of their spread")
    return model


def saved_model(data, best: Mapping, built, log=print):
    """What model.keras holds: the whole network that takes the model's input (an image,
    or an audio backbone's embedding), checked against the trained model's predictions."""
    if built.trained_on == "embeddings" and not is_audio_backbone(data.backbone):
        return full_image_model(data, best, built.model, built.batch_size, log)
    if built.trained_on == "activations":
        return full_model_of_tail(data, best, built, log)
    return built.model
