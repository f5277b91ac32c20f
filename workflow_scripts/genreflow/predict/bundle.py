"""A bundle's contract and a loaded bundle.

`preprocessing.json` is everything that turns audio into the model's input and says what
the model is: `bundle_settings` builds what the export rule knows from the config,
`preprocessing_record` adds the exported seed, its temperature, what its unfamiliar score
is and the format, `fingerprint` binds it to model.keras and unfamiliarity.npz (the
score's statistics), and `Bundle` checks all of it before it predicts anything.

Format 2 (this one) carries the temperature that calibrates the probabilities and the
unfamiliar score; a format 1 bundle (exported before them) still loads and predicts, with
temperature 1 and no flag, and says so.
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

BUNDLE_FORMAT = 2
READABLE_FORMATS = (1, 2)
UNFAMILIARITY_FILE = "unfamiliarity.npz"
PREDICTION_COLUMNS = ("file", "duration_s", "windows", "genre", "probability", "second_genre",
                      "second_probability", "third_genre", "third_probability", "unfamiliar",
                      "unfamiliarity")
# What a flag means and does not, in the words of the logs, the bundle's README and the
# figure's caption.
FLAG_MEANING = (
    "unfamiliar = the file's representation in the model lies farther from the training "
    "songs of every genre than {share} of held-out (validation) songs do: the model is "
    "classifying something unlike what it was trained on (noise, speech, a recording in "
    "another room or chain, a genre it does not know), so its genre is a guess about the "
    "unknown. It does not say that the genre is wrong, nor that an unflagged prediction is "
    "right; about {rate} of songs like the training ones are flagged too."
)
FORMAT_1_NOTE = (
    "this bundle was exported before genreflow calibrated probabilities and flagged "
    "unfamiliar input (bundle format 1): its probabilities are the model's own (temperature "
    "1, uncalibrated) and no file is flagged unfamiliar; export it again (`snakemake export`) "
    "to get both"
)
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


def preprocessing_record(settings: Mapping, metrics: Mapping, calibration: Mapping,
                         unfamiliarity: Mapping) -> dict:
    """preprocessing.json without its fingerprint: the format, `settings`
    (`bundle_settings`), the exported seed's model record (`metrics`: its metrics.json), its
    temperature (`calibration`: the model's calibration.json) and what its unfamiliar score
    is (`unfamiliarity`: the model's unfamiliarity.json, fitted for the same seed)."""
    seed = int(metrics["seed"])
    if int(unfamiliarity["seed"]) != seed:
        raise ValueError(f"the unfamiliar score was fitted for seed {unfamiliarity['seed']}, "
                         f"the bundle exports seed {seed}")
    seeds = {int(record["seed"]): record for record in calibration["per_seed"]}
    if seed not in seeds:
        raise ValueError(f"calibration.json has no temperature for seed {seed} "
                         f"(it has seeds {sorted(seeds)})")
    calibrated = seeds[seed]
    return {
        "format": BUNDLE_FORMAT,
        **{key: settings[key] for key in SETTING_KEYS},
        "model": {**settings["model"], "seed": seed,
                  "valid_macro_f1": metrics["valid"]["tracks"]["macro_f1"],
                  "test_macro_f1": metrics["test"]["tracks"]["macro_f1"]},
        "calibration": {
            "temperature": calibrated["temperature"],
            "method": calibration["method"],
            "fitted_on": f"{calibrated['valid']['n_tracks']} validation tracks",
            "bins": calibration["bins"],
            "test_ece_before": calibrated["test"]["ece_before"],
            "test_ece_after": calibrated["test"]["ece_after"],
        },
        "unfamiliarity": {
            **{key: unfamiliarity[key] for key in ("score", "representation", "features",
                                                   "aggregation", "threshold", "rate")},
            "file": UNFAMILIARITY_FILE,
            "valid_flagged_share": unfamiliarity["valid"]["flagged_share"],
            "test_flagged_share": unfamiliarity["test"]["flagged_share"],
            "meaning": FLAG_MEANING.format(share=f"{1 - unfamiliarity['rate']:.0%}",
                                           rate=f"{unfamiliarity['rate']:.0%}"),
        },
    }


def fingerprint(model_path: str | os.PathLike, preprocessing: Mapping,
                extra_files: Sequence[str | os.PathLike] = ()) -> str:
    """sha256 of model.keras, of `extra_files` (a format 2 bundle's unfamiliarity.npz) and of
    preprocessing.json's content without the fingerprint."""
    from genreflow.io import hash_file_into

    digest = hashlib.sha256()
    hash_file_into(digest, model_path)
    for path in extra_files:
        hash_file_into(digest, path)
    content = {key: value for key, value in preprocessing.items() if key != "fingerprint"}
    digest.update(json.dumps(content, sort_keys=True).encode())
    return digest.hexdigest()


def fingerprinted_files(folder: Path, pre: Mapping) -> list[Path]:
    """The files besides model.keras that a bundle's fingerprint covers (by its format)."""
    return [] if pre.get("format") == 1 else [folder / UNFAMILIARITY_FILE]


def check_preprocessing(folder: Path, pre: Mapping) -> None:
    """Refuse a preprocessing.json that this genreflow cannot read, or that does not
    describe the model.keras (and unfamiliarity.npz) beside it."""
    from genreflow.names import FEATURES

    if pre.get("format") not in READABLE_FORMATS:
        raise BundleError(f"{folder}: bundle format {pre.get('format')!r}, this genreflow "
                          f"reads formats {', '.join(map(str, READABLE_FORMATS))}; export it again")
    if pre["input"] == "image" and pre["feature"] not in FEATURES:
        raise BundleError(f"{folder}/preprocessing.json: unknown feature {pre['feature']!r}")
    extra = fingerprinted_files(folder, pre)
    missing = [path.name for path in extra if not path.is_file()]
    if missing:
        raise BundleError(f"{folder} is not a complete genreflow bundle: {', '.join(missing)} "
                          "is missing; export it again (`snakemake export`)")
    if pre.get("format") != 1 and not {"calibration", "unfamiliarity"} <= set(pre):
        raise BundleError(f"{folder}/preprocessing.json (format {pre['format']}) lacks its "
                          "calibration or unfamiliarity; export it again")
    if fingerprint(folder / "model.keras", pre, extra) != pre.get("fingerprint"):
        raise BundleError(
            f"{folder}/preprocessing.json does not describe this model.keras"
            f"{' and ' + UNFAMILIARITY_FILE if extra else ''}: it was "
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
        self._represent = None
        # what a reader must know about these predictions beyond the caveats
        self.notes: list[str] = []
        if self.preprocessing["format"] == 1:
            import warnings

            self.temperature, self.unfamiliarity = 1.0, None
            self.notes.append(f"{self.path}: {FORMAT_1_NOTE}")
            warnings.warn(self.notes[-1], UserWarning, stacklevel=2)
        else:
            from genreflow.models.unfamiliar import Unfamiliarity

            self.temperature = float(self.preprocessing["calibration"]["temperature"])
            self.unfamiliarity = Unfamiliarity.load(self.path / UNFAMILIARITY_FILE)

    @property
    def flag_meaning(self) -> str | None:
        """What the unfamiliar flag means and does not (None: this bundle has none)."""
        if self.unfamiliarity is None:
            return None
        return self.preprocessing["unfamiliarity"]["meaning"]

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

    @property
    def represent(self):
        """The model's probabilities and representations in one forward pass
        (`genreflow.models.unfamiliar.Representations`)."""
        if self._represent is None:
            from genreflow.models.unfamiliar import Representations, representation_name

            fitted = (self.preprocessing.get("unfamiliarity") or {}).get("representation")
            if fitted is not None and fitted != representation_name(self.model):
                raise BundleError(
                    f"{self.path}: its unfamiliar score was fitted on {fitted!r}, this genreflow "
                    f"scores {representation_name(self.model)!r}; export the bundle again "
                    "(`snakemake export`)")
            self._represent = Representations(self.model)
        return self._represent

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
        then p_<genre> per genre), and the files that cannot be used with the reason.

        A file's probabilities are the mean of its windows', calibrated by the bundle's
        temperature; its unfamiliarity is the mean of its windows' scores in units of the
        threshold (above 1: flagged unfamiliar). A format 1 bundle leaves both flag columns
        empty."""
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
            row = self._file_row(path, inputs, duration)
            rows.append(row)
            log(_file_line(row))
        columns = [*PREDICTION_COLUMNS, *(f"p_{genre}" for genre in self.genres)]
        return (pd.DataFrame(rows, columns=columns),
                pd.DataFrame(rejected, columns=["file", "reason"]))

    def _file_row(self, path: str, inputs, duration: float) -> dict:
        """One file's predictions.csv row, from its windows' model inputs."""
        from genreflow.evaluation.calibration import temperature_scaled

        window_probabilities, representations = self.represent(inputs)
        probabilities = temperature_scaled(window_probabilities.mean(axis=0), self.temperature)
        order = np.argsort(-probabilities, kind="stable")
        row = {"file": path, "duration_s": duration, "windows": len(window_probabilities)}
        for rank, (genre, probability) in enumerate((("genre", "probability"),
                                                     ("second_genre", "second_probability"),
                                                     ("third_genre", "third_probability"))):
            known = rank < len(order)
            row[genre] = self.genres[order[rank]] if known else None
            row[probability] = float(probabilities[order[rank]]) if known else None
        if self.unfamiliarity is None:
            row["unfamiliar"], row["unfamiliarity"] = None, None
        else:
            score = float(self.unfamiliarity.window_scores(representations).mean())
            row["unfamiliar"] = bool(self.unfamiliarity.flagged(score))
            row["unfamiliarity"] = self.unfamiliarity.relative(score)
        row.update({f"p_{g}": float(p) for g, p in zip(self.genres, probabilities)})
        return row

    def predict_file(self, path: str | os.PathLike) -> dict:
        """{"genre", "probability", "top" (the three likeliest genres: [(genre, p), ...]),
        "probabilities": {genre: p}, "unfamiliar" (True/False, None for a format 1 bundle),
        "unfamiliarity" (the file's score in units of the threshold), "windows",
        "duration_s"} of one file; raises genreflow.audio.BadClip with the reason for an
        unusable file."""
        from genreflow.audio import BadClip

        predictions, rejected = self.predict_files([os.fspath(path)], log=lambda message: None)
        if len(rejected):
            raise BadClip(rejected.iloc[0]["reason"])
        row = predictions.iloc[0]
        top = [(row[g], float(row[p])) for g, p in (("genre", "probability"),
                                                     ("second_genre", "second_probability"),
                                                     ("third_genre", "third_probability"))
               if isinstance(row[g], str)]
        flagged = None if self.unfamiliarity is None else bool(row["unfamiliar"])
        return {"genre": row["genre"], "probability": float(row["probability"]), "top": top,
                "probabilities": {g: float(row[f"p_{g}"]) for g in self.genres},
                "unfamiliar": flagged,
                "unfamiliarity": None if flagged is None else float(row["unfamiliarity"]),
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


def _file_line(row: Mapping) -> str:
    """The log's line of one classified file."""
    others = ", ".join(f"{row[g]} {row[p]:.2f}" for g, p in (("second_genre", "second_probability"),
                                                             ("third_genre", "third_probability"))
                       if isinstance(row[g], str))
    flag = ""
    if row["unfamiliar"] is not None:
        flag = (f"; UNFAMILIAR ({row['unfamiliarity']:.1f} x the threshold)" if row["unfamiliar"]
                else f"; familiar ({row['unfamiliarity']:.2f} x the threshold)")
    return (f"{row['file']}: {row['genre']} ({row['probability']:.2f}"
            f"{'; then ' + others if others else ''}), {row['windows']} windows{flag}")


def _reason(error: Exception) -> str:
    from genreflow.audio import BadClip

    if isinstance(error, BadClip):
        return str(error)
    return f"{type(error).__name__}: {error}"
