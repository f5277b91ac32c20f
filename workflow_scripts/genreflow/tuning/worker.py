"""One worker job of a round (`run_worker`): open or resume the study, claim and run
trials until it holds n_trials."""

from __future__ import annotations

import json
import signal
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from genreflow.config import sorted_block
from genreflow.io import read_json, write_json
from genreflow.journal import journal_storage
from genreflow.models.data import ModelData, ModelInputs, ModelSettings, job_model_data
from genreflow.names import SPLITS, is_audio_backbone, model_kind
from genreflow.tuning.space import (
    RoundPlan,
    direction,
    frozen_backbone_plan,
    make_pruner,
    make_sampler,
    suggest_params,
)
from genreflow.tuning.study import (
    CRASHED,
    INTERRUPTED,
    claim_trial,
    existing_trials,
    release_claim,
    release_dead_claims,
    round_trials,
    study_fingerprint,
)
from genreflow.tuning.trial import TrialFailed, TrialRule, out_of_memory_errors, train_trial


def cv_folds_for(backbone: str, cv_folds: int) -> tuple[int, str]:
    """The folds a round's trials use, and why: `tuning.cv_folds` for every model that trains
    on cached inputs (heads on the embeddings, fine-tuning tails on the activations below
    them); 1 for the baseline CNN, which trains on images."""
    if cv_folds <= 1:
        return 1, "tuning.cv_folds is 1"
    if model_kind(backbone) == "baseline":
        return 1, "the baseline CNN trains on images"
    if is_audio_backbone(backbone):
        return cv_folds, "heads on cached embeddings"
    return cv_folds, "heads on cached embeddings, fine-tuning on cached activations"


@dataclass
class RoundContext:
    """What a worker needs besides the study: the plan, the values merged under the
    sampled ones, how trials are trained and scored, and the data."""

    plan: RoundPlan
    defaults: dict
    inherited: dict
    rule: TrialRule
    data: ModelData | None = None


def run_trial(
    study: optuna.Study, trial: optuna.Trial, context: RoundContext, log=print
) -> TrialState:
    """Sample, train and tell one trial. Pruned trials and failed ones (diverged, out of
    memory) are told and counted, and the study goes on; any other error fails the trial
    as "crashed" (not counted, so a rerun redoes it) and stops the worker."""
    plan = context.plan
    started = time.perf_counter()
    params: dict = {}
    try:
        params = suggest_params(trial, plan, context.defaults, context.inherited)
        trial.set_user_attr("params", params)
        result = train_trial(trial, params, context.data, plan.seed + trial.number, context.rule)
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("note", str(pruned))
        study.tell(trial, state=TrialState.PRUNED)
        state, note = TrialState.PRUNED, str(pruned)
    except (TrialFailed, *out_of_memory_errors()) as failure:
        reason = str(failure) if isinstance(failure, TrialFailed) else f"out of memory: {failure}"
        trial.set_user_attr("note", reason[:500])
        study.tell(trial, state=TrialState.FAIL)
        state, note = TrialState.FAIL, reason[:200]
    except BaseException as error:
        claim = INTERRUPTED if not isinstance(error, Exception) else CRASHED
        try:
            trial.set_user_attr("note", f"{claim}: {error!r}"[:500])
            release_claim(study, trial.number, claim)
        finally:
            log(f"trial {trial.number}: {claim}, not counted:\n{traceback.format_exc()}")
        raise
    else:
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("valid_loss", round(result.valid_loss, 6))
        study.tell(trial, result.value)
        state = TrialState.COMPLETE
        note = (f"{plan.objective} {result.value:.4f} at epoch {result.best_epoch}"
                if context.rule.cv_folds == 1 else
                f"{plan.objective} {result.value:.4f}, mean of {context.rule.cv_folds} folds "
                f"{[round(v, 3) for v in result.curve]}")
    log(
        f"trial {trial.number}: {state.name} {note} ({time.perf_counter() - started:.1f} s) "
        f"{json.dumps(params, sort_keys=True)}"
    )
    return state


def _raise_on_sigterm(signum, frame):
    raise SystemExit(f"terminated by signal {signum}")


@dataclass(frozen=True)
class RoundJob:
    """Which worker of which round a tune_round job is (its wildcards), how many workers
    share the round's study, and the study's journal file."""

    backbone: str
    feature: str
    round_number: int
    worker: int
    workers: int
    journal: str


@dataclass(frozen=True)
class RoundSpec:
    """What a round's trials start from (the tune_round rule's params): the round's
    declaration (`block`, one item of tuning.rounds), the defaults, the values inherited
    from the previous round's best_trial.json, and the pruner of tuning.pruner."""

    block: Mapping
    defaults: Mapping
    inherited: Mapping
    pruner: Mapping


def run_worker(job: RoundJob, spec: RoundSpec, settings: ModelSettings, inputs: ModelInputs,
               previous_best: str | None, out_json: str, log=print) -> None:
    """One worker job of a round: resume or start the study, run trials until it holds
    n_trials, write a note of what this worker did (`out_json`)."""
    plan = RoundPlan.from_config(spec.block, model_kind(job.backbone))
    _check_inherited(plan, spec.inherited, previous_best)
    if is_audio_backbone(job.backbone):
        plan = frozen_backbone_plan(plan)
        log(f"{job.backbone} embeds audio in its own process: head only, trainable_layers 0")
    pruner = dict(plan.pruner or spec.pruner)
    cv_folds, why = cv_folds_for(job.backbone, settings.cv_folds)
    if settings.cv_folds > 1:
        log(("" if cv_folds > 1 else "WARNING: ") + f"trials use {cv_folds} fold(s) of the "
            f"pooled train and validation tracks: {why}")
    rule = TrialRule(plan.objective, settings.patience, cv_folds, prune=pruner["kind"] != "none")
    study, released = open_round_study(job, spec, settings, plan, pruner, cv_folds, inputs, log)
    incarnation = uuid.uuid4().hex
    log(
        f"study {study.study_name} in {job.journal}: "
        f"{len(round_trials(study, plan.n_trials))} of {plan.n_trials} trials there; "
        f"worker {job.worker} of {job.workers} ({incarnation[:8]})"
    )
    context = RoundContext(plan, dict(spec.defaults), dict(spec.inherited), rule)
    ran = []
    previous_handler = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        while (trial := claim_trial(study, plan.n_trials, job.worker, incarnation)) is not None:
            if context.data is None:  # loaded once, and only if a trial is left to run
                context.data = job_model_data(job.backbone, inputs, settings, log,
                                              fold_seed=plan.seed)
            run_trial(study, trial, context, log)
            ran.append(trial.number)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    log(f"worker {job.worker} ran trials {ran}; the study holds "
        f"{len(round_trials(study, plan.n_trials))}")
    write_json(out_json, {"study_name": study.study_name, "journal": job.journal,
                          "worker": job.worker, "ran": ran, "released": released})


# Its parameters are everything the study's name fingerprints: the job, its round, its
# settings and data files, and what run_worker derived from them (plan, pruner, folds).
def open_round_study(job: RoundJob, spec: RoundSpec, settings: ModelSettings, plan: RoundPlan,
                     pruner: Mapping, cv_folds: int, inputs: ModelInputs,
                     log=print) -> tuple[optuna.Study, list[int]]:
    """The round's study in its journal, created or resumed, and the trials a killed
    worker left running (released as interrupted). Its name carries a fingerprint of
    everything its trials depend on, the data files' contents included."""
    definition = {
        "backbone": job.backbone,
        "feature": job.feature,
        "round": job.round_number,
        "plan": {key: value for key, value in spec.block.items() if key != "n_trials"},
        "defaults": dict(spec.defaults),
        "inherited": dict(spec.inherited),
        "pruner": dict(pruner),
        "settings": settings.as_params(),
        "cv_folds_used": cv_folds,
    }
    data_files = [path for path in (inputs.index_csv, *(inputs.manifests[split]
                                                        for split in SPLITS),
                                    inputs.view_index_csv) if path]
    fingerprint = study_fingerprint(
        definition, data_files,
        [path for path in (inputs.embeddings_npz, inputs.view_embeddings_npz) if path]
    )
    study_name = f"{job.backbone}.{job.feature}.round_{job.round_number}.{fingerprint[:16]}"
    storage = journal_storage(job.journal, log)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction(plan.objective),
        sampler=make_sampler(plan, job.worker, offset=existing_trials(storage, study_name)),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    if "definition" not in study.user_attrs:
        study.set_user_attr("definition", sorted_block(definition))
    released = release_dead_claims(study, job.worker, job.workers)
    if released:
        log(f"trials {released} were left running by a killed worker: failed as interrupted")
    return study, released


def _check_inherited(plan: RoundPlan, inherited: Mapping, previous_best: str | None) -> None:
    """The inherited values (Snakemake params, read from the previous best_trial.json when
    the job was planned) must be those of the file the job reads now."""
    if set(inherited) != set(plan.inherit):
        raise ValueError(
            f"inherited values {sorted(inherited)} differ from inherit {list(plan.inherit)}"
        )
    if previous_best is None:
        if plan.inherit:
            raise ValueError("this round inherits values but got no previous best_trial.json")
        return
    previous = read_json(previous_best)["params"]
    stale = {name: previous[name] for name in plan.inherit if previous[name] != inherited[name]}
    if stale:
        raise ValueError(
            f"inherited values {dict(inherited)} are not those of {previous_best} ({stale}); "
            "run Snakemake again"
        )

