# What the rules of rules/predict.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.predict import list_music, prediction_name
from genreflow.registry import model_label

PREDICT = config["predict"]
PREDICT_FILES, PREDICT_NOT_AUDIO = (
    list_music(PREDICT["input"]) if PREDICT["input"] else ([], [])
)
PREDICT_SHARDS = shard_clips(PREDICT_FILES, PREDICT["shard_size"])
PREDICT_NAME = prediction_name(PREDICT) if PREDICT["input"] else None


def predicted_model():
    """<backbone>/<feature>/round_<n>: predict.model, or the final model chosen on
    validation (results/final/headline.json, written by the summarize_final checkpoint).
    """
    if PREDICT["model"]:
        return PREDICT["model"]
    chosen = read_json(checkpoint_file(checkpoints.summarize_final, "headline"))
    return plan.model_id(chosen["backbone"], chosen["feature"], chosen["round"])


def exported_bundle(wildcards):
    folder = plan.bundle_folder(predicted_model())
    return [
        f"{folder}/{name}"
        for name in ("model.keras", "preprocessing.json", "README.md")
    ]


def predict_bundle(wildcards):
    folder = plan.bundle_folder(predicted_model())
    return {
        "model": f"{folder}/model.keras",
        "preprocessing": f"{folder}/preprocessing.json",
    }


def predict_targets(wildcards):
    """What `snakemake predict` makes (an input function: evaluated only when asked for)."""
    if not PREDICT["input"]:
        raise WorkflowError(
            "snakemake predict classifies the music of predict.input, which is not set: run "
            "snakemake predict --config predict='{input: /path/to/music}'"
        )
    if not PREDICT_FILES:
        raise WorkflowError(
            f"predict.input {PREDICT['input']!r} holds no audio file "
            f"({len(PREDICT_NOT_AUDIO)} other files)"
        )
    return [
        f"results/predict/{PREDICT_NAME}/{name}"
        for name in ("predictions.csv", "rejected.csv", "probabilities.png")
    ]


def predict_shard_files(wildcards):
    return PREDICT_SHARDS[wildcards.shard]


def every_predict_shard(pattern):
    def files(wildcards):
        return expand(pattern, shard=sorted(PREDICT_SHARDS), name=wildcards.name)

    return files


def predict_not_audio():
    return PREDICT_NOT_AUDIO


def export_inputs(wildcards):
    """Every seed's model and metrics of a final model: the bundle takes the seed with the
    best validation macro-F1."""
    folder = plan.final_folder(wildcards.backbone, wildcards.feature, wildcards.round)
    return {
        "models": plan.seed_files(folder, EVALUATION["seeds"], "model.keras"),
        "metrics": plan.seed_files(folder, EVALUATION["seeds"], "metrics.json"),
    }


def export_settings(wildcards):
    """What preprocessing.json says turns audio into this model's input."""
    backbone, feature = wildcards.backbone, wildcards.feature
    audio_backbone = is_audio_backbone(backbone)
    return sorted_block(
        {
            "genres": GENRES,
            "audio": audio_settings(),
            # the model's own clip or segment length
            "window_seconds": config["segments"]["seconds"]
            or config["audio"]["seconds"],
            "feature": feature,
            "feature_block": None if audio_backbone else config["features"][feature],
            "image_size": None if audio_backbone else config["features"]["image_size"],
            "backbone": backbone,
            "input": "embedding" if audio_backbone else "image",
            "scaling": (
                "none"
                if audio_backbone
                else "baseline" if backbone == BASELINE else "backbone"
            ),
            "musicnn": (
                {"layer": MUSICNN["layer"], "checkpoints": MUSICNN["checkpoints"]}
                if audio_backbone
                else None
            ),
            "about": model_about(wildcards),
            "caveats": model_notes(wildcards),
            "model": {
                "backbone": backbone,
                "feature": feature,
                "round": int(wildcards.round),
                "label": model_label(backbone, feature),
            },
        }
    )
