"""Folds at the track level: cross-validated tuning objectives and k-fold screening.

A fold holds whole tracks (every segment of a track in its track's fold), stratified by
genre, seeded, so the same tracks give the same folds in every run.
"""

from __future__ import annotations

import numpy as np


def track_folds(clips: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each example: StratifiedKFold over the unique tracks (sorted,
    then shuffled with `seed`), so that a track's segments share its fold."""
    from sklearn.model_selection import StratifiedKFold

    clips, labels = np.asarray(clips), np.asarray(labels)
    tracks, first = np.unique(clips, return_index=True)
    track_labels = labels[first]
    counts = np.bincount(track_labels)
    smallest = counts[counts > 0].min()
    if smallest < k:
        raise ValueError(
            f"{k} folds need at least {k} tracks of every genre, but one has {smallest}: "
            "lower the number of folds (tuning.cv_folds, screening.folds)"
        )
    fold_of_track = np.empty(len(tracks), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(tracks)), track_labels)):
        fold_of_track[held] = fold
    return fold_of_track[np.searchsorted(tracks, clips)]
