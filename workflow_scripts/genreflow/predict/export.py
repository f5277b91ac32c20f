"""A final model's bundle (`export_bundle`, the `export_model` rule): the seed chosen on
validation, its model.keras, the statistics of its unfamiliar score (unfamiliarity.npz),
preprocessing.json (`genreflow.predict.bundle`: with its temperature) and a README."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from genreflow.evaluation.seeds import choose_seed
from genreflow.io import atomic_path, read_json, write_json, write_text_atomic
from genreflow.predict.bundle import (
    UNFAMILIARITY_FILE,
    fingerprint,
    preprocessing_record,
)


def bundle_readme(preprocessing: Mapping) -> str:
    model = preprocessing["model"]
    lines = [
        f"# genreflow model: {model['label']}, tuning round {model['round']}, seed {model['seed']}",
        "",
        f"Classifies audio into {len(preprocessing['genres'])} genres: "
        f"{', '.join(preprocessing['genres'])}.",
        "",
    ]
    lines += [f"**{note}**\n" for note in preprocessing["caveats"]]
    rate = 16000 if preprocessing["input"] == "embedding" else preprocessing["audio"]["sample_rate"]
    lines += [
        "```python",
        "from genreflow.predict import load_bundle",
        "",
        f"bundle = load_bundle({'path/to/this/folder'!r})",
        'print(bundle.predict_file("song.mp3"))  # {"genre": ..., "probabilities": {...}}',
        "predictions, rejected = bundle.predict_files([\"a.mp3\", \"b.flac\"])  # pandas tables",
        "```",
        "",
        "`predict_file` classifies one file and raises `genreflow.audio.BadClip` with the "
        "reason for a file it cannot use; `predict_files` classifies many at once (the model "
        "is loaded once) and returns one row per usable file (the three likeliest genres with "
        "their probabilities, the `unfamiliar` flag and the `unfamiliarity` score, then one "
        "`p_<genre>` column per genre) and the files it refused with the reason.",
        "",
        f"Probabilities are calibrated: the model's, averaged over a file's windows, then "
        f"softmax(log p / T) with T = {preprocessing['calibration']['temperature']:.3f}, "
        "fitted on the validation split (expected calibration error on the test split "
        f"{preprocessing['calibration']['test_ece_before']:.3f} before, "
        f"{preprocessing['calibration']['test_ece_after']:.3f} after, "
        f"{preprocessing['calibration']['bins']} bins).",
        "",
        f"`unfamiliarity` is the file's distance from the training songs "
        f"({preprocessing['unfamiliarity']['representation']}; mean over its windows) in units "
        f"of a threshold fitted on the validation split; `unfamiliar` is true above 1. "
        + preprocessing["unfamiliarity"]["meaning"].replace("unfamiliar = ", "It means: ", 1),
        "",
        "Loading needs the genreflow package and its pinned TensorFlow (Keras 3), as "
        "genreflow's README installs them (`pip install --no-deps -r requirements.lock -e .` "
        "in a clone of the repository): model.keras holds a genreflow layer "
        "(`InferenceMode`), so plain `keras.saving.load_model` needs `import "
        "genreflow.models.backbones` first. The checks of preprocessing.json refuse a bundle "
        "edited after export.",
        "",
        f"Input: audio of any format libsndfile reads, mono at {rate} Hz, "
        f"cut into windows of {preprocessing['window_seconds']:g} s whose class probabilities "
        "are averaged; files shorter than "
        f"{preprocessing['audio']['min_seconds']:g} s or silent are refused.",
    ]
    if preprocessing["input"] == "embedding":
        lines += [
            "",
            f"This is a head on musicnn's `{preprocessing['musicnn']['layer']}` embedding: "
            "prediction needs the musicnn package (0.1.0) and tf-keras, installed as genreflow's "
            "README says; `predict_file` runs musicnn in a process of its own "
            "(TF_USE_LEGACY_KERAS=1), as the workflow does.",
        ]
    else:
        lines += [
            "",
            f"Each window becomes a {preprocessing['image_size']} x {preprocessing['image_size']} "
            f"`{preprocessing['feature']}` image ({json.dumps(preprocessing['feature_block'], sort_keys=True)}), "
            "scaled as genreflow.features documents.",
        ]
    lines += ["", f"Weights: {preprocessing['about'].get('weights')}. Exported by genreflow."]
    return "\n".join(lines) + "\n"


# One job's entry point: a parameter per input, param and output of its rule (export_model).
def export_bundle(
    metrics_jsons: Sequence[str],
    model_kerases: Sequence[str],
    calibration_json: str,
    unfamiliarity_npz: str,
    unfamiliarity_json: str,
    settings: Mapping,
    out_model: str,
    out_unfamiliarity: str,
    out_preprocessing: str,
    out_readme: str,
    log=print,
) -> None:
    """Write the bundle of one final model: the seed chosen on validation (`choose_seed`),
    its temperature (the model's calibration.json) and its unfamiliar score (the statistics
    fitted for that seed: unfamiliarity.npz, described by unfamiliarity.json).

    `settings` (the export rule's params): genres, audio, window_seconds, feature,
    feature_block, image_size, backbone, input (image | embedding), scaling (backbone |
    baseline | none), musicnn (layer, or None), about, caveats, model (backbone, feature,
    round, label)."""
    if Path(out_unfamiliarity).name != UNFAMILIARITY_FILE:
        raise ValueError(f"the bundle's score statistics must be named {UNFAMILIARITY_FILE}, "
                         f"not {Path(out_unfamiliarity).name}")
    chosen = choose_seed(metrics_jsons)
    metrics = read_json(metrics_jsons[chosen])
    preprocessing = preprocessing_record(settings, metrics, read_json(calibration_json),
                                         read_json(unfamiliarity_json))
    with atomic_path(out_model, suffix=".keras") as tmp:  # readable like any result file
        shutil.copyfile(model_kerases[chosen], tmp)
    with atomic_path(out_unfamiliarity, suffix=".npz") as tmp:
        shutil.copyfile(unfamiliarity_npz, tmp)
    preprocessing["fingerprint"] = fingerprint(out_model, preprocessing, [out_unfamiliarity])
    write_json(out_preprocessing, preprocessing)
    write_text_atomic(out_readme, bundle_readme(preprocessing))
    log(f"exported {settings['model']['label']} round {settings['model']['round']}, seed "
        f"{metrics['seed']} (best validation macro-F1 of {len(metrics_jsons)} seeds) to "
        f"{Path(out_model).parent}; temperature "
        f"{preprocessing['calibration']['temperature']:.3f}, unfamiliar above "
        f"{preprocessing['unfamiliarity']['threshold']:.3f} (validation tracks flagged: "
        f"{preprocessing['unfamiliarity']['valid_flagged_share']:.0%})")


# One job's entry point: the mark_chosen_bundle rule.
def mark_chosen_bundle(headline_json: str, preprocessing_json: str, out_json: str,
                       log=print) -> None:
    """results/export/chosen.json: which bundle holds the final model chosen on validation,
    so that `load_bundle("results/export")` and a reader find it without knowing its name."""
    headline = read_json(headline_json)
    model = read_json(preprocessing_json)["model"]
    chosen = (headline["backbone"], headline["feature"], int(headline["round"]))
    if (model["backbone"], model["feature"], int(model["round"])) != chosen:
        raise ValueError(f"{preprocessing_json} is the bundle of {model['label']} round "
                         f"{model['round']}, not of the chosen model {headline['model']}")
    bundle = Path(preprocessing_json).parent
    write_json(out_json, {
        "bundle": str(bundle.relative_to(Path(out_json).parent)),
        "model": headline["model"], "round": int(headline["round"]), "seed": model["seed"],
        "chosen_by": headline["chosen_by"], "valid_macro_f1": headline["valid_macro_f1"],
        "test_macro_f1": headline["test_macro_f1"],
    })
    log(f"the chosen model's bundle is {bundle}")

