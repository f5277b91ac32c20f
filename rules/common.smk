# Helpers shared by every stage: config validation, the corpus listing and shards, and the
# input/params functions of the rules. Nothing here starts a job.
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from genreflow.audio_embeddings import checkpoint_files, checkpoint_root
from genreflow.config import ConfigError, sorted_block, validate_config
from genreflow.corpus import Listing, find_clips, shard_clips, synthetic_clips
from genreflow.features import FEATURES
from genreflow.registry import imagenet_weights_target
from genreflow.run_info import (
    AUDIO_FEATURE,
    FAULT_FILTERED,
    backbone_about,
    caveats,
    final_about,
    is_audio_backbone,
)
from genreflow.run_info import run_about as describe_run
from genreflow.splits import FAULT_FILTERED_LISTS, SPLITS

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
SYNTHETIC_ROOT = "resources/synthetic"


wildcard_constraints:
    # `audio` is the feature of the audio backbones (musicnn): they embed the audio itself.
    feature="|".join([*FEATURES, AUDIO_FEATURE]),
    shard=r"\d{3}",


def corpus_listing():
    dataset = config["dataset"]
    if dataset["kind"] == "synthetic":
        synthetic = dataset["synthetic"]
        clips = synthetic_clips(SYNTHETIC_ROOT, GENRES, synthetic["clips_per_genre"])
        return Listing(clips, [])
    try:
        return find_clips(dataset["root"], GENRES)
    except (FileNotFoundError, ValueError) as error:
        raise WorkflowError(str(error)) from None


LISTING = corpus_listing()
CLIPS = LISTING.clips
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


def musicnn_audio_settings():
    """audio settings of the musicnn jobs: without the sample rate, which musicnn fixes at
    16 kHz (resampling from the source file), so changing it does not rerun them."""
    return sorted_block(
        {key: value for key, value in audio_settings().items() if key != "sample_rate"}
    )


def every_shard(pattern):
    """Input function: `pattern` expanded over every shard, with the job's own wildcards
    (the join rules of per-shard jobs: images indexes, audio embeddings)."""

    def files(wildcards):
        return expand(pattern, shard=sorted(SHARDS), **dict(wildcards.items()))

    return files


def files_not_clips():
    """Files under the genre folders that are not clips (broken links, other file types):
    collect_corpus lists them in rejected.csv, so that no file goes unmentioned."""
    return sorted(LISTING.not_clips, key=lambda row: row["path"])


def shard_checks():
    return expand("results/corpus/checked/{shard}.csv", shard=sorted(SHARDS))


# ---------------------------------------------------------------- features
def feature_block(wildcards):
    return sorted_block(config["features"][wildcards.feature])


def feature_indexes():
    return expand("results/features/{feature}/index.csv", feature=FEATURES)


# ---------------------------------------------------------------- splits
def split_list_files(wildcards):
    """The split lists make_splits reads: none (stratified split), the fetched
    fault-filtered lists, or the user's own."""
    lists = config["splits"]["lists"]
    if lists == FAULT_FILTERED:
        return {split: FAULT_FILTERED_LISTS[split].target for split in SPLITS}
    return {split: lists[split] for split in SPLITS} if lists else {}


def split_list_checksums():
    """The published checksums of the fault-filtered lists, checked by make_splits (a
    list placed by hand is used as it is only if it is the published one)."""
    if config["splits"]["lists"] != FAULT_FILTERED:
        return None
    return {split: FAULT_FILTERED_LISTS[split].sha256 for split in SPLITS}


def split_settings():
    return sorted_block(
        {key: value for key, value in config["splits"].items() if key != "lists"}
    )


def split_manifests():
    return expand("results/splits/{split}.csv", split=SPLITS)


# The conda environment of the rules that ask for a GPU (with --software-deployment-method
# conda); a pip install picks its TensorFlow with its lock instead.
GPU_ENV = (
    "../envs/tensorflow-gpu.yaml"
    if config["training"]["conda_tensorflow"] == "gpu"
    else "../envs/tensorflow.yaml"
)


# ---------------------------------------------------------------- screening
BACKBONES = config["backbones"]["names"]
IMAGE_BACKBONES = [name for name in BACKBONES if not is_audio_backbone(name)]
AUDIO_BACKBONES = [name for name in BACKBONES if is_audio_backbone(name)]
SCREEN_FEATURES = config["screening"]["features"]
MUSICNN = config["backbones"]["musicnn"]


wildcard_constraints:
    backbone="|".join(BACKBONES),


def screening_pairs():
    """(backbone, feature) of every screening job: image backbones x screened image
    types, and each audio backbone with its one feature, the audio."""
    return [
        *(
            (backbone, feature)
            for backbone in IMAGE_BACKBONES
            for feature in SCREEN_FEATURES
        ),
        *((backbone, AUDIO_FEATURE) for backbone in AUDIO_BACKBONES),
    ]


def musicnn_root():
    return str(checkpoint_root(MUSICNN["checkpoints"]))


def musicnn_checkpoint(wildcards):
    """The checkpoint files an embed_audio job restores: inputs, so a reinstall reruns it."""
    files = checkpoint_files(wildcards.backbone, musicnn_root())
    return {
        "checkpoint_index": files[".index"],
        "checkpoint_data": files[".data-00000-of-00001"],
    }


def backbone_weights(wildcards):
    """The weights file a backbone job reads: {} for random initialisation."""
    weights = config["backbones"]["weights"]
    if weights == "none" or is_audio_backbone(wildcards.backbone):
        return {}
    if weights == "imagenet":
        return {"weights": imagenet_weights_target(wildcards.backbone)}
    return {"weights": weights}


def split_manifest_files(wildcards):
    return {split: f"results/splits/{split}.csv" for split in SPLITS}


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


RUN_ABOUT = describe_run(config)


def run_about():
    """What every summary must state about the run (genreflow.run_info.run_about)."""
    return RUN_ABOUT


def screening_about(wildcards):
    return sorted_block(
        {
            **backbone_about(run_about(), wildcards.backbone),
            "backbone": wildcards.backbone,
            "feature": wildcards.feature,
        }
    )


def screening_files(name):
    """`name` (metrics.json, predictions.csv) of every screening job."""
    return [
        f"results/screening/{backbone}/{feature}/{name}"
        for backbone, feature in screening_pairs()
    ]


# ---------------------------------------------------------------- tuning
from genreflow.io import read_json

TUNING = config["tuning"]
BASELINE_CNN = "baseline_cnn"
TUNED_MODELS = "|".join([*BACKBONES, BASELINE_CNN])


wildcard_constraints:
    round=r"\d+",
    worker=r"\d+",


def tuning_block(backbone):
    """The tuning settings of a model: the baseline CNN has its own rounds and defaults."""
    return TUNING["baseline"] if backbone == BASELINE_CNN else TUNING


def tuning_round(wildcards):
    return tuning_block(wildcards.backbone)["rounds"][int(wildcards.round)]


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


def screening_selection():
    """selection.json, through the checkpoint that writes it (`checkpoint_file`)."""
    return checkpoint_file(checkpoints.summarize_screening, "selection")


def tuning_combinations():
    """(backbone, feature) of every chain of rounds, the baseline CNN's included."""
    if TUNING["combinations"] == "selection":
        selection = screening_selection()
        pairs = [
            (s["backbone"], s["feature"]) for s in read_json(selection)["selected"]
        ]
    else:
        pairs = [(c["backbone"], c["feature"]) for c in TUNING["combinations"]]
    baseline = TUNING["baseline"]
    if baseline["enabled"]:
        image_features = [feature for _, feature in pairs if feature != AUDIO_FEATURE]
        if baseline["feature"] != "best":
            pairs.append((BASELINE_CNN, baseline["feature"]))
        elif image_features:
            # The selection is best first; the CNN needs images, not musicnn's audio.
            pairs.append((BASELINE_CNN, image_features[0]))
        else:
            raise WorkflowError(
                "screening selected no image combination, so tuning.baseline.feature "
                "'best' names no image type; lower screening.min_f1 or name a feature"
            )
    return pairs


def round_file(backbone, feature, n, name):
    return f"results/tuning/{backbone}/{feature}/round_{n}/{name}"


def final_best_trials(wildcards):
    """best_trial.json of the last round of every chain."""
    return [
        round_file(
            backbone,
            feature,
            len(tuning_block(backbone)["rounds"]) - 1,
            "best_trial.json",
        )
        for backbone, feature in tuning_combinations()
    ]


def previous_best_trial(wildcards):
    n = int(wildcards.round)
    return round_file(wildcards.backbone, wildcards.feature, n - 1, "best_trial.json")


def model_data(wildcards):
    """What a model of (backbone, feature) reads besides the splits: the image index, and
    for a backbone its embedding cache (whose training statistics standardise the head's
    input, and on which a frozen backbone's head trains); an audio backbone has only the
    cache, the baseline CNN only the images."""
    inputs = {}
    if not is_audio_backbone(wildcards.backbone):
        inputs["index"] = f"results/features/{wildcards.feature}/index.csv"
    if wildcards.backbone != BASELINE_CNN:
        inputs["embeddings"] = (
            f"results/embeddings/{wildcards.backbone}/{wildcards.feature}.npz"
        )
    return inputs


def tuning_round_inputs(wildcards):
    inputs = {**split_manifest_files(wildcards), **model_data(wildcards)}
    if wildcards.backbone != BASELINE_CNN:
        inputs.update(backbone_weights(wildcards))
    n = int(wildcards.round)
    if n > 0:
        # collect_round is a checkpoint: once the previous round is collected this job is
        # planned again, and its params read the new best_trial.json. ancient(): a rewrite
        # with the same inherited values reruns nothing.
        checkpoints.collect_round.get(
            backbone=wildcards.backbone, feature=wildcards.feature, round=str(n - 1)
        )
        inputs["previous"] = ancient(previous_best_trial(wildcards))
    return inputs


def tuning_inherited(wildcards):
    """The inherited values, from the previous round's best_trial.json; they are params,
    so that a change of value reruns this round (and a same-content rewrite does not).
    """
    names = tuning_round(wildcards)["inherit"]
    if not names:
        return {}
    path = previous_best_trial(wildcards)
    if not os.path.exists(path):
        # Only while the previous round is still to run: the job is planned again then.
        return {"pending": path}
    params = read_json(path)["params"]
    return sorted_block({name: params.get(name) for name in names})


def tuning_round_block(wildcards):
    return sorted_block(tuning_round(wildcards))


def tuning_defaults(wildcards):
    return sorted_block(tuning_block(wildcards.backbone)["defaults"])


def tuning_pruner(wildcards):
    return sorted_block(tuning_round(wildcards)["pruner"] or TUNING["pruner"])


def tuning_settings(wildcards):
    """What a model of (backbone, feature) is built and trained with besides its
    hyperparameters; final models get the same, so they are built as their trials were.
    """
    settings = {
        "genres": GENRES,
        "image_size": config["features"]["image_size"],
        "patience": TUNING["patience"],
        "cv_folds": TUNING["cv_folds"],
    }
    if wildcards.backbone != BASELINE_CNN:
        settings["weights"] = config["backbones"]["weights"]
        # a randomly initialised backbone is the network of the embedding cache
        settings["backbone_seed"] = config["screening"]["seed"]
        settings["activation_storage"] = config["training"]["activation_storage"]
    return sorted_block(settings)


def tuning_journal(wildcards):
    return round_file(
        wildcards.backbone, wildcards.feature, wildcards.round, "study.journal"
    )


def tuning_worker_notes(wildcards):
    return expand(
        round_file(
            wildcards.backbone,
            wildcards.feature,
            wildcards.round,
            "workers/{worker}.json",
        ),
        worker=range(TUNING["workers"]),
    )


# ---------------------------------------------------------------- evaluation
EVALUATION = config["evaluation"]


wildcard_constraints:
    seed=r"\d+",


def final_models(wildcards):
    """(backbone, feature, round) of every tuning round of every chain, the baseline
    CNN's included: each round's best configuration becomes a final model."""
    return [
        (backbone, feature, n)
        for backbone, feature in tuning_combinations()
        for n in range(len(tuning_block(backbone)["rounds"]))
    ]


def final_files(name):
    """Input function: `name` (metrics.json, predictions.csv) of every final model."""

    def files(wildcards):
        return [
            f"results/final/{backbone}/{feature}/round_{n}/{name}"
            for backbone, feature, n in final_models(wildcards)
        ]

    return files


def final_figures(wildcards):
    return [
        f"results/final/{backbone}/{feature}/round_{n}/{name}.png"
        for backbone, feature, n in final_models(wildcards)
        for name in ("accuracy", "loss", "confusion_matrix")
    ]


def tuning_figures(wildcards):
    return [
        f"results/tuning/{backbone}/{feature}/round_{n}/plots/{name}.png"
        for backbone, feature, n in final_models(wildcards)
        for name in ("optimization_history", "param_importances", "parallel_coordinate")
    ]


def final_seed_files(wildcards):
    folder = f"results/final/{wildcards.backbone}/{wildcards.feature}/round_{wildcards.round}"
    return {
        name: [f"{folder}/seed_{seed}/{filename}" for seed in EVALUATION["seeds"]]
        for name, filename in (
            ("metrics", "metrics.json"),
            ("predictions", "predictions.csv"),
            ("history", "history.csv"),
        )
    }


def final_weights(wildcards):
    return {} if wildcards.backbone == BASELINE_CNN else backbone_weights(wildcards)


def final_model_about(wildcards):
    return final_about(
        run_about(), wildcards.backbone, wildcards.feature, int(wildcards.round)
    )


def final_notes(wildcards):
    """The caveats, in genreflow.run_info.caveats' words, for the report captions."""
    return caveats(final_model_about(wildcards))


def final_training():
    return sorted_block({key: EVALUATION[key] for key in ("epochs", "patience")})


def final_settings(wildcards):
    return tuning_settings(wildcards)


# ---------------------------------------------------------------- segments
from genreflow.segments import length_label, length_seconds

COMPARE_LENGTHS = [
    length_label(seconds) for seconds in config["segments"]["compare"] or []
]
# The lengths the main stages already use: their screening results are reused as is.
MAIN_LENGTH = length_label(config["segments"]["seconds"])


wildcard_constraints:
    length=r"whole|\d+(\.\d+)?s",


def segment_seconds(wildcards):
    return length_seconds(wildcards.length)


def compared_models():
    """(backbone, feature) of every model the comparison trains: the screening selection."""
    return [
        (s["backbone"], s["feature"])
        for s in read_json(screening_selection())["selected"]
    ]


def segment_rows(wildcards):
    return [
        {"length": length, "backbone": backbone, "feature": feature}
        for length in COMPARE_LENGTHS
        for backbone, feature in compared_models()
    ]


def segment_files(name):
    """Input function: `name` (metrics.json, predictions.csv) of every comparison row; the
    length the main run uses is its screening's."""

    def files(wildcards):
        return [
            (
                f"results/screening/{row['backbone']}/{row['feature']}/{name}"
                if row["length"] == MAIN_LENGTH
                else f"results/segments/{row['length']}/screening/{row['backbone']}/{row['feature']}/{name}"
            )
            for row in segment_rows(wildcards)
        ]

    return files


def segment_targets():
    return ["results/segments/summary.csv"] if COMPARE_LENGTHS else []


# ---------------------------------------------------------------- predict
from genreflow.predict import list_music, prediction_name
from genreflow.registry import model_label

PREDICT = config["predict"]
PREDICT_FILES, PREDICT_NOT_AUDIO = (
    list_music(PREDICT["input"]) if PREDICT["input"] else ([], [])
)
PREDICT_SHARDS = {
    f"{start // PREDICT['shard_size']:03d}": PREDICT_FILES[
        start : start + PREDICT["shard_size"]
    ]
    for start in range(0, len(PREDICT_FILES), PREDICT["shard_size"])
}
PREDICT_NAME = prediction_name(PREDICT) if PREDICT["input"] else None


def bundle_folder(model):
    return f"results/export/{model}"


def predicted_model():
    """<backbone>/<feature>/round_<n>: predict.model, or the final model chosen on
    validation (results/final/headline.json, written by the summarize_final checkpoint).
    """
    if PREDICT["model"]:
        return PREDICT["model"]
    chosen = read_json(checkpoint_file(checkpoints.summarize_final, "headline"))
    return f"{chosen['backbone']}/{chosen['feature']}/round_{chosen['round']}"


def exported_bundle(wildcards):
    folder = bundle_folder(predicted_model())
    return [
        f"{folder}/{name}"
        for name in ("model.keras", "preprocessing.json", "README.md")
    ]


def predict_bundle(wildcards):
    folder = bundle_folder(predicted_model())
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
    folder = f"results/final/{wildcards.backbone}/{wildcards.feature}/round_{wildcards.round}"
    return {
        "models": [f"{folder}/seed_{seed}/model.keras" for seed in EVALUATION["seeds"]],
        "metrics": [
            f"{folder}/seed_{seed}/metrics.json" for seed in EVALUATION["seeds"]
        ],
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
                else "baseline" if backbone == BASELINE_CNN else "backbone"
            ),
            "musicnn": (
                {"layer": MUSICNN["layer"], "checkpoints": MUSICNN["checkpoints"]}
                if audio_backbone
                else None
            ),
            "about": final_model_about(wildcards),
            "caveats": final_notes(wildcards),
            "model": {
                "backbone": backbone,
                "feature": feature,
                "round": int(wildcards.round),
                "label": model_label(backbone, feature),
            },
        }
    )


wildcard_constraints:
    name=r"[A-Za-z0-9_.-]+",


# ---------------------------------------------------------------- report
# The report's front page (genreflow/report/workflow.rst) is rendered with the config
# alone: the caveats (in genreflow.run_info's words) and, once summarize_final has run, the
# chosen model's test scores (results/final/headline.json) reach it through this key.
HEADLINE = "results/final/headline.json"
config["report_front_page"] = {
    "caveats": caveats(RUN_ABOUT),
    "weights": RUN_ABOUT["weights"],
    "headline": read_json(HEADLINE) if os.path.exists(HEADLINE) else None,
}
