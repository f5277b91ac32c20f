"""A round's study in its journal: its name's fingerprint, and the claims that let several
workers together run exactly n_trials (`claim_trial`, `round_trials`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState, create_trial

from genreflow.config import sorted_block
from genreflow.io import hash_file_into


# User attribute of every trial, saying whether it holds one of the round's n_trials slots.
CLAIM = "claim"
HELD, INTERRUPTED, CRASHED, SURPLUS = "held", "interrupted", "crashed", "surplus"


def study_fingerprint(
    definition: Mapping,
    files: Sequence[str | os.PathLike] = (),
    npz_files: Sequence[str | os.PathLike] = (),
) -> str:
    """Hash of a round's definition and the content of its data.

    .npz files are hashed by their arrays (the zip container holds timestamps). Listed
    files are hashed by content, and for a CSV with an `image` column (a feature index) so
    are the images it lists: their paths stay the same when a feature block changes.
    """
    digest = hashlib.sha256(json.dumps(sorted_block(dict(definition)), sort_keys=True).encode())
    for path in files:
        digest.update(os.fspath(path).encode())
        hash_file_into(digest, path)
        if str(path).endswith(".csv"):
            frame = pd.read_csv(path)
            for image in frame.get("image", ()):
                hash_file_into(digest, image)
    for path in npz_files:
        with np.load(path, allow_pickle=False) as arrays:
            for key in sorted(arrays.files):
                digest.update(key.encode())
                digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def holds_slot(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards n_trials: it ran or runs, and its worker is alive."""
    return trial.user_attrs.get(CLAIM, HELD) == HELD


def _trial_id(study: optuna.Study, number: int) -> int:
    storage = study._storage
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def release_claim(study: optuna.Study, number: int, reason: str) -> None:
    """Mark a trial failed and not counted. The attribute goes first: a worker killed in
    between leaves it RUNNING with the attribute, and its next incarnation finishes it."""
    trial_id = _trial_id(study, number)
    study._storage.set_trial_user_attr(trial_id, CLAIM, reason)
    try:
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def release_dead_claims(study: optuna.Study, worker: int, workers: int) -> list[int]:
    """Fail (as interrupted, not counted) the RUNNING trials of this worker's killed
    previous incarnation, and those of workers that no longer exist (worker >= workers).

    Only this worker's own: another worker's RUNNING trial may be live right now. One
    worker id is one Snakemake job, which runs at most once at a time.
    """
    released = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner == worker or (isinstance(owner, int) and owner >= workers):
            release_claim(study, trial.number, INTERRUPTED)
            released.append(trial.number)
    return released


def claim_trial(
    study: optuna.Study, n_trials: int, worker: int, incarnation: str
) -> optuna.Trial | None:
    """A new trial holding one of the study's n_trials slots, or None when all are taken.

    The trial is created RUNNING and tagged with its worker in one journal record (so a
    kill can never leave an untagged trial), then keeps its slot only if fewer than
    n_trials slot-holding trials have a smaller number. Trial numbers follow the journal's
    order, so of any n_trials + 1 concurrent claims the last one always sees the others
    and gives its slot back ("surplus", failed, not counted): never more than n_trials.
    """
    if sum(holds_slot(t) for t in study.get_trials(deepcopy=False)) >= n_trials:
        return None
    storage = study._storage
    template = create_trial(
        state=TrialState.RUNNING,
        user_attrs={CLAIM: HELD, "worker": worker, "incarnation": incarnation},
    )
    trial_id = storage.create_new_trial(
        storage.get_study_id_from_name(study.study_name), template_trial=template
    )
    number = storage.get_trial(trial_id).number
    ahead = [t for t in study.get_trials(deepcopy=False) if t.number < number and holds_slot(t)]
    if len(ahead) >= n_trials:
        release_claim(study, number, SURPLUS)
        return None
    return optuna.Trial(study, trial_id)


def round_trials(study: optuna.Study, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """The round's counted trials: the first n_trials slot holders, by trial number."""
    return [t for t in study.get_trials(deepcopy=False) if holds_slot(t)][:n_trials]


def existing_trials(storage, study_name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))

