# What every stage shares: the validated config, the corpus and its shards, wildcard
# constraints, and the input functions of several stages (named get_*, as the
# snakemake-workflows repositories name them). Each stage's own input functions are in
# rules/inputs/<stage>.smk, included at the end; which jobs exist and where their files
# are is genreflow.plan (pure functions of config values, unit-tested), whose folder
# patterns every rule's paths are built from. Nothing here starts a job.
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from genreflow import plan
from genreflow.config import ConfigError, sorted_block, validate_config
from genreflow.corpus import Listing, find_clips, shard_clips, synthetic_clips
from genreflow.io import read_json
from genreflow.names import AUDIO_FEATURE, BASELINE, FEATURES, SPLITS, is_audio_backbone
from genreflow.run_info import caveats, final_about, run_about

try:
    # A preset is merged over the config files (config.yaml, --configfile), and the
    # --config values win over both: they, not --configfile, are the overrides.
    _validated = validate_config(
        config, overrides=dict(workflow.config_settings.config)
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

GENRES = config["dataset"]["genres"]
IMAGE_FEATURES = "|".join(FEATURES)
BACKBONES = config["backbones"]["names"]
IMAGE_BACKBONES = [name for name in BACKBONES if not is_audio_backbone(name)]
AUDIO_BACKBONES = [name for name in BACKBONES if is_audio_backbone(name)]
TUNED_MODELS = "|".join([*BACKBONES, BASELINE])
MUSICNN = config["backbones"]["musicnn"]
TUNING = config["tuning"]
EVALUATION = config["evaluation"]
# Threads of each TensorFlow job (training.threads; capped by --cores as any rule's).
TENSORFLOW_THREADS = config["training"]["threads"]
# The conda environment of the rules that ask for a GPU (with --software-deployment-method
# conda); a pip install picks its TensorFlow with its lock instead.
GPU_ENV = (
    "../envs/tensorflow-gpu.yaml"
    if config["training"]["conda_tensorflow"] == "gpu"
    else "../envs/tensorflow.yaml"
)
# What every summary must state about the run (genreflow.run_info.run_about).
RUN_ABOUT = run_about(config)


wildcard_constraints:
    # `audio` is the feature of the audio backbones (musicnn): they embed the audio itself.
    feature="|".join([*FEATURES, AUDIO_FEATURE]),
    shard=r"\d{3}",
    backbone="|".join(BACKBONES),
    round=r"\d+",
    worker=r"\d+",
    seed=r"\d+",
    length=r"whole|\d+(\.\d+)?s",
    name=r"[A-Za-z0-9_.-]+",


def corpus_listing():
    dataset = config["dataset"]
    if dataset["kind"] == "synthetic":
        synthetic = dataset["synthetic"]
        clips = synthetic_clips(
            plan.SYNTHETIC_CORPUS, GENRES, synthetic["clips_per_genre"]
        )
        return Listing(clips, [])
    try:
        return find_clips(dataset["root"], GENRES)
    except (FileNotFoundError, ValueError) as error:
        raise WorkflowError(str(error)) from None


LISTING = corpus_listing()
CLIPS = LISTING.clips
SHARDS = shard_clips(CLIPS, config["features"]["shard_size"])


def get_every_shard(pattern):
    """Input function: `pattern` expanded over every shard, with the job's own wildcards
    (the join rules of per-shard jobs: images indexes, audio embeddings)."""

    def files(wildcards):
        return expand(pattern, shard=sorted(SHARDS), **dict(wildcards.items()))

    return files


def get_audio_settings():
    return sorted_block(
        {key: value for key, value in config["audio"].items() if key != "on_bad_file"}
    )


def get_musicnn_audio_settings():
    """audio settings of the musicnn jobs: without the sample rate, which musicnn fixes at
    16 kHz (resampling from the source file), so changing it does not rerun them."""
    return sorted_block(
        {
            key: value
            for key, value in get_audio_settings().items()
            if key != "sample_rate"
        }
    )


def get_feature_block(wildcards):
    return sorted_block(config["features"][wildcards.feature])


def get_split_manifests(wildcards):
    return plan.split_manifests()


def get_backbone_weights(wildcards):
    """The weights file a backbone job reads: {} for random initialisation."""
    return plan.weights_input(config["backbones"]["weights"], wildcards.backbone)


def checkpoint_file(checkpoint, name):
    """Output `name` of a checkpoint (without wildcards), once the checkpoint has run.

    Snakemake builds a report's DAG without resolving checkpoints (snakemake#3301), which
    would leave every figure behind one out of `snakemake --report`; there the file written
    by the finished run is read directly.
    """
    finished = getattr(checkpoint.rule.output, name)
    if "--report" in sys.argv and os.path.exists(finished):
        return finished
    return getattr(checkpoint.get().output, name)


def get_screening_selection():
    """The screening selection, best first: (backbone, feature) pairs of selection.json,
    read through the checkpoint that writes it (`checkpoint_file`)."""
    selection = checkpoint_file(checkpoints.summarize_screening, "selection")
    return [(s["backbone"], s["feature"]) for s in read_json(selection)["selected"]]


# ---------------------------------------------------------------- models
# What tuning, final training and prediction share about a model of (backbone, feature).


def tuning_block(backbone):
    """The tuning settings of a model: the baseline CNN has its own rounds and defaults."""
    return TUNING["baseline"] if backbone == BASELINE else TUNING


def round_count(backbone):
    return len(tuning_block(backbone)["rounds"])


def get_tuning_pairs():
    """(backbone, feature) of every chain of rounds, the baseline CNN's included."""
    if TUNING["combinations"] == "selection":
        chosen = get_screening_selection()
    else:
        chosen = [(c["backbone"], c["feature"]) for c in TUNING["combinations"]]
    try:
        return plan.tuning_pairs(chosen, TUNING["baseline"])
    except plan.PlanError as error:
        raise WorkflowError(str(error)) from None


def get_final_best_trials(wildcards):
    """best_trial.json of the last round of every chain."""
    return [
        plan.round_file(backbone, feature, round_count(backbone) - 1, "best_trial.json")
        for backbone, feature in get_tuning_pairs()
    ]


def get_model_inputs(wildcards):
    """What a model of (backbone, feature) reads besides the splits (plan.model_inputs),
    the augmented views' too where its rounds may train on them."""
    return plan.model_inputs(
        wildcards.backbone,
        wildcards.feature,
        views=plan.trains_on_views(
            tuning_block(wildcards.backbone), config["training"]["augment"]["views"]
        ),
    )


def get_model_settings(wildcards):
    """What a model of (backbone, feature) is built and trained with besides its
    hyperparameters; final models get the same, so they are built as their trials were.
    """
    settings = {
        "genres": GENRES,
        "image_size": config["features"]["image_size"],
        "patience": TUNING["patience"],
        "cv_folds": TUNING["cv_folds"],
    }
    if wildcards.backbone != BASELINE:
        settings["weights"] = config["backbones"]["weights"]
        # a randomly initialised backbone is the network of the embedding cache
        settings["backbone_seed"] = config["screening"]["seed"]
        settings["activation_storage"] = config["training"]["activation_storage"]
    return sorted_block(settings)


def get_model_about(wildcards):
    """What the (backbone, feature, round) model of a job is (genreflow.run_info.final_about):
    for its tuning plots, its final models and its bundle."""
    return final_about(
        RUN_ABOUT, wildcards.backbone, wildcards.feature, int(wildcards.round)
    )


def get_model_notes(wildcards):
    """The caveats, in genreflow.run_info.caveats' words, for the report captions."""
    return caveats(get_model_about(wildcards))


# ---------------------------------------------------------------- report
# The report's front page (genreflow/report/workflow.rst) is rendered with the config
# alone: the caveats (in genreflow.run_info's words) and, once summarize_final has run, the
# chosen model's test scores (results/final/headline.json) reach it through this key.
HEADLINE = f"{plan.FINAL}/headline.json"
# and, once summarize_robustness has run, its worst perturbation
ROBUSTNESS_HEADLINE = f"{plan.ROBUSTNESS}/headline.json"
config["report_front_page"] = {
    "caveats": caveats(RUN_ABOUT),
    "weights": RUN_ABOUT["weights"],
    "headline": read_json(HEADLINE) if os.path.exists(HEADLINE) else None,
    "robustness": (
        read_json(ROBUSTNESS_HEADLINE) if os.path.exists(ROBUSTNESS_HEADLINE) else None
    ),
    # `snakemake --report report.html predict` holds the predictions alone: its front page
    # must describe that report, not the study's (Snakemake gives a report no other way to
    # know its targets than the command line, as checkpoint_file reads it too)
    "predictions_only": "--report" in sys.argv
    and "predict" in sys.argv
    and "all" not in sys.argv,
}


# Each stage's own input functions and values, one file per stage beside its rules.
include: "inputs/corpus.smk"
include: "inputs/features.smk"
include: "inputs/splits.smk"
include: "inputs/screening.smk"
include: "inputs/tuning.smk"
include: "inputs/evaluation.smk"
include: "inputs/segments.smk"
include: "inputs/predict.smk"
include: "inputs/robustness.smk"
include: "inputs/augment.smk"
