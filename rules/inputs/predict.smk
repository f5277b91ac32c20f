# What the rules of rules/predict.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.predict.workflow import list_music, prediction_name
from genreflow.predict.bundle import bundle_settings

PREDICT = config["predict"]
PREDICT_FILES, PREDICT_NOT_AUDIO = (
    list_music(PREDICT["input"]) if PREDICT["input"] else ([], [])
)
PREDICT_SHARDS = shard_clips(PREDICT_FILES, PREDICT["shard_size"])
PREDICT_NAME = prediction_name(PREDICT) if PREDICT["input"] else None


def chosen_model_id():
    """<backbone>/<feature>/round_<n>: predict.model, or the final model chosen on
    validation (results/final/headline.json, written by the summarize_final checkpoint).
    """
    if PREDICT["model"]:
        return PREDICT["model"]
    chosen = read_json(checkpoint_file(checkpoints.summarize_final, "headline"))
    return plan.model_id(chosen["backbone"], chosen["feature"], chosen["round"])


def get_exported_bundle(wildcards):
    folder = plan.bundle_folder(chosen_model_id())
    return [
        f"{folder}/{name}"
        for name in ("model.keras", "preprocessing.json", "README.md")
    ]


def get_predict_bundle(wildcards):
    folder = plan.bundle_folder(chosen_model_id())
    return {
        "model": f"{folder}/model.keras",
        "preprocessing": f"{folder}/preprocessing.json",
    }


def get_predict_targets(wildcards):
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
    folder = plan.PREDICTIONS.format(name=PREDICT_NAME)
    return [
        f"{folder}/{name}"
        for name in ("predictions.csv", "rejected.csv", "probabilities.png")
    ]


def get_predict_shard_files(wildcards):
    return PREDICT_SHARDS[wildcards.shard]


def get_every_predict_shard(pattern):
    def files(wildcards):
        return expand(pattern, shard=sorted(PREDICT_SHARDS), name=wildcards.name)

    return files


def get_export_inputs(wildcards):
    """Every seed's model and metrics of a final model: the bundle takes the seed with the
    best validation macro-F1."""
    folder = plan.final_folder(wildcards.backbone, wildcards.feature, wildcards.round)
    return {
        "models": plan.seed_files(folder, EVALUATION["seeds"], "model.keras"),
        "metrics": plan.seed_files(folder, EVALUATION["seeds"], "metrics.json"),
    }


def get_export_settings(wildcards):
    """What preprocessing.json says turns audio into this model's input
    (genreflow.predict.bundle owns the bundle's contract)."""
    return bundle_settings(
        backbone=wildcards.backbone,
        feature=wildcards.feature,
        round_number=int(wildcards.round),
        genres=GENRES,
        audio=get_audio_settings(),
        # the model's own clip or segment length
        window_seconds=config["segments"]["seconds"] or config["audio"]["seconds"],
        feature_block=config["features"].get(wildcards.feature),
        image_size=config["features"]["image_size"],
        musicnn=MUSICNN,
        about=get_model_about(wildcards),
        caveats=get_model_notes(wildcards),
    )
