"""What a run is (its corpus, its split, the backbones' initial weights) and the caveats a
reader of any table, figure or caption must see first: one source for all of them.

No TensorFlow: the DAG is planned with these (`rules/common.smk`) on every `snakemake -n`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from genreflow.names import (
    BASELINE,
    FAULT_FILTERED,
    GTZAN_GENRES,
    MUSICNN_MODELS,
    is_audio_backbone,
)


def corpus_kind(dataset: Mapping) -> str:
    """`synthetic`, `gtzan` (a GTZAN-layout corpus of GTZAN's ten genres) or `folder` (a
    corpus of one folder per genre, such as a user's own collection)."""
    if dataset["kind"] == "synthetic":
        return "synthetic"
    return "gtzan" if set(dataset["genres"]) == set(GTZAN_GENRES) else "folder"


def split_kind(splits: Mapping) -> str:
    lists = splits["lists"]
    if lists is None:
        return "random"
    return FAULT_FILTERED if lists == FAULT_FILTERED else "lists"


def weights_about(setting: str, image_backbones: Sequence[str], base_dir: str = ".") -> dict:
    """`weights` (as tables print it) and `weights_source`: imagenet, none or file.

    A path is ImageNet when its md5 is the published one of its backbone (the config allows
    a path only with one image backbone); otherwise it is a file of another training.
    """
    if setting in ("imagenet", "none"):
        return {"weights": setting, "weights_source": setting}
    from genreflow.io import file_md5
    from genreflow.registry import IMAGE_BACKBONES

    md5 = file_md5(os.path.join(base_dir, setting))
    if any(IMAGE_BACKBONES[name].weights_md5 == md5 for name in image_backbones):
        return {"weights": f"imagenet (file {setting})", "weights_source": "imagenet"}
    return {"weights": f"file {setting} (md5 {md5})", "weights_source": "file"}


def run_about(config: Mapping, base_dir: str = ".") -> dict:
    """What every summary must state about the run."""
    image_backbones = [name for name in config["backbones"]["names"] if not is_audio_backbone(name)]
    weights = weights_about(config["backbones"]["weights"], image_backbones, base_dir)
    return {
        "corpus": corpus_kind(config["dataset"]),
        "split": split_kind(config["splits"]),
        **weights,
        # Only image backbones take backbones.weights; musicnn is pretrained either way.
        "pretrained": weights["weights_source"] != "none" or not image_backbones,
    }


def backbone_about(run: Mapping, backbone: str) -> dict:
    """The run's `about` as it applies to one backbone: an audio backbone (musicnn) is
    pretrained on music whatever backbones.weights says about the image backbones."""
    about = dict(run)
    if backbone in MUSICNN_MODELS:
        about["weights"] = f"musicnn 0.1.0 {MUSICNN_MODELS[backbone]}"
        about["weights_source"] = "musicnn"
        about["pretrained"] = True
    return about


def final_about(run: Mapping, backbone: str, feature: str, round_: int) -> dict:
    """What a final model's files and figures say about it. The baseline CNN has no
    backbone to pretrain, so the not-pretrained caveat does not apply to it."""
    about: dict[str, Any] = {**backbone_about(run, backbone), "backbone": backbone,
                             "feature": feature, "round": int(round_)}
    if backbone == BASELINE:
        about["weights"] = about["weights_source"] = "from scratch"
        about.pop("pretrained", None)
    return dict(sorted(about.items()))


def caveats(about: Mapping) -> list[str]:
    """Warnings a reader of any table or figure must see first."""
    notes = []
    if not about.get("pretrained", True):
        notes.append(
            "IMAGE BACKBONES NOT PRETRAINED: backbones.weights is 'none' (random "
            "initialisation); their scores say nothing about transfer learning from ImageNet "
            "(musicnn backbones are pretrained on music either way)."
        )
    if about.get("weights_source") == "file":
        notes.append(
            f"USER WEIGHTS FILE: not Keras' published ImageNet weights; the image backbones "
            f"start from {about['weights']}, so these are transfer results from whatever "
            "trained it (the network is built as Keras builds it for a weights file)."
        )
    if about.get("corpus") == "synthetic":
        notes.append(
            "SYNTHETIC DEMO CORPUS: these are not GTZAN results; read them against the "
            "demo corpus's separability in BENCHMARKS.md."
        )
    if about.get("corpus") == "gtzan" and about.get("split") == "random":
        notes.append(
            "RANDOM SPLIT OF GTZAN: artist repetition inflates every score; GTZAN repeats "
            "artists (and some excerpts), so a random split puts one artist in training and "
            "test (the same Jukebox features score 92.5% with random folds, 79.7% on the "
            "artist-filtered split). To compare with published numbers use --config "
            "preset=gtzan_filtered."
        )
    return notes
