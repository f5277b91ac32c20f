"""A round's results from its study: best_trial.json (keys: see `genreflow.tuning`) and
trials.csv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import optuna
import pandas as pd
from optuna.trial import TrialState

from genreflow.io import read_json, write_csv, write_json
from genreflow.journal import journal_storage
from genreflow.names import model_kind
from genreflow.tuning.space import STEP_VALUED, RoundPlan, direction
from genreflow.tuning.study import CLAIM, CRASHED, INTERRUPTED, round_trials

# ------------------------------------------------------------------------------ collect


def _duration(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 3)
    return None


def trials_frame(study: optuna.Study, n_trials: int) -> pd.DataFrame:
    """One row per trial that ran (claims given back unrun are left out)."""
    counted = {t.number for t in round_trials(study, n_trials)}
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number in counted or t.user_attrs.get(CLAIM) in (INTERRUPTED, CRASHED)
    ]
    names = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        note = t.user_attrs.get("note", "")
        if t.user_attrs.get(CLAIM) == INTERRUPTED and not note:
            note = "interrupted: its worker was killed"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{name: t.params.get(name) for name in names},
                "worker": t.user_attrs.get("worker"),
                "counted": t.number in counted,
                "epochs_run": t.user_attrs.get("epochs_run"),
                "best_epoch": t.user_attrs.get("best_epoch"),
                "valid_loss": t.user_attrs.get("valid_loss"),
                "fold_values": " ".join(f"{v:.4f}" for v in t.user_attrs.get("fold_values", [])),
                "note": note,
                "duration_s": _duration(t),
            }
        )
    columns = [
        "number",
        "state",
        "value",
        *names,
        "worker",
        "counted",
        "epochs_run",
        "best_epoch",
        "valid_loss",
        "fold_values",
        "note",
        "duration_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def best_trial(complete: Sequence, objective: str):
    """(best trial, how many completed trials share its value, how the tie was broken).

    A loss is minimised, accuracy and macro-F1 maximised. Those two move in steps of one
    track, so several trials often share the best value: the lowest validation loss among
    them wins (then the earliest trial), instead of whichever came first."""
    sign = -1.0 if direction(objective) == "minimize" else 1.0
    top = max(sign * t.value for t in complete)
    tied = [t for t in complete if sign * t.value == top]
    if len(tied) == 1 or objective not in STEP_VALUED:
        return min(tied, key=lambda t: t.number), len(tied), None
    loss = lambda t: t.user_attrs.get("valid_loss", float("inf"))  # noqa: E731
    return min(tied, key=lambda t: (loss(t), t.number)), len(tied), "lowest validation loss"


def summarize_round(study: optuna.Study, about: Mapping) -> dict:
    """The content of best_trial.json (keys: see `genreflow.tuning`)."""
    n_trials = int(about["n_trials"])
    counted = round_trials(study, n_trials)
    states = [t.state for t in counted]
    if len(counted) < n_trials or TrialState.RUNNING in states:
        raise RuntimeError(
            f"study {study.study_name} holds {states.count(TrialState.RUNNING)} running and "
            f"{len(counted)} counted trials of {n_trials}: a worker has not finished; run "
            "Snakemake again to resume it"
        )
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(
            f"no trial of study {study.study_name} completed ({states.count(TrialState.PRUNED)} "
            f"pruned, {states.count(TrialState.FAIL)} failed); see trials.csv"
        )
    best, ties, tie_break = best_trial(complete, about["objective"])
    all_trials = study.get_trials(deepcopy=False)
    definition = study.user_attrs.get("definition", {})
    return {
        **about,
        "params": best.user_attrs["params"],
        "value": float(best.value),
        "best_epoch": best.user_attrs.get("best_epoch"),
        "valid_loss": best.user_attrs.get("valid_loss"),
        "ties": ties,
        "tie_break": tie_break,
        "cv_folds": definition.get("cv_folds_used", 1),
        "fold_values": best.user_attrs.get("fold_values"),
        # the rule every trial was trained by, which final training repeats
        "patience": definition.get("settings", {}).get("patience"),
        "trial_number": best.number,
        "n_complete": len(complete),
        "n_pruned": states.count(TrialState.PRUNED),
        "n_failed": states.count(TrialState.FAIL),
        "n_interrupted": sum(t.user_attrs.get(CLAIM) in (INTERRUPTED, CRASHED) for t in all_trials),
        "study_name": study.study_name,
    }


def round_about(
    backbone: str, feature: str, round_number: int, round_block: Mapping, run: Mapping
) -> dict:
    """The keys of best_trial.json that come from the round's declaration and the run."""
    plan = RoundPlan.from_config(round_block, model_kind(backbone))
    return {
        **run,
        "backbone": backbone,
        "feature": feature,
        "round": round_number,
        "inherited": list(plan.inherit),
        "fixed": plan.fixed,
        "scientific": [d.name for d in plan.scientific],
        "nuisance": [d.name for d in plan.nuisance],
        "objective": plan.objective,
        "n_trials": plan.n_trials,
        "sampler": plan.sampler,
        "seed": plan.seed,
    }


# One job's entry point: a parameter per input, param and output of its rule
# (collect_round), passed by name from the thin script.
def collect_round(
    worker_jsons: Sequence[str],
    backbone: str,
    feature: str,
    round_number: int,
    round_block: Mapping,
    run: Mapping,
    out_best: str,
    out_trials: str,
    log=print,
) -> None:
    """Write a round's best_trial.json and trials.csv from its study."""
    about = round_about(backbone, feature, round_number, round_block, run)
    notes = [read_json(path) for path in worker_jsons]
    studies = {(note["study_name"], note["journal"]) for note in notes}
    if len(studies) != 1:
        raise RuntimeError(f"the workers of one round ran different studies: {sorted(studies)}")
    ((study_name, journal),) = studies
    study = optuna.load_study(study_name=study_name, storage=journal_storage(journal, log))
    summary = summarize_round(study, about)
    write_csv(out_trials, trials_frame(study, about["n_trials"]))
    write_json(out_best, summary)
    log(
        f"best of {study_name}: trial {summary['trial_number']} {about['objective']} "
        f"{summary['value']:.4f} ({summary['n_complete']} complete, {summary['n_pruned']} "
        f"pruned, {summary['n_failed']} failed, {summary['n_interrupted']} interrupted)"
    )
