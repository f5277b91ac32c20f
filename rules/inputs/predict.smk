# What the rules of rules/predict.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.predict.workflow import list_music, prediction_name
from genreflow.predict.bundle import bundle_settings
from snakemake.logging import logger

PREDICT = config["predict"]
PREDICT_FILES, PREDICT_NOT_AUDIO = (
    list_music(PREDICT["input"]) if PREDICT["input"] else ([], [])
)
PREDICT_SHARDS = shard_clips(PREDICT_FILES, PREDICT["shard_size"])
PREDICT_NAME = prediction_name(PREDICT) if PREDICT["input"] else None


def chosen_model_id():
    """<backbone>/<feature>/round_<n> of the final model chosen on validation
    (results/final/headline.json, written by the summarize_final checkpoint)."""
    chosen = read_json(checkpoint_file(checkpoints.summarize_final, "headline"))
    return plan.model_id(chosen["backbone"], chosen["feature"], chosen["round"])


_SAID = set()


def predicted_model_id():
    """predict.model, or the chosen model. A predict.model the run does not tune (not in
    the screening selection or tuning.combinations) is tuned and trained first: say so.
    """
    if not PREDICT["model"]:
        return chosen_model_id()
    backbone, feature, _ = PREDICT["model"].split("/")
    if (backbone, feature) not in get_tuning_pairs() and PREDICT["model"] not in _SAID:
        _SAID.add(PREDICT["model"])
        logger.warning(
            f"predict.model {PREDICT['model']} is not among the models this run tunes "
            f"({', '.join(f'{b}/{f}' for b, f in get_tuning_pairs())}): its tuning rounds "
            "and final model are trained first"
        )
    return PREDICT["model"]


BUNDLE_FILES = ("model.keras", "unfamiliarity.npz", "preprocessing.json")


def bundle_files(model_id, names=(*BUNDLE_FILES, "README.md")):
    folder = plan.bundle_folder(model_id)
    return {name.split(".")[0].lower(): f"{folder}/{name}" for name in names}


def get_exported_bundle(wildcards):
    return list(bundle_files(predicted_model_id()).values())


def get_chosen_bundle(wildcards):
    return {
        "headline": HEADLINE,
        "preprocessing": bundle_files(chosen_model_id())["preprocessing"],
    }


def get_predict_bundle(wildcards):
    return bundle_files(predicted_model_id(), BUNDLE_FILES)


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
    """Every seed's model and metrics of a final model (the bundle takes the seed with the
    best validation macro-F1), the seeds' temperatures, and the unfamiliar score fitted for
    that seed."""
    folder = plan.final_folder(wildcards.backbone, wildcards.feature, wildcards.round)
    return {
        "models": plan.seed_files(folder, EVALUATION["seeds"], "model.keras"),
        "metrics": plan.seed_files(folder, EVALUATION["seeds"], "metrics.json"),
        "calibration": f"{folder}/calibration.json",
        "unfamiliarity": f"{folder}/unfamiliarity.npz",
        "unfamiliarity_summary": f"{folder}/unfamiliarity.json",
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
