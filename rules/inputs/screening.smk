# What the rules of rules/screening.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.audio_embeddings import checkpoint_files, checkpoint_root
from genreflow.run_info import backbone_about

SCREENING_PAIRS = plan.screening_pairs(
    IMAGE_BACKBONES, AUDIO_BACKBONES, config["screening"]["features"]
)


def get_musicnn_checkpoint(wildcards):
    """The checkpoint files an embed_audio job restores: inputs, so a reinstall reruns it."""
    root = str(checkpoint_root(MUSICNN["checkpoints"]))
    files = checkpoint_files(wildcards.backbone, root)
    return {
        "checkpoint_index": files[".index"],
        "checkpoint_data": files[".data-00000-of-00001"],
    }


def screening_protocol():
    """kfold, unless splits.lists gives the split to use (the folds are then not used)."""
    if config["splits"]["lists"]:
        return "holdout"
    return config["screening"]["protocol"]


def screening_training():
    training = {
        key: config["screening"][key]
        for key in ("epochs", "patience", "batch_size", "seed")
    }
    training["protocol"] = screening_protocol()
    if training["protocol"] == "kfold":
        training["folds"] = config["screening"]["folds"]
    return sorted_block(training)


def get_screening_about(wildcards):
    return sorted_block(
        {
            **backbone_about(RUN_ABOUT, wildcards.backbone),
            "backbone": wildcards.backbone,
            "feature": wildcards.feature,
        }
    )


def screening_files(name):
    """`name` (metrics.json, predictions.csv) of every screening job."""
    return [
        plan.screening_file(backbone, feature, name)
        for backbone, feature in SCREENING_PAIRS
    ]
