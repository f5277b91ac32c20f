"""Which jobs the workflow has and where their files are: the DAG's planning, as plain
functions of config values (the rules' input functions call them with `config`'s), so that
it is unit-tested without running Snakemake (tests/test_plan.py).

Nothing here reads a file or imports Snakemake; what depends on a finished checkpoint (the
screening selection, the chosen final model) is passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from genreflow.registry import imagenet_weights_target
from genreflow.run_info import AUDIO_FEATURE, BASELINE, is_audio_backbone
from genreflow.scoring import SPLITS

Pair = tuple[str, str]  # (backbone, feature)


class PlanError(ValueError):
    """A config whose DAG cannot be planned (the Snakefile turns it into a WorkflowError)."""


# ------------------------------------------------------------------------ file layout
def split_manifest(split: str) -> str:
    return f"results/splits/{split}.csv"


def split_manifests() -> dict[str, str]:
    return {split: split_manifest(split) for split in SPLITS}


def feature_index(feature: str) -> str:
    return f"results/features/{feature}/index.csv"


def embeddings_file(backbone: str, feature: str) -> str:
    return f"results/embeddings/{backbone}/{feature}.npz"


def screening_file(backbone: str, feature: str, name: str) -> str:
    return f"results/screening/{backbone}/{feature}/{name}"


def round_file(backbone: str, feature: str, n: int | str, name: str) -> str:
    return f"results/tuning/{backbone}/{feature}/round_{n}/{name}"


def model_id(backbone: str, feature: str, n: int | str) -> str:
    """`<backbone>/<feature>/round_<n>`: how predict.model and the export folders name a
    final model."""
    return f"{backbone}/{feature}/round_{n}"


def final_folder(backbone: str, feature: str, n: int | str) -> str:
    return f"results/final/{model_id(backbone, feature, n)}"


def seed_files(folder: str, seeds: Sequence[int], filename: str) -> list[str]:
    """`filename` of every seed's final model in `folder` (`final_folder`)."""
    return [f"{folder}/seed_{seed}/{filename}" for seed in seeds]


def bundle_folder(model: str) -> str:
    return f"results/export/{model}"


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


def model_inputs(backbone: str, feature: str) -> dict[str, str]:
    """What a model of (backbone, feature) reads besides the splits: the image index, and
    for a backbone its embedding cache (whose training statistics standardise the head's
    input, and on which a frozen backbone's head trains); an audio backbone has only the
    cache, the baseline CNN only the images."""
    inputs = {}
    if not is_audio_backbone(backbone):
        inputs["index"] = feature_index(feature)
    if backbone != BASELINE:
        inputs["embeddings"] = embeddings_file(backbone, feature)
    return inputs


def weights_input(weights: str, backbone: str) -> dict[str, str]:
    """The weights file a job of `backbone` reads under `backbones.weights`: none for random
    initialisation, audio backbones (their checkpoints are inputs of their own) and the
    baseline CNN."""
    if weights == "none" or backbone == BASELINE or is_audio_backbone(backbone):
        return {}
    if weights == "imagenet":
        return {"weights": imagenet_weights_target(backbone)}
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
    return f"results/segments/{row['length']}/screening/{row['backbone']}/{row['feature']}/{name}"
