# Helpers shared by every stage: config validation, the corpus listing and shards, and the
# input/params functions of the rules. Nothing here starts a job.
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from genreflow.config import ConfigError, sorted_block, validate_config
from genreflow.corpus import find_clips, shard_clips, synthetic_clips
from genreflow.features import FEATURES
from genreflow.splits import SPLITS

try:
    _validated = validate_config(
        config, overrides=workflow.config_settings.overwrite_config
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

GENRES = config["dataset"]["genres"]
SYNTHETIC_ROOT = "resources/synthetic"


wildcard_constraints:
    feature="|".join(FEATURES),
    shard=r"\d{3}",


def corpus_clips():
    dataset = config["dataset"]
    if dataset["kind"] == "synthetic":
        synthetic = dataset["synthetic"]
        return synthetic_clips(SYNTHETIC_ROOT, GENRES, synthetic["clips_per_genre"])
    try:
        return find_clips(dataset["root"], GENRES)
    except (FileNotFoundError, ValueError) as error:
        raise WorkflowError(str(error)) from None


CLIPS = corpus_clips()
SHARDS = shard_clips(CLIPS, config["features"]["shard_size"])


# ---------------------------------------------------------------- corpus
def synthetic_corpus_files():
    return [clip.path for clip in CLIPS]


def synthetic_settings():
    return sorted_block(
        {
            **config["dataset"]["synthetic"],
            "sample_rate": config["audio"]["sample_rate"],
        }
    )


def shard_audio(wildcards):
    return [clip.path for clip in SHARDS[wildcards.shard]]


def shard_clip_table(wildcards):
    return [
        {"clip": clip.clip, "genre": clip.genre, "path": clip.path}
        for clip in SHARDS[wildcards.shard]
    ]


def audio_settings():
    return sorted_block(
        {key: value for key, value in config["audio"].items() if key != "on_bad_file"}
    )


def shard_checks():
    return expand("results/corpus/checked/{shard}.csv", shard=sorted(SHARDS))


# ---------------------------------------------------------------- features
def feature_block(wildcards):
    return sorted_block(config["features"][wildcards.feature])


def feature_shard_indexes(wildcards):
    return expand(
        "results/features/{feature}/shards/{shard}.csv",
        feature=wildcards.feature,
        shard=sorted(SHARDS),
    )


def feature_indexes():
    return expand("results/features/{feature}/index.csv", feature=FEATURES)


# ---------------------------------------------------------------- splits
def split_list_files(wildcards):
    lists = config["splits"]["lists"]
    return {split: lists[split] for split in SPLITS} if lists else {}


def split_settings():
    return sorted_block(
        {key: value for key, value in config["splits"].items() if key != "lists"}
    )


def split_manifests():
    return expand("results/splits/{split}.csv", split=SPLITS)


# ---------------------------------------------------------------- screening
BACKBONES = config["backbones"]["names"]
SCREEN_FEATURES = config["screening"]["features"]


wildcard_constraints:
    backbone="|".join(BACKBONES),


def backbone_weights(wildcards):
    """The weights file a backbone job reads: {} for random initialisation."""
    weights = config["backbones"]["weights"]
    if weights == "none":
        return {}
    if weights == "imagenet":
        return {"weights": f"resources/weights/{wildcards.backbone}/imagenet_notop.h5"}
    return {"weights": weights}


def split_manifest_files(wildcards):
    return {split: f"results/splits/{split}.csv" for split in SPLITS}


def screening_training():
    return sorted_block(
        {
            key: config["screening"][key]
            for key in ("epochs", "patience", "batch_size", "seed")
        }
    )


def run_about():
    """What every summary must state about the run: pretrained or not, which corpus."""
    return {
        "corpus": config["dataset"]["kind"],
        "weights": config["backbones"]["weights"],
        "pretrained": config["backbones"]["weights"] != "none",
    }


def screening_about(wildcards):
    return sorted_block(
        {**run_about(), "backbone": wildcards.backbone, "feature": wildcards.feature}
    )


def screening_metrics():
    return expand(
        "results/screening/{backbone}/{feature}/metrics.json",
        backbone=BACKBONES,
        feature=SCREEN_FEATURES,
    )
