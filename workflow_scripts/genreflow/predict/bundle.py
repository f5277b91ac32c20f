"""A bundle's contract and a loaded bundle.

`preprocessing.json` is everything that turns audio into the model's input and says what
the model is: `bundle_settings` builds what the export rule knows from the config,
`preprocessing_record` adds the exported seed and the format, `fingerprint` binds it to
model.keras, and `Bundle` checks all of it before it predicts anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genreflow.io import read_json, write_json
from genreflow.names import BASELINE, is_audio_backbone, model_label

BUNDLE_FORMAT = 1
PREDICTION_COLUMNS = ("file", "duration_s", "windows", "genre", "probability")
# The keys of preprocessing.json that come from the workflow's settings (`bundle_settings`).
SETTING_KEYS = ("genres", "audio", "window_seconds", "feature", "feature_block", "image_size",
                "backbone", "input", "scaling", "musicnn", "about", "caveats")


class BundleError(ValueError):
    """A bundle that cannot be used as it is."""


def bundle_settings(
    backbone: str,
    feature: str,
    round_number: int,
    genres: Sequence[str],
    audio: Mapping,
    window_seconds: float,
    feature_block: Mapping | None,
    image_size: int,
    musicnn: Mapping,
    about: Mapping,
    caveats: Sequence[str],
) -> dict:
    """What preprocessing.json says turns audio into the (backbone, feature, round) model's
    input, from the workflow's settings: `audio` (the clips' settings), `window_seconds`
    (the model's own clip or segment length), the feature's parameter block and the image
    size (image models), musicnn's layer and checkpoints (audio backbones), and what the
    model is (`about`, `caveats`). Key-sorted: it is the export rule's params."""
    from genreflow.config import sorted_block

    audio_backbone = is_audio_backbone(backbone)
    return sorted_block(
        {
            "genres": list(genres),
            "audio": audio,
            "window_seconds": window_seconds,
            "feature": feature,
            "feature_block": None if audio_backbone else feature_block,
            "image_size": None if audio_backbone else image_size,
            "backbone": backbone,
            "input": "embedding" if audio_backbone else "image",
            "scaling": ("none" if audio_backbone
                        else "baseline" if backbone == BASELINE else "backbone"),
            "musicnn": ({"layer": musicnn["layer"], "checkpoints": musicnn["checkpoints"]}
                        if audio_backbone else None),
            "about": about,
            "caveats": caveats,
            "model": {
                "backbone": backbone,
                "feature": feature,
                "round": int(round_number),
                "label": model_label(backbone, feature),
            },
        }
    )


def preprocessing_record(settings: Mapping, metrics: Mapping) -> dict:
    """preprocessing.json without its fingerprint: the format, `settings`
    (`bundle_settings`) and the exported seed's model record (`metrics`: its metrics.json)."""
    return {
        "format": BUNDLE_FORMAT,
        **{key: settings[key] for key in SETTING_KEYS},
        "model": {**settings["model"], "seed": int(metrics["seed"]),
                  "valid_macro_f1": metrics["valid"]["tracks"]["macro_f1"],
                  "test_macro_f1": metrics["test"]["tracks"]["macro_f1"]},
    }


def fingerprint(model_path: str | os.PathLike, preprocessing: Mapping) -> str:
    from genreflow.io import hash_file_into

    digest = hashlib.sha256()
    hash_file_into(digest, model_path)
    content = {key: value for key, value in preprocessing.items() if key != "fingerprint"}
    digest.update(json.dumps(content, sort_keys=True).encode())
    return digest.hexdigest()




def check_preprocessing(folder: Path, pre: Mapping) -> None:
    """Refuse a preprocessing.json that this genreflow cannot read, or that does not
    describe the model.keras beside it."""
    from genreflow.names import FEATURES

    if pre.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{folder}: bundle format {pre.get('format')!r}, this genreflow "
                          f"reads format {BUNDLE_FORMAT}; export it again")
    if pre["input"] == "image" and pre["feature"] not in FEATURES:
        raise BundleError(f"{folder}/preprocessing.json: unknown feature {pre['feature']!r}")
    if fingerprint(folder / "model.keras", pre) != pre.get("fingerprint"):
        raise BundleError(
            f"{folder}/preprocessing.json does not describe this model.keras: it was "
            f"edited after export (it now says feature {pre.get('feature')!r}, image size "
            f"{pre.get('image_size')}, windows of {pre.get('window_seconds')} s, ...), so the "
            "model would get input it was not trained on. Export the bundle again "
            "(`snakemake export`) instead of editing it."
        )


@dataclass
class Rejected(Exception):
    path: str
    reason: str


class Bundle:
    """A loaded bundle; `predict_file` and `predict_files` classify audio files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for name in ("model.keras", "preprocessing.json"):
            if not (self.path / name).is_file():
                raise BundleError(f"{self.path} is not a genreflow bundle: {name} is missing")
        self.preprocessing = read_json(self.path / "preprocessing.json")
        check_preprocessing(self.path, self.preprocessing)
        self._model = None

    @property
    def genres(self) -> list[str]:
        return list(self.preprocessing["genres"])

    @property
    def model(self):
        if self._model is None:
            import keras

            import genreflow.models.backbones  # noqa: F401 (registers InferenceMode for loading)

            self._model = keras.saving.load_model(self.path / "model.keras", compile=False)
        return self._model

    # -------------------------------------------------------------- audio to inputs
    def _audio_settings(self):
        from genreflow.audio import AudioSettings

        return AudioSettings.from_config(self.preprocessing["audio"])

    def windows(self, path: str | os.PathLike) -> tuple[np.ndarray, float]:
        """The file's windows (n, samples) at the model's rate, and its duration; raises
        BadClip (the corpus stage's checks) for a file that cannot be used."""
        from genreflow.audio import BadClip, load_track, track_windows

        settings = self._audio_settings()
        track, info = load_track(path, settings)
        bounds = track_windows(track.size, settings.sample_rate,
                               self.preprocessing["window_seconds"], settings.min_seconds)
        if not bounds:
            raise BadClip("too short for one window")
        length = bounds[0][1] - bounds[0][0]
        padded = np.pad(track, (0, max(0, length - track.size)))
        return np.stack([padded[start:stop] for start, stop in bounds]), info.source_seconds

    def image_inputs(self, windows: np.ndarray):
        """The model's input for each window, as the training images were made and read:
        the feature's 8-bit image (genreflow.features), then the backbone's preprocessing
        of its gray channel repeated to RGB, or one channel in 0..1 for the baseline CNN."""
        from genreflow.features import FeatureComputer, clip_images

        pre = self.preprocessing
        computer = FeatureComputer(pre["audio"]["sample_rate"], {pre["feature"]: pre["feature_block"]})
        images = np.stack([clip_images(computer, window, pre["image_size"])[pre["feature"]]
                           for window in windows])
        from genreflow.models.data import image_model_input

        return image_model_input(images, pre["backbone"])

    # -------------------------------------------------------------------- predicting
    def predict_files(self, paths: Sequence[str], log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(predictions, rejected) of `paths`: one row per usable file (PREDICTION_COLUMNS,
        then p_<genre> per genre), and the files that cannot be used with the reason."""
        from genreflow.models.train import predict_proba

        if self.preprocessing["input"] == "embedding":
            per_file = self._musicnn_embeddings(paths, log)
        else:
            per_file = {}
            for path in paths:
                try:
                    windows, duration = self.windows(path)
                    per_file[path] = (self.image_inputs(windows), duration)
                except Exception as error:  # noqa: BLE001 (BadClip, with its reason)
                    per_file[path] = Rejected(path, _reason(error))
        rows, rejected = [], []
        for path in paths:
            item = per_file[path]
            if isinstance(item, Rejected):
                rejected.append({"file": path, "reason": item.reason})
                log(f"rejected {path}: {item.reason}")
                continue
            inputs, duration = item
            probabilities = predict_proba(self.model, inputs).mean(axis=0)
            top = int(np.argmax(probabilities))
            rows.append({"file": path, "duration_s": duration, "windows": len(inputs),
                         "genre": self.genres[top], "probability": float(probabilities[top]),
                         **{f"p_{g}": float(p) for g, p in zip(self.genres, probabilities)}})
            log(f"{path}: {self.genres[top]} ({probabilities[top]:.2f}, {len(inputs)} windows)")
        columns = [*PREDICTION_COLUMNS, *(f"p_{genre}" for genre in self.genres)]
        return (pd.DataFrame(rows, columns=columns),
                pd.DataFrame(rejected, columns=["file", "reason"]))

    def predict_file(self, path: str | os.PathLike) -> dict:
        """{"genre", "probability", "probabilities": {genre: p}, "windows", "duration_s"} of
        one file; raises genreflow.audio.BadClip with the reason for an unusable file."""
        from genreflow.audio import BadClip

        predictions, rejected = self.predict_files([os.fspath(path)], log=lambda message: None)
        if len(rejected):
            raise BadClip(rejected.iloc[0]["reason"])
        row = predictions.iloc[0]
        return {"genre": row["genre"], "probability": float(row["probability"]),
                "probabilities": {g: float(row[f"p_{g}"]) for g in self.genres},
                "windows": int(row["windows"]), "duration_s": float(row["duration_s"])}

    def _musicnn_embeddings(self, paths: Sequence[str], log) -> dict:
        """musicnn's embedding of every window of `paths`, computed in a process of its own
        (TF1 graph code on legacy tf-keras cannot share one with Keras 3)."""
        pre = self.preprocessing
        with tempfile.TemporaryDirectory(prefix="genreflow-musicnn-") as folder:
            request = Path(folder) / "request.json"
            out = Path(folder) / "embeddings.npz"
            write_json(request, {"backbone": pre["backbone"], "layer": pre["musicnn"]["layer"],
                                 "checkpoints": pre["musicnn"].get("checkpoints"),
                                 "audio": pre["audio"], "window_seconds": pre["window_seconds"],
                                 "paths": list(paths)})
            env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
            done = subprocess.run([sys.executable, "-m", "genreflow.audio_embeddings",
                                   str(request), str(out)], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"musicnn embedding process failed:\n{done.stderr[-3000:]}")
            with np.load(out, allow_pickle=False) as result:
                embeddings, owner = result["embeddings"], result["owner"]
                durations, reasons = result["duration_s"], result["reason"]
        per_file = {}
        for i, path in enumerate(paths):
            if reasons[i]:
                per_file[path] = Rejected(path, str(reasons[i]))
            else:
                per_file[path] = (embeddings[owner == i], float(durations[i]))
        return per_file


def _reason(error: Exception) -> str:
    from genreflow.audio import BadClip

    if isinstance(error, BadClip):
        return str(error)
    return f"{type(error).__name__}: {error}"
