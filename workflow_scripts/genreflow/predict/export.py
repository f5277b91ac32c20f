"""A final model's bundle (`export_bundle`, the `export_model` rule): the seed chosen on
validation, its model.keras, preprocessing.json (`genreflow.predict.bundle`) and a README."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from genreflow.io import atomic_path, read_json, write_json, write_text_atomic
from genreflow.predict.bundle import fingerprint, preprocessing_record


def choose_seed(metrics_jsons: Sequence[str]) -> int:
    """Index of the seed whose model goes into the bundle: the best validation macro-F1,
    ties by the lower validation loss, then the lower seed (validation only, as ever)."""
    records = [read_json(path) for path in metrics_jsons]
    keys = [(-r["valid"]["tracks"]["macro_f1"], r["valid"]["tracks"]["loss"], r["seed"])
            for r in records]
    return int(min(range(len(records)), key=keys.__getitem__))


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
        "is loaded once) and returns one row per usable file (the top genre, its probability, "
        "then one `p_<genre>` column per genre) and the files it refused with the reason.",
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


def export_bundle(
    metrics_jsons: Sequence[str],
    model_kerases: Sequence[str],
    settings: Mapping,
    out_model: str,
    out_preprocessing: str,
    out_readme: str,
    log=print,
) -> None:
    """Write the bundle of one final model: the seed chosen on validation (`choose_seed`).

    `settings` (the export rule's params): genres, audio, window_seconds, feature,
    feature_block, image_size, backbone, input (image | embedding), scaling (backbone |
    baseline | none), musicnn (layer, or None), about, caveats, model (backbone, feature,
    round, label)."""
    chosen = choose_seed(metrics_jsons)
    metrics = read_json(metrics_jsons[chosen])
    with atomic_path(out_model, suffix=".keras") as tmp:  # readable like any result file
        shutil.copyfile(model_kerases[chosen], tmp)
    preprocessing = preprocessing_record(settings, metrics)
    preprocessing["fingerprint"] = fingerprint(out_model, preprocessing)
    write_json(out_preprocessing, preprocessing)
    write_text_atomic(out_readme, bundle_readme(preprocessing))
    log(f"exported {settings['model']['label']} round {settings['model']['round']}, seed "
        f"{metrics['seed']} (best validation macro-F1 of {len(metrics_jsons)} seeds) to "
        f"{Path(out_model).parent}")


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

