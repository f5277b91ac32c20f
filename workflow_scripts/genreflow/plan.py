"""Which jobs the workflow has and where their files are: the DAG's planning, as plain
functions of config values (the rules' input functions call them with `config`'s), so that
it is unit-tested without running Snakemake (tests/test_plan.py).

Nothing here reads a file or imports Snakemake; what depends on a finished checkpoint (the
screening selection, the chosen final model) is passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from genreflow.names import AUDIO_FEATURE, BASELINE, SECOND_RENDERING, SPLITS, is_audio_backbone

Pair = tuple[str, str]  # (backbone, feature)


class PlanError(ValueError):
    """A config whose DAG cannot be planned (the Snakefile turns it into a WorkflowError)."""


# ------------------------------------------------------------------------ file layout
# Where every stage's files are: each folder as the wildcard pattern the rules' outputs use
# (rules/*.smk build their paths from these constants, so this is the only place to change
# one), and the functions below fill them in for the input functions. The names of the
# files inside a folder say what each holds, and are written where they are used.
RESULTS = "results"
RESOURCES = "resources"
SYNTHETIC_CORPUS = f"{RESOURCES}/synthetic"
IMAGENET_WEIGHTS = f"{RESOURCES}/weights/{{backbone}}/imagenet_notop.h5"
FAULT_FILTERED_LISTS_FOLDER = f"{RESOURCES}/splits/fault_filtered"
CORPUS = f"{RESULTS}/corpus"
FEATURE = f"{RESULTS}/features/{{feature}}"
SPLITS_FOLDER = f"{RESULTS}/splits"
EMBEDDINGS = f"{RESULTS}/embeddings/{{backbone}}"
SCREENING = f"{RESULTS}/screening"
SCREENED = f"{SCREENING}/{{backbone}}/{{feature}}"
TUNING_ROUND = f"{RESULTS}/tuning/{{backbone}}/{{feature}}/round_{{round}}"
# how predict.model and the export folders name a final model
MODEL_ID = "{backbone}/{feature}/round_{round}"
FINAL = f"{RESULTS}/final"
FINAL_MODEL = f"{FINAL}/{MODEL_ID}"
FINAL_SEED = f"{FINAL_MODEL}/seed_{{seed}}"
SEGMENTS = f"{RESULTS}/segments"
EXPORTS = f"{RESULTS}/export"
EXPORT = f"{EXPORTS}/{MODEL_ID}"
PREDICTIONS = f"{RESULTS}/predict/{{name}}"
ROBUSTNESS = f"{RESULTS}/robustness"
# the test clips under one condition (a perturbation, or the second rendering): audio + table
ROBUSTNESS_AUDIO = f"{ROBUSTNESS}/audio/{{condition}}"
# what the models read of every condition's clips: a feature's images, an audio backbone's
# embeddings (the clean test clips' are the main run's own)
ROBUSTNESS_FEATURE = f"{ROBUSTNESS}/features/{{feature}}"
ROBUSTNESS_EMBEDDINGS = f"{ROBUSTNESS}/embeddings/{{backbone}}"
# one scoring job per chain of rounds (every round and seed of a (backbone, feature))
ROBUSTNESS_MODELS = f"{ROBUSTNESS}/models/{{backbone}}/{{feature}}"
# augmented training views (training.augment): one family's views of the training tracks
# (audio + table), their images per feature; then every family's views together, as the
# models read them: a feature's image index, a backbone's embedding cache
AUGMENT = f"{RESULTS}/augment"
AUGMENT_AUDIO = f"{AUGMENT}/views/{{family}}/audio"
AUGMENT_FAMILY_FEATURE = f"{AUGMENT}/views/{{family}}/features/{{feature}}"
AUGMENT_FEATURE = f"{AUGMENT}/features/{{feature}}"
AUGMENT_EMBEDDINGS = f"{AUGMENT}/embeddings/{{backbone}}"


def at_segment_length(folder: str) -> str:
    """A main-run folder's counterpart in the segment comparison, which repeats the
    features, embeddings and screening stages under results/segments/{length}/."""
    return folder.replace(RESULTS, f"{SEGMENTS}/{{length}}", 1)


SEGMENT_FEATURE = at_segment_length(FEATURE)
SEGMENT_EMBEDDINGS = at_segment_length(EMBEDDINGS)
SEGMENT_SCREENED = at_segment_length(SCREENED)


def split_manifest(split: str) -> str:
    return f"{SPLITS_FOLDER}/{split}.csv"


def split_manifests() -> dict[str, str]:
    return {split: split_manifest(split) for split in SPLITS}


def feature_index(feature: str) -> str:
    return f"{FEATURE.format(feature=feature)}/index.csv"


def embeddings_file(backbone: str, feature: str) -> str:
    return f"{EMBEDDINGS.format(backbone=backbone)}/{feature}.npz"


def screening_file(backbone: str, feature: str, name: str) -> str:
    return f"{SCREENED.format(backbone=backbone, feature=feature)}/{name}"


def round_file(backbone: str, feature: str, n: int | str, name: str) -> str:
    return f"{TUNING_ROUND.format(backbone=backbone, feature=feature, round=n)}/{name}"


def model_id(backbone: str, feature: str, n: int | str) -> str:
    """`<backbone>/<feature>/round_<n>`: how predict.model and the export folders name a
    final model."""
    return MODEL_ID.format(backbone=backbone, feature=feature, round=n)


def final_folder(backbone: str, feature: str, n: int | str) -> str:
    return FINAL_MODEL.format(backbone=backbone, feature=feature, round=n)


def seed_files(folder: str, seeds: Sequence[int], filename: str) -> list[str]:
    """`filename` of every seed's final model in `folder` (`final_folder`)."""
    return [f"{folder}/seed_{seed}/{filename}" for seed in seeds]


def bundle_folder(model: str) -> str:
    """The export folder of `model` (a `model_id`)."""
    return f"{EXPORTS}/{model}"


def imagenet_weights(backbone: str) -> str:
    """Where the local rule fetch_weights puts a backbone's ImageNet file (and jobs read it)."""
    return IMAGENET_WEIGHTS.format(backbone=backbone)


# ------------------------------------------------------------------------- what is made
def screening_pairs(
    image_backbones: Sequence[str], audio_backbones: Sequence[str], features: Sequence[str]
) -> list[Pair]:
    """Every screening job: image backbones x screened image types, and each audio
    backbone with its one feature, the audio."""
    return [
        *((backbone, feature) for backbone in image_backbones for feature in features),
        *((backbone, AUDIO_FEATURE) for backbone in audio_backbones),
    ]


def tuning_pairs(chosen: Sequence[Pair], baseline: Mapping) -> list[Pair]:
    """Every chain of rounds: the chosen (backbone, feature) pairs (the screening selection,
    best first, or tuning.combinations), and the baseline CNN (`tuning.baseline`) on its
    feature; feature `best` is the first chosen image type (the CNN needs images, not an
    audio backbone's audio)."""
    pairs = [tuple(pair) for pair in chosen]
    if not baseline["enabled"]:
        return pairs
    if baseline["feature"] != "best":
        return [*pairs, (BASELINE, baseline["feature"])]
    image_features = [feature for _, feature in pairs if feature != AUDIO_FEATURE]
    if not image_features:
        raise PlanError(
            "screening selected no image combination, so tuning.baseline.feature 'best' "
            "names no image type; lower screening.min_f1 or name a feature"
        )
    return [*pairs, (BASELINE, image_features[0])]


def final_models(pairs: Sequence[Pair], n_rounds: Callable[[str], int]) -> list[tuple]:
    """(backbone, feature, round) of every round of every chain: each round's best
    configuration becomes a final model. `n_rounds(backbone)`: the rounds of its chain."""
    return [
        (backbone, feature, n) for backbone, feature in pairs for n in range(n_rounds(backbone))
    ]


def model_inputs(backbone: str, feature: str, views: bool = False) -> dict[str, str]:
    """What a model of (backbone, feature) reads besides the splits: the image index, and
    for a backbone its embedding cache (whose training statistics standardise the head's
    input, and on which a frozen backbone's head trains); an audio backbone has only the
    cache, the baseline CNN only the images. With `views` (`trains_on_views`), the same of
    the augmented views: `view_index`, `view_embeddings`."""
    inputs = {}
    if not is_audio_backbone(backbone):
        inputs["index"] = feature_index(feature)
    if backbone != BASELINE:
        inputs["embeddings"] = embeddings_file(backbone, feature)
    if views:
        if "index" in inputs:
            inputs["view_index"] = f"{AUGMENT_FEATURE.format(feature=feature)}/index.csv"
        if "embeddings" in inputs:
            inputs["view_embeddings"] = f"{AUGMENT_EMBEDDINGS.format(backbone=backbone)}/{feature}.npz"
    return inputs


def augment_values(tuning: Mapping) -> set:
    """Every value of the hyperparameter `augment` that the chains of a tuning block
    (tuning, or tuning.baseline) can train with: its default and what each round fixes or
    may choose (what a round inherits, an earlier round gave)."""
    values = {tuning["defaults"].get("augment", "none")}
    for block in tuning["rounds"]:
        if "augment" in block.get("fixed", {}):
            values.add(block["fixed"]["augment"])
        for section in ("scientific", "nuisance"):
            dimension = block.get(section, {}).get("augment")
            if dimension is not None:
                values.update(dimension.get("choices") or ())
    return values


def trains_on_views(tuning: Mapping, views: int) -> bool:
    """Whether the models of a tuning block may train on augmented views: views are drawn
    (training.augment.views > 0) and some default or round can set `augment` to use them.
    Only then are the views made and read."""
    return views > 0 and bool(augment_values(tuning) - {"none"})


def augment_splits(cv_folds: int) -> list[str]:
    """The splits whose tracks get views: the training split, and the validation split too
    when trials cross-validate over the pooled tracks (tuning.cv_folds > 1), where a
    validation track trains in the other folds."""
    return ["train"] if cv_folds <= 1 else ["train", "valid"]


def weights_input(weights: str, backbone: str) -> dict[str, str]:
    """The weights file a job of `backbone` reads under `backbones.weights`: none for random
    initialisation, audio backbones (their checkpoints are inputs of their own) and the
    baseline CNN."""
    if weights == "none" or backbone == BASELINE or is_audio_backbone(backbone):
        return {}
    if weights == "imagenet":
        return {"weights": imagenet_weights(backbone)}
    return {"weights": weights}


def segment_rows(lengths: Sequence[str], models: Sequence[Pair]) -> list[dict]:
    """One row per (length, model) of the segment comparison."""
    return [
        {"length": length, "backbone": backbone, "feature": feature}
        for length in lengths
        for backbone, feature in models
    ]


def segment_file(row: Mapping, main_length: str, name: str) -> str:
    """`name` of a comparison row's screening: the main run's own at the length it uses."""
    if row["length"] == main_length:
        return screening_file(row["backbone"], row["feature"], name)
    folder = SEGMENT_SCREENED.format(length=row["length"], backbone=row["backbone"],
                                     feature=row["feature"])
    return f"{folder}/{name}"


def robustness_conditions(perturbations: Sequence[str], second_rendering: bool,
                          corpus: str) -> list[str]:
    """The conditions every final model is scored under besides the clean test split: the
    perturbations (config names, in config order), then the second rendering of the test
    songs, which only the synthetic corpus has."""
    rendered = [SECOND_RENDERING] if second_rendering and corpus == "synthetic" else []
    return [*perturbations, *rendered]


def robustness_audio_table(condition: str) -> str:
    return f"{ROBUSTNESS_AUDIO.format(condition=condition)}/clips.csv"


def robustness_inputs(backbone: str, feature: str) -> dict[str, str]:
    """What scoring a final model of (backbone, feature) under the conditions reads besides
    its model.keras files: `clean`, the test inputs the model was tested on (the feature's
    image index, or an audio backbone's embedding cache), and `conditions`, the same made
    from every condition's clips."""
    if is_audio_backbone(backbone):
        return {
            "clean": embeddings_file(backbone, AUDIO_FEATURE),
            "conditions": f"{ROBUSTNESS_EMBEDDINGS.format(backbone=backbone)}/{AUDIO_FEATURE}.npz",
        }
    return {
        "clean": feature_index(feature),
        "conditions": f"{ROBUSTNESS_FEATURE.format(feature=feature)}/index.csv",
    }


def robustness_predictions(backbone: str, feature: str) -> str:
    """The predictions of every final model of (backbone, feature) under every condition."""
    return f"{ROBUSTNESS_MODELS.format(backbone=backbone, feature=feature)}/predictions.csv"

