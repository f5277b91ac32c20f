"""One final model scored on the test split under every condition (`score_final_model`).

Each seed's model.keras is loaded once and fed what the bundle feeds it
(`genreflow.models.data.image_model_input` for images; the head takes an audio backbone's
embedding as it is): the clean test clips' own images or embeddings, the ones the model was
tested on, and those the robustness stage made from every condition's clips. So the clean
rows are the final model's own test predictions, and every other row differs from them only
by the recording.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genreflow.names import CLEAN, is_audio_backbone, model_kind
from genreflow.scoring import genre_labels, predictions_frame


@dataclass
class ConditionInputs:
    """The test examples of every condition: which (condition, clip, segment, label) each
    row is, and the model's input before its preprocessing (uint8 images or embeddings)."""

    condition: np.ndarray
    clip: np.ndarray
    segment: np.ndarray
    label: np.ndarray
    values: np.ndarray


def _test_members(test_csv: str) -> dict[str, str]:
    test = pd.read_csv(test_csv, dtype={"clip": str})
    return dict(zip(test["clip"], test["genre"]))


def _check_complete(inputs: ConditionInputs, conditions: Sequence[str], test: dict, source: str):
    """Every condition must hold every test clip, or the paired comparison is not paired."""
    for condition in [CLEAN, *conditions]:
        clips = set(inputs.clip[inputs.condition == condition])
        if clips != set(test):
            missing = sorted(set(test) - clips)[:5]
            raise ValueError(f"{source}: condition {condition} lacks test clips {missing} "
                             f"(has {len(clips)} of {len(test)}); it is of another run")


def image_test_inputs(clean_index: str, conditions_index: str, test_csv: str,
                      genres: Sequence[str], image_size: int) -> ConditionInputs:
    """The clean test images (the feature stage's) and every condition's (the robustness
    stage's, clip ids `<condition>/<clip>`)."""
    from genreflow.models.images import examples_for_split, load_images
    from genreflow.robustness.conditions import split_condition_clip

    clean = examples_for_split(clean_index, test_csv, genres)
    clean.insert(0, "condition", CLEAN)
    other = pd.read_csv(conditions_index, dtype={"clip": str, "genre": str})
    names = [split_condition_clip(name) for name in other["clip"]]
    other["condition"] = [condition for condition, _ in names]
    other["clip"] = [clip for _, clip in names]
    test = _test_members(test_csv)
    other = other[other["clip"].isin(test)].copy()
    other["label"] = genre_labels(other["genre"], genres, conditions_index)
    rows = pd.concat([clean[["condition", "clip", "segment", "image", "label"]],
                      other[["condition", "clip", "segment", "image", "label"]]],
                     ignore_index=True)
    rows = rows.sort_values(["condition", "clip", "segment"], kind="mergesort")
    return ConditionInputs(rows["condition"].to_numpy(), rows["clip"].to_numpy(),
                      rows["segment"].to_numpy(int), rows["label"].to_numpy(np.int32),
                      load_images(list(rows["image"]), image_size))


def embedding_test_inputs(clean_npz: str, conditions_npz: str, test_csv: str,
                          genres: Sequence[str]) -> ConditionInputs:
    """The clean test clips' embeddings (the main run's cache) and every condition's."""
    from genreflow.io import load_embeddings
    from genreflow.robustness.conditions import split_condition_clip

    test = _test_members(test_csv)
    parts = []
    for path, prefixed in ((clean_npz, False), (conditions_npz, True)):
        cache = load_embeddings(path)
        names = ([split_condition_clip(str(name)) for name in cache.clip] if prefixed
                 else [(CLEAN, str(name)) for name in cache.clip])
        keep = np.array([clip in test for _, clip in names], dtype=bool)
        conditions = np.array([condition for condition, _ in names], dtype=object)[keep]
        clips = np.array([clip for _, clip in names], dtype=object)[keep]
        labels = genre_labels([test[clip] for clip in clips], genres, test_csv)
        if not np.array_equal(labels, cache.label[keep]):
            raise ValueError(f"{path}: the labels of its test clips differ from {test_csv}")
        parts.append((conditions, clips, cache.segment[keep], labels, cache.embeddings[keep]))
    joined = [np.concatenate(arrays) for arrays in zip(*parts)]
    order = np.lexsort((joined[2], joined[1], joined[0]))
    return ConditionInputs(*(array[order] for array in joined))


def load_final_model(path: str | os.PathLike):
    """A final model.keras, as the bundle loads it."""
    import keras

    import genreflow.models.backbones  # noqa: F401 (registers InferenceMode for loading)

    return keras.saving.load_model(path, compile=False)


def _in_batches(function, values: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([function(values[start:start + batch_size])
                           for start in range(0, len(values), batch_size)])


class ModelScorer:
    """Class probabilities of every row of a ConditionInputs through final models of one backbone.

    An image backbone's model.keras is backbone -> pooling -> head (genreflow.models.heads).
    Its pooled features depend on the backbone's weights alone, and a frozen backbone's
    are the same in every round and seed of a chain: they are computed once per distinct
    backbone (by the weights' fingerprint) and each model's own head runs on them. That is
    the same computation as model.keras on the images, checked on the first 8 images of
    every model; the baseline CNN and the heads on musicnn embeddings run whole."""

    def __init__(self, inputs: ConditionInputs, backbone: str, log=print, batch_size: int = 32):
        self.inputs, self.backbone, self.log, self.batch_size = inputs, backbone, log, batch_size
        self.features: dict[str, tuple[str, np.ndarray]] = {}

    def _images(self, values: np.ndarray) -> np.ndarray:
        from genreflow.models.data import image_model_input

        return image_model_input(values, self.backbone)

    def __call__(self, model, name: str) -> np.ndarray:
        from genreflow.models.train import predict_proba

        values = self.inputs.values
        if is_audio_backbone(self.backbone):
            return predict_proba(model, values)
        if model_kind(self.backbone) == "baseline":
            return _in_batches(lambda part: predict_proba(model, self._images(part)), values,
                               self.batch_size)
        import keras

        pool = model.get_layer("pool")
        head = keras.Model(pool.output, model.output)
        key = _weights_fingerprint(model.get_layer("backbone"))
        if key in self.features:
            owner, features = self.features[key]
            self.log(f"{name}: the same backbone as {owner}; its pooled features reused")
        else:
            embedder = keras.Model(model.inputs, pool.output)
            features = _in_batches(lambda part: predict_proba(embedder, self._images(part)),
                                   values, self.batch_size)
            self.features[key] = (name, features)
        first = values[:8]  # a mismatch shows on any image; the whole model costs a pass
        whole = predict_proba(model, self._images(first))
        split = predict_proba(head, features[: len(first)])
        gap = float(np.max(np.abs(whole - split))) if len(first) else 0.0
        if gap > 1e-5:
            raise RuntimeError(f"{name}: its head on the pooled features predicts up to {gap:.2e} "
                               "away from model.keras on the same images")
        return predict_proba(head, features)


def _weights_fingerprint(layer) -> str:
    import hashlib

    digest = hashlib.sha256()
    for weight in layer.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


# One job's entry point: a parameter per input, param and output of its rule
# (score_robustness), passed by name from the thin script.
def score_final_models(
    model_kerases: Sequence[str],
    models: Sequence[Mapping],
    backbone: str,
    clean_input: str,
    conditions_input: str,
    test_csv: str,
    conditions: Sequence[str],
    genres: Sequence[str],
    image_size: int,
    out_predictions: str,
    log=print,
) -> None:
    """The predictions of every final model of a (backbone, feature) chain (`models`: the
    round and seed of each of `model_kerases`) on every test example under every condition
    (the clean test split and `conditions`): predictions.csv as the final models write
    theirs, with the columns round, seed and condition first."""
    import time

    from genreflow.io import write_csv

    if len(model_kerases) != len(models):
        raise ValueError(f"{len(model_kerases)} model files for {len(models)} models")
    if is_audio_backbone(backbone):
        inputs = embedding_test_inputs(clean_input, conditions_input, test_csv, genres)
    else:
        inputs = image_test_inputs(clean_input, conditions_input, test_csv, genres, image_size)
    test = _test_members(test_csv)
    _check_complete(inputs, conditions, test, conditions_input)
    known = {CLEAN, *conditions}
    unknown = sorted(set(inputs.condition) - known)
    if unknown:
        raise ValueError(f"{conditions_input} holds conditions {unknown} that the config does "
                         f"not name (robustness: {sorted(known)}); it is of another run")
    log(f"{len(inputs.clip)} test examples ({len(test)} tracks x {len(known)} conditions) "
        f"through {len(models)} final models of {backbone}")
    scorer = ModelScorer(inputs, backbone, log)
    frames = []
    for model, path in zip(models, model_kerases):
        started = time.perf_counter()
        name = f"round {model['round']} seed {model['seed']}"
        result = scorer(load_final_model(path), name)
        frame = predictions_frame("test", inputs.clip, inputs.segment, inputs.label, result,
                                  genres)
        frame.insert(0, "condition", inputs.condition)
        frame.insert(0, "seed", int(model["seed"]))
        frame.insert(0, "round", int(model["round"]))
        frames.append(frame)
        log(f"{name}: {path}, {len(result)} predictions in "
            f"{time.perf_counter() - started:.1f} s")
    write_csv(out_predictions, pd.concat(frames, ignore_index=True))
