"""Augmented training views as the models see them: which track each view belongs to, and
which views a model may train on (training.augment; the views themselves are drawn by
`genreflow.augment`).

A view is a perturbed copy of one track; its id is `<family>/<view>/<track>` (`view_clip`),
so that the images, indexes and embedding caches of the views never collide with the
tracks' own and every view row says whose copy it is (`track_of`). A view belongs to its
track's split and, under cross-validation, to its track's fold: a model trains on the views
of its training tracks only (`training_views`), and validation and test rows stay clean.
`check_view_tracks` refuses views of test tracks (or of no split) outright: such a cache
was made for another split.

numpy and pandas only (no TensorFlow), so that the view-drawing jobs share the ids.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from genreflow.hyperparameters import AUGMENTATIONS

# What the hyperparameter `augment` may say: no views, or the views of every family in
# training.augment.families (drawn from the audio).
NO_AUGMENTATION, AUDIO_VIEWS = AUGMENTATIONS


def view_clip(family: str, view: int, clip: str) -> str:
    """The id of view number `view` (0..K-1) of track `clip`, drawn from `family`."""
    return f"{family}/{int(view)}/{clip}"


def split_view_clip(name: str) -> tuple[str, int, str]:
    """(family, view, track) of a `view_clip` id."""
    parts = str(name).split("/", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise ValueError(f"{name!r} is not a <family>/<view>/<clip> view id")
    return parts[0], int(parts[1]), parts[2]


def track_of(view_ids) -> np.ndarray:
    """The track (clip id of the corpus) of each view id."""
    return np.array([split_view_clip(name)[2] for name in view_ids], dtype=object).astype(str)


def uses_views(params: Mapping) -> bool:
    """Whether a model of `params` trains on augmented views (`augment` other than none;
    a best_trial.json older than the hyperparameter has none)."""
    return params.get("augment", NO_AUGMENTATION) != NO_AUGMENTATION


def training_views(view_tracks: np.ndarray, training_tracks: Collection[str]) -> np.ndarray:
    """Row numbers of the views whose track is one of `training_tracks`: what a model
    trained on those tracks may add (a validation fold's or split's views never)."""
    return np.flatnonzero(np.isin(np.asarray(view_tracks, dtype=str),
                                  np.asarray(list(training_tracks), dtype=str)))


def check_view_tracks(view_tracks: np.ndarray, manifests: Mapping[str, str], source: str
                      ) -> None:
    """Every view must be a copy of a train or validation track: a view of a test track
    (or of a track of no split) means `source` was made for another split or corpus."""
    tracks = {split: set(pd.read_csv(path, dtype={"clip": str})["clip"])
              for split, path in manifests.items()}
    test = sorted(set(view_tracks) & tracks.get("test", set()))
    unknown = sorted(set(view_tracks) - set().union(*tracks.values()))
    if test or unknown:
        what = (f"views of test tracks {test[:5]}" if test else
                f"views of tracks in no split {unknown[:5]}")
        raise ValueError(f"{source} holds {what}: it was made for another split or corpus; "
                         "rerun perturb_training_clips (snakemake reruns it when the split "
                         "changes)")


def check_training_rows(training_tracks: np.ndarray, held_tracks: Collection[str],
                        what: str) -> None:
    """No row a model trains on may be a copy (or a segment) of a track it is validated or
    tested on: the guard every augmented model's training rows pass."""
    leaked = sorted(str(track) for track in
                    set(np.asarray(training_tracks, dtype=str)) & set(held_tracks))
    if leaked:
        raise RuntimeError(f"{what}: training rows of held-out tracks {leaked[:5]}; views "
                           "must stay in their track's split and fold")
