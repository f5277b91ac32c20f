"""What the workflow's predict rules run: the user's music listed (`list_music`), one shard
of files through the bundle (`predict_shard`), the shards collected (`collect_predictions`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from genreflow.io import read_json, write_csv
from genreflow.predict import load_bundle


def list_music(root: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """The audio files under `root` (a folder, searched recursively, or one file), sorted,
    and every other file there with the reason it is left out (for rejected.csv)."""
    from genreflow.corpus import AUDIO_SUFFIXES

    root = Path(root)
    if root.is_file():
        return [str(root)], []
    audio, others = [], []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            suffix = os.path.splitext(name)[1].lower()
            if os.path.islink(path) and not os.path.exists(path):
                others.append({"file": path, "reason": f"broken symbolic link (to {os.readlink(path)})"})
            elif suffix in AUDIO_SUFFIXES:
                audio.append(path)
            else:
                others.append({"file": path, "reason": f"not an audio file name (suffix {suffix or 'none'})"})
    return sorted(audio), sorted(others, key=lambda row: row["file"])


def prediction_name(predict: Mapping) -> str:
    """results/predict/<name>/: predict.name, or the input folder's name."""
    import re

    name = predict["name"] or Path(os.path.normpath(predict["input"])).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "music"


def predict_shard(bundle_dir: str, paths: Sequence[str], out_predictions: str,
                  out_rejected: str, log=print) -> None:
    """The predict rule's job: one shard of the user's files through the bundle."""
    bundle = load_bundle(bundle_dir)
    model = bundle.preprocessing["model"]
    log(f"{len(paths)} files through {model['label']} round {model['round']} seed {model['seed']}")
    for note in [*bundle.preprocessing["caveats"], *bundle.notes]:
        log("WARNING: " + note)
    if bundle.flag_meaning:
        log(f"probabilities calibrated with temperature {bundle.temperature:.3f} (fitted on "
            f"validation); {bundle.flag_meaning}")
    predictions, rejected = bundle.predict_files(list(paths), log)
    write_csv(out_predictions, predictions)
    write_csv(out_rejected, rejected)


def collect_predictions(
    shard_predictions: Sequence[str], shard_rejected: Sequence[str], not_audio: Sequence[Mapping],
    preprocessing_json: str, out_predictions: str, out_rejected: str, out_figure: str, log=print,
) -> None:
    """predictions.csv (per file its three likeliest genres, the unfamiliar flag and score,
    every genre's probability), rejected.csv and a figure of each file's genre probabilities
    with the flagged files marked."""
    preprocessing = read_json(preprocessing_json)
    predictions = pd.concat([pd.read_csv(path) for path in shard_predictions], ignore_index=True)
    rejected = pd.concat([pd.read_csv(path, keep_default_na=False) for path in shard_rejected]
                         + [pd.DataFrame(list(not_audio), columns=["file", "reason"])],
                         ignore_index=True)
    predictions = predictions.sort_values("file", kind="mergesort")
    write_csv(out_predictions, predictions)
    write_csv(out_rejected, rejected.sort_values("file", kind="mergesort"))
    from genreflow.plots.predictions import plot_predictions

    plot_predictions(predictions, preprocessing, out_figure)
    log(f"{len(predictions)} files classified, {len(rejected)} rejected")
    if "unfamiliarity" in preprocessing:
        flagged = predictions["unfamiliar"].map(lambda v: str(v).lower() == "true")
        log(f"{int(flagged.sum())} of {len(predictions)} files flagged unfamiliar: "
            + preprocessing["unfamiliarity"]["meaning"])
    else:
        from genreflow.predict.bundle import FORMAT_1_NOTE

        log("WARNING: " + FORMAT_1_NOTE)
