"""Classify your own music: a final model exported as a self-contained bundle, and the
predictions of a bundle for any audio files.

A bundle (`results/export/<backbone>/<feature>/round_<n>/`) is `model.keras` (backbone +
head in one file, or for musicnn the head on its embedding), `preprocessing.json` (all that
turns audio into the model's input: audio settings, window length, feature and its
parameters, image size and input scaling, genres in label order, where the weights came
from, the caveats) and a README. `load_bundle(path).predict_file("song.mp3")` needs only this
package and the bundle: no Snakemake, no config; the workflow's `predict` rule calls the same
code, so both give the same numbers.

A track of any length is checked as corpus clips are (`genreflow.audio`), cut into windows
of the model's own clip or segment length (`genreflow.audio.track_windows`), each window is
turned into the model's input exactly as the training examples were, and the windows'
class probabilities are averaged, as the evaluation averages a track's segments.

`preprocessing.json` carries a fingerprint of itself and of model.keras: a bundle whose
preprocessing was edited after export (a feature the model was not trained on, say) is
refused instead of giving confident nonsense.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genreflow.io import read_json, write_csv, write_json, write_text_atomic

BUNDLE_FORMAT = 1
PREDICTION_COLUMNS = ("file", "duration_s", "windows", "genre", "probability")


class BundleError(ValueError):
    """A bundle that cannot be used as it is."""


# ----------------------------------------------------------------------------- export


def choose_seed(metrics_jsons: Sequence[str]) -> int:
    """Index of the seed whose model goes into the bundle: the best validation macro-F1,
    ties by the lower validation loss, then the lower seed (validation only, as ever)."""
    records = [read_json(path) for path in metrics_jsons]
    keys = [(-r["valid"]["tracks"]["macro_f1"], r["valid"]["tracks"]["loss"], r["seed"])
            for r in records]
    return int(min(range(len(records)), key=keys.__getitem__))


def _fingerprint(model_path: str | os.PathLike, preprocessing: Mapping) -> str:
    from genreflow.io import hash_file_into

    digest = hashlib.sha256()
    hash_file_into(digest, model_path)
    content = {key: value for key, value in preprocessing.items() if key != "fingerprint"}
    digest.update(json.dumps(content, sort_keys=True).encode())
    return digest.hexdigest()


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
        "```",
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
    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=Path(out_model).parent)
    os.close(fd)
    shutil.copyfile(model_kerases[chosen], tmp)
    os.replace(tmp, out_model)
    preprocessing = {
        "format": BUNDLE_FORMAT,
        **{key: settings[key] for key in (
            "genres", "audio", "window_seconds", "feature", "feature_block", "image_size",
            "backbone", "input", "scaling", "musicnn", "about", "caveats")},
        "model": {**settings["model"], "seed": int(metrics["seed"]),
                  "valid_macro_f1": metrics["valid"]["tracks"]["macro_f1"],
                  "test_macro_f1": metrics["test"]["tracks"]["macro_f1"]},
    }
    preprocessing["fingerprint"] = _fingerprint(out_model, preprocessing)
    write_json(out_preprocessing, preprocessing)
    write_text_atomic(out_readme, bundle_readme(preprocessing))
    log(f"exported {settings['model']['label']} round {settings['model']['round']}, seed "
        f"{metrics['seed']} (best validation macro-F1 of {len(metrics_jsons)} seeds) to "
        f"{Path(out_model).parent}")


# ---------------------------------------------------------------------------- bundles


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
        self._check_preprocessing()
        self._model = None

    @property
    def genres(self) -> list[str]:
        return list(self.preprocessing["genres"])

    def _check_preprocessing(self) -> None:
        from genreflow.features import FEATURES

        pre = self.preprocessing
        if pre.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{self.path}: bundle format {pre.get('format')!r}, this genreflow "
                              f"reads format {BUNDLE_FORMAT}; export it again")
        if pre["input"] == "image" and pre["feature"] not in FEATURES:
            raise BundleError(f"{self.path}/preprocessing.json: unknown feature {pre['feature']!r}")
        if _fingerprint(self.path / "model.keras", pre) != pre.get("fingerprint"):
            raise BundleError(
                f"{self.path}/preprocessing.json does not describe this model.keras: it was "
                f"edited after export (it now says feature {pre.get('feature')!r}, image size "
                f"{pre.get('image_size')}, windows of {pre.get('window_seconds')} s, ...), so the "
                "model would get input it was not trained on. Export the bundle again "
                "(`snakemake export`) instead of editing it."
            )

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
                           for window in windows])[..., None]
        if pre["scaling"] == "baseline":
            return images.astype(np.float32) / 255.0
        from genreflow.data import to_backbone_input
        from genreflow.models.backbones import backbone_spec

        return np.asarray(to_backbone_input(images, backbone_spec(pre["backbone"]).preprocess_input))

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


def load_bundle(path: str | os.PathLike) -> Bundle:
    """The bundle in folder `path` (checked: see the module docstring)."""
    return Bundle(path)


# --------------------------------------------------------------------------- workflow


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
    for note in bundle.preprocessing["caveats"]:
        log("WARNING: " + note)
    predictions, rejected = bundle.predict_files(list(paths), log)
    write_csv(out_predictions, predictions)
    write_csv(out_rejected, rejected)


def collect_predictions(
    shard_predictions: Sequence[str], shard_rejected: Sequence[str], not_audio: Sequence[Mapping],
    preprocessing_json: str, out_predictions: str, out_rejected: str, out_figure: str, log=print,
) -> None:
    """predictions.csv (best genre first per file), rejected.csv and a figure of each file's
    genre probabilities."""
    preprocessing = read_json(preprocessing_json)
    predictions = pd.concat([pd.read_csv(path) for path in shard_predictions], ignore_index=True)
    rejected = pd.concat([pd.read_csv(path, keep_default_na=False) for path in shard_rejected]
                         + [pd.DataFrame(list(not_audio), columns=["file", "reason"])],
                         ignore_index=True)
    predictions = predictions.sort_values("file", kind="mergesort")
    write_csv(out_predictions, predictions)
    write_csv(out_rejected, rejected.sort_values("file", kind="mergesort"))
    plot_predictions(predictions, preprocessing, out_figure)
    log(f"{len(predictions)} files classified, {len(rejected)} rejected")


def plot_predictions(predictions: pd.DataFrame, preprocessing: Mapping, out_png: str,
                     max_files: int = 60) -> None:
    """One horizontal stacked bar per file: its genre probabilities (the first `max_files`)."""
    from genreflow.plots.style import house_style, new_figure, placeholder_figure, save_figure

    genres = list(preprocessing["genres"])
    notes = preprocessing["caveats"]
    title = f"Predicted genres: {preprocessing['model']['label']}, round {preprocessing['model']['round']}"
    if predictions.empty:
        placeholder_figure("no file could be classified (see rejected.csv)", out_png, title, notes)
        return
    shown = predictions.head(max_files)
    import matplotlib

    colors = matplotlib.colormaps["tab10" if len(genres) <= 10 else "tab20"]
    with house_style():
        fig = new_figure((9.0, max(3.0, 2.0 + 0.25 * len(shown))))
        ax = fig.add_subplot()
        left = np.zeros(len(shown))
        positions = np.arange(len(shown))[::-1]
        for i, genre in enumerate(genres):
            values = shown[f"p_{genre}"].to_numpy(dtype=float)
            ax.barh(positions, values, left=left, color=colors(i % colors.N), label=genre, height=0.8)
            left += values
        labels = [f"{Path(f).name[:40]} ({g})" for f, g in zip(shown["file"], shown["genre"])]
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("genre probability (mean over the file's windows)")
        more = f" (first {max_files} of {len(predictions)})" if len(predictions) > max_files else ""
        ax.set_title(title + more)
        fig.legend(loc="outside right upper", fontsize=8)
        save_figure(fig, out_png, notes)
