"""Classify your own music: a final model exported as a self-contained bundle, and the
predictions of a bundle for any audio files.

A bundle (`results/export/<backbone>/<feature>/round_<n>/`) is `model.keras` (backbone +
head in one file, or for musicnn the head on its embedding), `unfamiliarity.npz` (what the
unfamiliar score needs), `preprocessing.json` (all that turns audio into the model's input:
audio settings, window length, feature and its parameters, image size and input scaling,
genres in label order, where the weights came from, the caveats, the temperature, what the
score is) and a README. `load_bundle(path).predict_file("song.mp3")` needs only this package
and the bundle: no Snakemake, no config; the workflow's `predict` rule calls the same code,
so both give the same numbers.

- `bundle`: the bundle's contract (what preprocessing.json holds, how it is built and
  checked) and a loaded bundle (`Bundle`), which classifies files;
- `export`: writing a final model's bundle (the `export_model` rule);
- `workflow`: what the `predict` rules run (listing the user's music, one shard's
  predictions, collecting them); the figure is `genreflow.plots.predictions`.

A track of any length is checked as corpus clips are (`genreflow.audio`), cut into windows
of the model's own clip or segment length (`genreflow.audio.track_windows`), each window is
turned into the model's input exactly as the training examples were, and the windows'
class probabilities are averaged, as the evaluation averages a track's segments.

The mean probabilities are calibrated by the model's temperature (fitted on validation),
and each file gets an "unfamiliar" flag and score: how far its windows lie, in the model's
own representation, from the training songs (`genreflow.models.unfamiliar`).

`preprocessing.json` carries a fingerprint of itself, of model.keras and of the score's
statistics (unfamiliarity.npz): a bundle whose preprocessing was edited after export (a
feature the model was not trained on, say) is refused instead of giving confident nonsense.
A bundle exported before calibration (format 1) still loads, with temperature 1, no flag
and a warning.
"""

from __future__ import annotations

import os


def load_bundle(path: str | os.PathLike):
    """The bundle in folder `path` (a `genreflow.predict.bundle.Bundle`, checked: see the
    package's docstring), or, for the export folder (`results/export`), the bundle of the
    final model chosen on validation (its chosen.json says which). The public entry point:
    `load_bundle("results/export").predict_file("song.mp3")`."""
    from pathlib import Path

    from genreflow.io import read_json
    from genreflow.predict.bundle import Bundle

    folder = Path(path)
    pointer = folder / "chosen.json"
    if not (folder / "model.keras").exists() and pointer.is_file():
        folder = folder / read_json(pointer)["bundle"]
    return Bundle(folder)
