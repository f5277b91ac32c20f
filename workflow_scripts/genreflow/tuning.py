"""Chained Optuna tuning rounds for the transfer models and the baseline CNN.

A round (config `tuning.rounds`, `tuning.baseline.rounds`) searches its scientific and
nuisance hyperparameters, takes the names in `inherit` from the previous round's best trial
and the literal values in `fixed`; `defaults` fill in the rest. Its result,
`results/tuning/{backbone}/{feature}/round_{n}/best_trial.json`, holds every effective
hyperparameter, so that it alone rebuilds the model. `backbone` is `baseline_cnn` for the
baseline, `feature` the image type it was trained on.

What other stages use
---------------------
- `load_model_data(...)` -> `ModelData`: the image rows (`examples`) and the cached
  embeddings of every split, with the training embeddings' statistics that standardise
  every transfer head's input; `trial_model(data, params, seed)` -> the model of a set of
  hyperparameters (a head on the embeddings when the backbone is frozen, the trainable
  tail and head of a fine-tuned classifier on the cached activations below the tail
  (`genreflow.activations`, computed once per job), or the baseline CNN) and what
  `genreflow.models.train` feeds it.
  Final models (`genreflow.evaluation`) are built and trained by the same two functions,
  so a final model is its trial's model trained by the same rule.
- `build_model_from_best(best, image_size, weights, n_classes, stats, backbone_seed, seed)`: the
  compiled image model of a best_trial.json (input: RGB 0..255 images after the backbone's
  preprocess_input, or one channel in 0..1 for `baseline_cnn`).
- `best_trial.json` keys: backbone, feature, round, params, inherited, fixed, scientific,
  nuisance, value, objective, best_epoch, valid_loss, patience, trial_number, n_trials,
  n_complete, n_pruned, n_failed, n_interrupted, sampler, seed, study_name, corpus, split,
  weights, weights_source, pretrained.
  `trials.csv` (one row per trial that ran): number, state, value, the sampled parameters,
  worker, counted, epochs_run, best_epoch, valid_loss, note, duration_s. The study itself is
  in `study.journal` next to them: `optuna.load_study(study_name=best["study_name"],
  storage=journal_storage(path))`. The journal also holds trials that do not count (user
  attribute `claim`: interrupted, crashed, surplus) and older studies of the round: for
  plots take `round_trials(study, best["n_trials"])`.

How a round runs
----------------
`run_worker` is one worker job: it opens the round's study in the journal file (with a lock
that works on network file systems, repaired first if a crash left it with a torn last
record: `genreflow.journal`) and runs trials until the study holds `n_trials`.
Several workers may share a study; each trial is claimed before it runs (`claim_trial`), so
that together they run exactly `n_trials`. A worker killed mid-trial leaves that trial
RUNNING; the worker's next incarnation marks it failed ("interrupted", not counted) and runs
a replacement. `collect_round` then writes best_trial.json and trials.csv.

The study's name carries a fingerprint of everything its trials depend on (round, defaults,
inherited values, data), so a changed round starts a new study in the same journal, while a
rerun of an unchanged one resumes it; `n_trials` and `workers` are left out, so raising
n_trials extends a study.

TensorFlow/Keras are imported only where a model is built, so that collecting a round stays
a light local job.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import time
import traceback
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState, create_trial

from genreflow.config import TUNING_HYPERPARAMETERS, sorted_block
from genreflow.io import hash_file_into, read_json, write_csv, write_json
from genreflow.journal import journal_storage  # noqa: F401 (the journals' one entry point)
from genreflow.run_info import BASELINE, is_audio_backbone
from genreflow.scoring import SPLITS, split_rows

OBJECTIVES = ("valid_accuracy", "valid_macro_f1", "valid_loss")
# Step-valued objectives (multiples of 1/tracks) tie often; their ties go to the lower loss.
STEP_VALUED = ("valid_accuracy", "valid_macro_f1")


def direction(objective: str) -> str:
    return "minimize" if objective == "valid_loss" else "maximize"
HEAD_KEYS = (
    "activation",
    "batch_norm",
    "dense_layers",
    "dropout",
    "learning_rate",
    "trainable_layers",
    "units",
)
# User attribute of every trial, saying whether it holds one of the round's n_trials slots.
CLAIM = "claim"
HELD, INTERRUPTED, CRASHED, SURPLUS = "held", "interrupted", "crashed", "surplus"

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def kind_of(backbone: str) -> str:
    return "baseline" if backbone == BASELINE else "transfer"


class TrialFailed(Exception):
    """A trial that cannot give a score (diverged, out of memory): failed and counted."""


# ------------------------------------------------------------------ search-space declaration


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter, as declared in a round's scientific/nuisance block."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    per_layer: str | None = None

    @classmethod
    def from_config(cls, name: str, block: Mapping) -> "Dimension":
        if block["type"] not in ("float", "int", "categorical"):
            raise ValueError(f"{name}: unknown dimension type {block['type']!r}")
        if block["type"] == "categorical" and not block.get("choices"):
            raise ValueError(f"{name}: a categorical dimension needs choices")
        if block["type"] != "categorical" and not block["low"] < block["high"]:
            raise ValueError(f"{name}: low {block['low']} must be below high {block['high']}")
        return cls(
            name=name,
            type=block["type"],
            low=block.get("low"),
            high=block.get("high"),
            log=bool(block.get("log", False)),
            step=block.get("step"),
            choices=tuple(block.get("choices") or ()),
            per_layer=block.get("per_layer"),
        )

    def suggest(self, trial, label: str | None = None):
        """The value `trial` samples for this dimension, under `label` (default: name)."""
        label = label or self.name
        if self.type == "categorical":
            return trial.suggest_categorical(label, list(self.choices))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(label, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(
            label, float(self.low), float(self.high), step=self.step, log=self.log
        )


@dataclass(frozen=True)
class RoundPlan:
    """A round's declaration (one item of tuning.rounds, defaults filled by the schema)."""

    kind: str
    scientific: tuple[Dimension, ...]
    nuisance: tuple[Dimension, ...]
    inherit: tuple[str, ...]
    fixed: dict
    sampler: str
    startup_trials: int | None
    n_trials: int
    objective: str
    seed: int
    pruner: dict | None = None

    @classmethod
    def from_config(cls, block: Mapping, kind: str) -> "RoundPlan":
        known = TUNING_HYPERPARAMETERS[kind]
        names = [
            *block.get("scientific", {}),
            *block.get("nuisance", {}),
            *block.get("fixed", {}),
            *block.get("inherit", []),
        ]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown {kind} hyperparameter(s) {unknown}; known: {sorted(known)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a hyperparameter is declared twice in the round: {names}")
        if block.get("objective", "valid_accuracy") not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        return cls(
            kind=kind,
            scientific=tuple(
                Dimension.from_config(name, spec)
                for name, spec in sorted(block.get("scientific", {}).items())
            ),
            nuisance=tuple(
                Dimension.from_config(name, spec)
                for name, spec in sorted(block.get("nuisance", {}).items())
            ),
            inherit=tuple(block.get("inherit", [])),
            fixed=dict(block.get("fixed", {})),
            sampler=block.get("sampler", "tpe"),
            startup_trials=block.get("startup_trials"),
            n_trials=int(block["n_trials"]),
            objective=block.get("objective", "valid_accuracy"),
            seed=int(block.get("seed", 0)),
            pruner=block.get("pruner"),
        )

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        return self.scientific + self.nuisance


def frozen_backbone_plan(plan: RoundPlan) -> RoundPlan:
    """The round as it applies to an audio backbone (musicnn): its graph runs in another
    process, so only the head is trained and `trainable_layers` is fixed to 0 whatever the
    round searches; the other dimensions are searched as declared."""
    from dataclasses import replace

    return replace(
        plan,
        scientific=tuple(d for d in plan.scientific if d.name != "trainable_layers"),
        nuisance=tuple(d for d in plan.nuisance if d.name != "trainable_layers"),
        fixed={**plan.fixed, "trainable_layers": 0},
    )


def fit_layers(name: str, value: Any, n_layers: int) -> list:
    """A per-layer hyperparameter as a list of n_layers values.

    One value is repeated; a list of the right length is kept; a list whose values are all
    equal (e.g. inherited from a round that used one value for every layer) is stretched.
    """
    if not isinstance(value, (list, tuple)):
        return [value] * n_layers
    values = list(value)
    if len(values) == n_layers:
        return values
    if values and all(item == values[0] for item in values):
        return [values[0]] * n_layers
    raise ValueError(f"{name} has {len(values)} different per-layer values for {n_layers} layers")


def normalize_params(kind: str, values: Mapping) -> dict:
    """Every hyperparameter of `kind`, key-sorted, per-layer ones as lists of the right length."""
    known = TUNING_HYPERPARAMETERS[kind]
    missing = sorted(set(known) - set(values))
    unknown = sorted(set(values) - set(known))
    if missing or unknown:
        raise ValueError(f"{kind} hyperparameters: missing {missing}, unknown {unknown}")
    params = {}
    for name in sorted(known):
        count = known[name]
        params[name] = fit_layers(name, values[name], int(values[count])) if count else values[name]
    return params


def suggest_params(trial, plan: RoundPlan, defaults: Mapping, inherited: Mapping) -> dict:
    """Sample the round's dimensions and merge them over defaults, inherited and fixed values.

    Layer counts are sampled first, so that per-layer dimensions (`per_layer:
    dense_layers`) know how many values to sample (named units_0, units_1, ... in Optuna);
    the rest follow in name order, whatever the order of the config.
    """
    values = {**defaults, **inherited, **plan.fixed}
    counts = set(TUNING_HYPERPARAMETERS[plan.kind].values()) - {None}
    order = sorted(plan.dimensions, key=lambda d: (d.name not in counts, d.name))
    for dimension in order:
        if dimension.per_layer:
            n_layers = int(values[dimension.per_layer])
            values[dimension.name] = [
                dimension.suggest(trial, f"{dimension.name}_{i}") for i in range(n_layers)
            ]
        else:
            values[dimension.name] = dimension.suggest(trial)
    return normalize_params(plan.kind, values)


def make_sampler(plan: RoundPlan, worker: int = 0, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The round's sampler. Each worker (and each resumed incarnation, by `offset`) draws
    its random numbers from its own stream, so that two workers never propose the same
    random points; QMC points come from one scrambled Sobol sequence shared through the
    study."""
    stream = (plan.seed + 7919 * worker + offset) % 2**32
    if plan.sampler == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=plan.seed,
                independent_sampler=optuna.samplers.RandomSampler(seed=stream),
                warn_asynchronous_seeding=False,
                warn_independent_sampling=False,
            )
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=stream)
    if plan.sampler == "tpe":
        startup = 10 if plan.startup_trials is None else plan.startup_trials
        # constant_liar: a running trial counts as a bad result, so that concurrent workers
        # do not all sample next to the same promising point.
        return optuna.samplers.TPESampler(seed=stream, n_startup_trials=startup, constant_liar=True)
    raise ValueError(f"unknown sampler {plan.sampler!r}; use tpe, qmc or random")


def make_pruner(settings: Mapping) -> optuna.pruners.BasePruner:
    kind = settings["kind"]
    if kind == "none":
        return optuna.pruners.NopPruner()
    common = {
        "n_startup_trials": settings["n_startup_trials"],
        "n_warmup_steps": settings["n_warmup_steps"],
    }
    if kind == "median":
        return optuna.pruners.MedianPruner(**common)
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(settings["percentile"], **common)
    raise ValueError(f"unknown pruner {kind!r}; use median, percentile or none")


# ------------------------------------------------------------------------------ storage


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


def _release(study: optuna.Study, number: int, reason: str) -> None:
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
            _release(study, trial.number, INTERRUPTED)
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
        _release(study, number, SURPLUS)
        return None
    return optuna.Trial(study, trial_id)


def round_trials(study: optuna.Study, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """The round's counted trials: the first n_trials slot holders, by trial number."""
    return [t for t in study.get_trials(deepcopy=False) if holds_slot(t)][:n_trials]


# --------------------------------------------------------------------------------- data


@dataclass
class ModelData:
    """What the models of one (backbone, feature) train and score on: a worker's trials,
    and the final models (`genreflow.evaluation`).

    `embeddings` (the screening cache's rows of train and valid) feed heads on a frozen
    backbone, and their training statistics (`stats`) standardise every transfer head's
    input; `examples` (image rows) feed models that train on images. `backbone_seed` draws
    a randomly initialised backbone: the cache's network, so the statistics fit it.
    """

    kind: str
    backbone: str
    genres: list[str]
    image_size: int
    weights: Any  # genreflow.models.BackboneWeights, or None for random initialisation
    examples: dict[str, pd.DataFrame]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    # per split, the clip, segment and label of each embedding row
    embedding_rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stats: tuple | None = None
    backbone_seed: int = 0
    fold_seed: int = 0  # of the cross-validation folds (the round's seed)
    # genreflow.activations.ActivationCache of fine-tuning models, made on first use
    activations: Any = None
    activation_storage: str = "float32"  # config training.activation_storage
    log: Any = print


def split_examples(
    index_csv: str | os.PathLike, manifests: Mapping[str, str], genres: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Image rows of each split, labelled by position in `genres` (as the embeddings are)."""
    from genreflow.data import examples_for_split

    return {split: examples_for_split(index_csv, manifests[split], genres) for split in SPLITS}


def embedding_statistics(embeddings_npz: str | os.PathLike, manifests: Mapping[str, str]):
    """(mean, variance) of a cache's training embeddings: the `stats` of a transfer head."""
    from genreflow.models import feature_statistics, load_embeddings

    cache = load_embeddings(embeddings_npz)
    return feature_statistics(cache.embeddings[split_rows(cache.clip, manifests)["train"]])


def load_model_data(
    backbone: str,
    index_csv: str | None,
    manifests: Mapping[str, str],
    genres: Sequence[str],
    image_size: int,
    embeddings_npz: str | None = None,
    weights=None,
    backbone_seed: int = 0,
) -> ModelData:
    """What a worker's trials need; an audio backbone (no images) has embeddings only."""
    data = ModelData(
        kind=kind_of(backbone),
        backbone=backbone,
        genres=list(genres),
        image_size=int(image_size),
        weights=weights,
        examples=split_examples(index_csv, manifests, genres) if index_csv else {},
        backbone_seed=int(backbone_seed),
    )
    if data.kind == "transfer":
        from genreflow.models import feature_statistics, load_embeddings

        cache = load_embeddings(embeddings_npz)
        rows = split_rows(cache.clip, manifests)
        for split in SPLITS:
            picked = rows[split]
            data.embeddings[split] = cache.embeddings[picked]
            data.embedding_rows[split] = {"clip": cache.clip[picked],
                                          "segment": cache.segment[picked],
                                          "label": cache.label[picked]}
        data.stats = feature_statistics(data.embeddings["train"])
    return data


def split_dataset(
    data_examples: pd.DataFrame,
    backbone: str,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """A batched tf.data dataset of (images, labels) with the model's input preprocessing."""
    paths, labels = list(data_examples["image"]), data_examples["label"].to_numpy()
    if kind_of(backbone) == "baseline":
        from genreflow.baseline import baseline_dataset

        return baseline_dataset(paths, labels, image_size, batch_size, shuffle, seed)
    from genreflow.data import image_dataset
    from genreflow.models import backbone_spec

    return image_dataset(
        paths,
        labels,
        image_size,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        preprocess=backbone_spec(backbone).preprocess_input,
    )


def head_config(params: Mapping) -> dict:
    return {key: params[key] for key in HEAD_KEYS}


def trains_on_embeddings(backbone: str, params: Mapping) -> bool:
    """Whether a model of `params` is a head on the cached embeddings: a frozen backbone
    gives exactly the cached embeddings (tests/test_models.py), so the head trains on them
    instead of running the backbone every epoch. Audio backbones always are."""
    from genreflow.models import backbone_spec

    if kind_of(backbone) == "baseline":
        return False
    if is_audio_backbone(backbone):
        return True  # frozen_backbone_plan fixed trainable_layers to 0
    value = params["trainable_layers"]
    return (backbone_spec(backbone).last_block_layers if value == "last_block" else int(value)) == 0


def build_model_from_best(
    best: Mapping,
    image_size: int,
    weights,
    n_classes: int,
    stats=None,
    backbone_seed: int = 0,
    seed: int | None = None,
):
    """The compiled image model of a best_trial.json: the backbone classifier (RGB 0..255
    images; `split_dataset` applies the backbone's preprocess_input) with `stats` in its
    head, drawn with `seed`, or the baseline CNN (`weights`, `stats`, `backbone_seed` and
    `seed` unused)."""
    params = best["params"]
    if best["backbone"] == BASELINE:
        from genreflow.baseline import build_baseline_cnn

        return build_baseline_cnn(params, image_size, n_classes)
    from genreflow.models import build_classifier

    return build_classifier(
        best["backbone"], image_size, weights, head_config(params), n_classes, seed=seed,
        stats=stats, backbone_seed=backbone_seed,
    )


# ------------------------------------------------------------------------------ trials


def objective_value(scores: Mapping, objective: str) -> float:
    """A round's objective from `genreflow.scoring.score` of the validation split, per
    track (segment probabilities averaged): accuracy, macro-F1 or mean cross-entropy."""
    metric = {"valid_accuracy": "accuracy", "valid_macro_f1": "macro_f1", "valid_loss": "loss"}
    return float(scores["tracks"][metric[objective]])


def _out_of_memory_errors() -> tuple:
    import tensorflow as tf

    return (MemoryError, tf.errors.ResourceExhaustedError)


@dataclass
class TrialModel:
    """A trial's compiled model and what `genreflow.models.train` feeds it: `trained_on`
    says which inputs ("embeddings", "activations" of the frozen layers, or "images");
    a model on activations keeps the backbone it trains the tail of, and the cut."""

    model: Any
    train_data: Any
    validation: Any  # genreflow.models.Validation
    batch_size: int
    trained_on: str = "images"
    backbone: Any = None
    cut: Any = None  # genreflow.activations.BackboneCut


def pooled_examples(data: ModelData) -> pd.DataFrame:
    """The train and validation image rows together: what cross-validation folds cut."""
    return pd.concat([data.examples["train"], data.examples["valid"]], ignore_index=True)


def _images(data: ModelData, split: str, batch_size: int = 32):
    """The unshuffled images of a split, or of "pool" (`pooled_examples`)."""
    frame = pooled_examples(data) if split == "pool" else data.examples[split]
    return split_dataset(frame, data.backbone, data.image_size, batch_size, False, 0)


def activation_cache(data: ModelData):
    """The job's cache of frozen-layer activations for `data`'s (backbone, feature)."""
    from genreflow.activations import ActivationCache

    if data.activations is None:
        spread = None if data.stats is None else np.sqrt(data.stats[1])
        data.activations = ActivationCache(lambda split: _images(data, split), data.log, spread,
                                           data.activation_storage)
    return data.activations


def tail_trial_model(data: ModelData, params: Mapping, seed: int, fold=None) -> TrialModel:
    """A fine-tuning model that trains its backbone's last k layers on the cached
    activations below them (`genreflow.activations`); built, seeded and fed as
    `build_classifier`'s end-to-end model is, so that it is the same model.

    `fold` = (held, stats): a cross-validation fold of the pooled train and validation
    examples (`pooled_examples`; `held` marks the fold's validation rows) and the head's
    statistics from the other folds' embeddings, instead of the train and valid splits."""
    from genreflow.activations import activation_dataset, build_tail_classifier, cut_backbone
    from genreflow.activations import model_input
    from genreflow.models import Validation, build_backbone, resolve_trainable_layers
    from genreflow.models import seed_everything

    backbone = build_backbone(data.backbone, data.image_size, data.weights,
                              seed=data.backbone_seed)
    seed_everything(seed)
    k = resolve_trainable_layers(data.backbone, params["trainable_layers"], len(backbone.layers))
    cut = cut_backbone(backbone, k)
    stats = data.stats if fold is None else fold[1]
    model = build_tail_classifier(cut, head_config(params), len(data.genres), stats=stats)
    cache = activation_cache(data)
    if fold is None:
        train, valid = data.examples["train"], data.examples["valid"]
        train_values, train_rows = cache.get(cut, "train"), None
        valid_values = cache.get(cut, "valid")
    else:
        pool, held = pooled_examples(data), np.asarray(fold[0])
        train, valid = pool[~held], pool[held]
        train_values, train_rows = cache.get(cut, "pool"), np.flatnonzero(~held)
        valid_values = [values[held] for values in train_values]
    seed_everything(seed)
    batch_size = int(params["batch_size"])
    train_data = activation_dataset(train_values, train["label"].to_numpy(), batch_size, True,
                                    seed, rows=train_rows)
    validation = Validation(model_input(valid_values), valid["label"].to_numpy(),
                            valid["clip"].to_numpy(), data.genres)
    return TrialModel(model, train_data, validation, batch_size, "activations", backbone, cut)


def trial_model(data: ModelData, params: Mapping, seed: int) -> TrialModel:
    """The model of one trial's `params`: a head on the cached embeddings, a backbone
    classifier fine-tuned on the cached activations of its frozen layers (on images when
    training images are augmented), or the baseline CNN; the head seeded with `seed`."""
    from genreflow.activations import check_no_augmentation
    from genreflow.models import Validation, build_head, seed_everything

    n_classes = len(data.genres)
    batch_size = int(params["batch_size"])
    if trains_on_embeddings(data.backbone, params):
        x, rows = data.embeddings, data.embedding_rows
        model = build_head(x["train"].shape[1], head_config(params), n_classes, seed=seed,
                           stats=data.stats)
        validation = Validation(x["valid"], rows["valid"]["label"], rows["valid"]["clip"],
                                data.genres)
        return TrialModel(model, (x["train"], rows["train"]["label"]), validation, batch_size,
                          "embeddings")
    if data.kind == "transfer" and check_no_augmentation(data.log):
        return tail_trial_model(data, params, seed)
    if data.kind == "transfer":
        best = {"backbone": data.backbone, "params": params}
        model = build_model_from_best(best, data.image_size, data.weights, n_classes,
                                      stats=data.stats, backbone_seed=data.backbone_seed,
                                      seed=seed)
    else:
        from genreflow.baseline import build_baseline_cnn

        seed_everything(seed)
        model = build_baseline_cnn(params, data.image_size, n_classes)
    seed_everything(seed)
    examples = data.examples
    train = split_dataset(examples["train"], data.backbone, data.image_size, batch_size, True, seed)
    valid = split_dataset(examples["valid"], data.backbone, data.image_size, batch_size, False, seed)
    validation = Validation(valid, examples["valid"]["label"].to_numpy(),
                            examples["valid"]["clip"].to_numpy(), data.genres)
    return TrialModel(model, train, validation, batch_size)


@dataclass
class TrialResult:
    value: float
    best_epoch: int
    curve: list[float]
    valid_loss: float


def _custom_gradient_names() -> set[str]:
    from tensorflow.python.framework import ops

    return set(getattr(getattr(ops, "_gradient_registry", None), "_registry", None) or ())


def _forget_custom_gradients(kept: set[str]) -> None:
    """Drop the gradient functions that tf.custom_gradient registered since `kept`.

    Each graph-mode use of tf.custom_gradient (Keras' TF backend has some in every
    train step) registers a uniquely named gradient in TensorFlow's global registry, which
    keeps the whole traced graph alive: about 5 MB per fit() of a small head, more for a
    backbone, and clear_session() does not free it (keras-team/keras#17458). Once a trial's
    model is gone nothing uses its entries.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if registry is None:  # another TensorFlow layout: nothing to clean
        return
    for name in [n for n in registry if n not in kept and n.startswith("CustomGradient-")]:
        del registry[name]


def train_trial(
    trial, params: Mapping, data: ModelData, objective: str, seed: int, prune: bool,
    patience: int, cv_folds: int = 1,
):
    """Train one trial's model as final models are trained (`genreflow.models.train`: the
    epoch of lowest validation loss is kept, `patience` epochs without a lower one stop
    it); its value is the objective at that epoch. Every epoch's objective is reported to
    Optuna, whose pruner may stop the trial. With `cv_folds` > 1 the value is the mean over
    folds instead (`cross_validated_trial`)."""
    import keras

    from genreflow.models import Diverged, train

    gradients = _custom_gradient_names()
    curve: list[float] = []

    def report(epoch: int, scores: Mapping) -> None:
        value = objective_value(scores, objective)
        curve.append(value)
        trial.report(value, epoch)
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {value:.4f}")

    built = None
    try:
        if cv_folds > 1:
            return cross_validated_trial(trial, params, data, objective, seed, prune, patience,
                                         cv_folds)
        built = trial_model(data, params, seed)
        try:
            fitted = train(built.model, built.train_data, built.validation,
                           epochs=int(params["epochs"]), patience=patience,
                           batch_size=built.batch_size, seed=seed, on_epoch=report)
        except Diverged as error:
            raise TrialFailed(str(error)) from None
        finally:
            trial.set_user_attr("epochs_run", len(curve))
            trial.set_user_attr("curve", [round(value, 6) for value in curve])
        best = fitted.best_scores["tracks"]
        return TrialResult(objective_value(fitted.best_scores, objective), fitted.best_epoch,
                           curve, float(best["loss"]))
    finally:
        # One process runs many trials: drop the model, Keras' global state (layer name
        # counters, cached functions) and TensorFlow's registered gradients, so that
        # memory does not grow trial after trial (benchmarks/tuning_memory.py).
        del built
        keras.backend.clear_session()
        _forget_custom_gradients(gradients)
        gc.collect()


def cv_pool(data: ModelData, folds: int, seed: int):
    """The train and validation embeddings pooled (the test split never enters), and each
    row's fold (`genreflow.folds.track_folds`: whole tracks, stratified by genre)."""
    from genreflow.folds import track_folds

    x = np.concatenate([data.embeddings["train"], data.embeddings["valid"]])
    rows = {key: np.concatenate([data.embedding_rows["train"][key], data.embedding_rows["valid"][key]])
            for key in ("clip", "segment", "label")}
    return x, rows, track_folds(rows["clip"], rows["label"], folds, seed)


def cross_validated_trial(trial, params, data: ModelData, objective: str, seed: int, prune: bool,
                          patience: int, folds: int) -> TrialResult:
    """A head on the cached embeddings (or a fine-tuning model on the cached activations),
    trained once per fold of the pooled train and validation tracks and scored on the
    held-out fold, by the same rule as a single split; the trial's value (and its loss) is
    the mean over folds. The running mean is reported to Optuna after each fold, so that the
    pruner can stop a hopeless trial early."""
    import keras

    from genreflow.folds import track_folds
    from genreflow.models import Diverged, Validation, build_head, feature_statistics, train

    x, rows, fold = cv_pool(data, folds, data.fold_seed)
    fine_tunes = not trains_on_embeddings(data.backbone, params)
    if fine_tunes:  # the same tracks make the same folds (folds.track_folds)
        pool = pooled_examples(data)
        pool_fold = track_folds(pool["clip"].to_numpy(), pool["label"].to_numpy(), folds,
                                data.fold_seed)
        fold_of_track = dict(zip(rows["clip"], fold))
        if any(fold_of_track.get(clip) != k for clip, k in zip(pool["clip"], pool_fold)):
            raise RuntimeError("the images and the embedding cache of the train and validation "
                               "splits hold other tracks: rerun embed_images for "
                               f"{data.backbone}")
    values, losses, epochs = [], [], []
    for k in range(folds):
        held, kept = fold == k, fold != k
        stats = feature_statistics(x[kept])
        if fine_tunes:
            keras.backend.clear_session()  # the previous fold's backbone
            built = tail_trial_model(data, params, seed, fold=(pool_fold == k, stats))
            model, train_data, validation = built.model, built.train_data, built.validation
        else:
            model = build_head(x.shape[1], head_config(params), len(data.genres), seed=seed,
                               stats=stats)
            train_data = (x[kept], rows["label"][kept])
            validation = Validation(x[held], rows["label"][held], rows["clip"][held],
                                    data.genres)
        try:
            fitted = train(model, train_data, validation,
                           epochs=int(params["epochs"]), patience=patience,
                           batch_size=int(params["batch_size"]), seed=seed)
        except Diverged as error:
            raise TrialFailed(f"fold {k + 1} of {folds}: {error}") from None
        values.append(objective_value(fitted.best_scores, objective))
        losses.append(float(fitted.best_scores["tracks"]["loss"]))
        epochs.append(fitted.best_epoch)
        trial.set_user_attr("fold_values", [round(value, 6) for value in values])
        running = float(np.mean(values))
        trial.report(running, k)
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {k + 1} of {folds} at {running:.4f}")
    trial.set_user_attr("epochs_run", int(sum(epochs)))
    trial.set_user_attr("fold_best_epochs", epochs)
    return TrialResult(float(np.mean(values)), int(np.median(epochs)), values,
                       float(np.mean(losses)))


def cv_folds_for(plan: RoundPlan, backbone: str, defaults: Mapping, inherited: Mapping,
                 cv_folds: int) -> tuple[int, str]:
    """The folds a round's trials use, and why: `tuning.cv_folds` when every trial the round
    can sample trains on cached inputs (heads on the embeddings, fine-tuning tails on the
    activations below them); otherwise 1 for all of them (the values of one study must be
    comparable): the baseline CNN, and fine-tuning when training images are augmented."""
    from genreflow.data import AUGMENTATION

    if cv_folds <= 1:
        return 1, "tuning.cv_folds is 1"
    if kind_of(backbone) == "baseline":
        return 1, "the baseline CNN trains on images"
    if is_audio_backbone(backbone):
        return cv_folds, "heads on cached embeddings"
    if not AUGMENTATION:
        return cv_folds, "heads on cached embeddings, fine-tuning on cached activations"
    values = {**defaults, **inherited, **plan.fixed}
    possible = [values.get("trainable_layers")]
    for dimension in plan.dimensions:
        if dimension.name == "trainable_layers":
            possible = (list(dimension.choices) if dimension.type == "categorical"
                        else [dimension.low, dimension.high])
    if all(trains_on_embeddings(backbone, {"trainable_layers": value}) for value in possible):
        return cv_folds, "heads on cached embeddings"
    return 1, (f"trainable_layers can be {possible}, and fine-tuning trials train on augmented "
               f"images ({', '.join(AUGMENTATION)}): the single split for all trials")


@dataclass
class RoundContext:
    """What a worker needs besides the study: the plan, the values merged under the
    sampled ones, and the data."""

    plan: RoundPlan
    defaults: dict
    inherited: dict
    data: ModelData | None = None
    prune: bool = True
    patience: int = 8
    cv_folds: int = 1


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
        result = train_trial(
            trial, params, context.data, plan.objective, plan.seed + trial.number, context.prune,
            context.patience, context.cv_folds,
        )
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("note", str(pruned))
        study.tell(trial, state=TrialState.PRUNED)
        state, note = TrialState.PRUNED, str(pruned)
    except (TrialFailed, *_out_of_memory_errors()) as failure:
        reason = str(failure) if isinstance(failure, TrialFailed) else f"out of memory: {failure}"
        trial.set_user_attr("note", reason[:500])
        study.tell(trial, state=TrialState.FAIL)
        state, note = TrialState.FAIL, reason[:200]
    except BaseException as error:
        claim = INTERRUPTED if not isinstance(error, Exception) else CRASHED
        try:
            trial.set_user_attr("note", f"{claim}: {error!r}"[:500])
            _release(study, trial.number, claim)
        finally:
            log(f"trial {trial.number}: {claim}, not counted:\n{traceback.format_exc()}")
        raise
    else:
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("valid_loss", round(result.valid_loss, 6))
        study.tell(trial, result.value)
        state = TrialState.COMPLETE
        note = (f"{plan.objective} {result.value:.4f} at epoch {result.best_epoch}"
                if context.cv_folds == 1 else
                f"{plan.objective} {result.value:.4f}, mean of {context.cv_folds} folds "
                f"{[round(v, 3) for v in result.curve]}")
    log(
        f"trial {trial.number}: {state.name} {note} ({time.perf_counter() - started:.1f} s) "
        f"{json.dumps(params, sort_keys=True)}"
    )
    return state


def _raise_on_sigterm(signum, frame):
    raise SystemExit(f"terminated by signal {signum}")


def run_worker(
    *,
    backbone: str,
    feature: str,
    round_number: int,
    worker: int,
    workers: int,
    round_block: Mapping,
    defaults: Mapping,
    inherited: Mapping,
    pruner: Mapping,
    settings: Mapping,
    index_csv: str | None,
    manifests: Mapping[str, str],
    embeddings_npz: str | None,
    weights_path: str | None,
    previous_best: str | None,
    journal: str,
    out_json: str,
    log=print,
) -> None:
    """One worker job of a round: resume or start the study, run trials until it holds
    n_trials, write a note of what this worker did (`out_json`).

    `settings` holds genres, image_size, patience and, for backbones, weights (the
    backbones.weights setting, `weights_path` being the file it names) and backbone_seed.
    """
    kind = kind_of(backbone)
    plan = RoundPlan.from_config(round_block, kind)
    _check_inherited(plan, inherited, previous_best)
    if is_audio_backbone(backbone):
        plan = frozen_backbone_plan(plan)
        log(f"{backbone} embeds audio in its own process: head only, trainable_layers 0")
    pruner = dict(plan.pruner or pruner)
    cv_folds, why = cv_folds_for(plan, backbone, defaults, inherited,
                                 int(settings.get("cv_folds", 1)))
    if int(settings.get("cv_folds", 1)) > 1:
        log(("" if cv_folds > 1 else "WARNING: ") + f"trials use {cv_folds} fold(s) of the "
            f"pooled train and validation tracks: {why}")
    definition = {
        "backbone": backbone,
        "feature": feature,
        "round": round_number,
        "plan": {key: value for key, value in round_block.items() if key != "n_trials"},
        "defaults": dict(defaults),
        "inherited": dict(inherited),
        "pruner": pruner,
        "settings": dict(settings),
        "cv_folds_used": cv_folds,
    }
    data_files = [path for path in (index_csv, *(manifests[split] for split in SPLITS)) if path]
    fingerprint = study_fingerprint(
        definition, data_files, [embeddings_npz] if embeddings_npz else []
    )
    study_name = f"{backbone}.{feature}.round_{round_number}.{fingerprint[:16]}"
    storage = journal_storage(journal, log)
    existing = _existing_trials(storage, study_name)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction(plan.objective),
        sampler=make_sampler(plan, worker, offset=existing),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    if "definition" not in study.user_attrs:
        study.set_user_attr("definition", sorted_block(definition))
    released = release_dead_claims(study, worker, workers)
    if released:
        log(f"trials {released} were left running by a killed worker: failed as interrupted")
    incarnation = uuid.uuid4().hex
    log(
        f"study {study_name} in {journal}: {len(round_trials(study, plan.n_trials))} of "
        f"{plan.n_trials} trials there; worker {worker} of {workers} ({incarnation[:8]})"
    )
    context = RoundContext(plan, dict(defaults), dict(inherited), prune=pruner["kind"] != "none",
                           patience=int(settings["patience"]), cv_folds=cv_folds)
    ran = []
    previous_handler = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        while (trial := claim_trial(study, plan.n_trials, worker, incarnation)) is not None:
            if context.data is None:
                context.data = load_model_data(
                    backbone,
                    index_csv,
                    manifests,
                    settings["genres"],
                    settings["image_size"],
                    embeddings_npz,
                    _resolved_weights(backbone, settings, weights_path),
                    settings.get("backbone_seed", 0),
                )
                context.data.fold_seed, context.data.log = plan.seed, log
                context.data.activation_storage = settings.get("activation_storage", "float32")
            run_trial(study, trial, context, log)
            ran.append(trial.number)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    log(
        f"worker {worker} ran trials {ran}; the study holds {len(round_trials(study, plan.n_trials))}"
    )
    write_json(
        out_json,
        {
            "study_name": study_name,
            "journal": journal,
            "worker": worker,
            "ran": ran,
            "released": released,
        },
    )


def _resolved_weights(backbone: str, settings: Mapping, weights_path: str | None):
    """The BackboneWeights of an image backbone's settings; None for random init and for
    models without an image backbone."""
    if kind_of(backbone) == "baseline" or is_audio_backbone(backbone):
        return None
    from genreflow.models import resolve_weights

    return resolve_weights(settings["weights"], weights_path, backbone)


def _existing_trials(storage, study_name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


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
    """The content of best_trial.json (see the module docstring)."""
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
    plan = RoundPlan.from_config(round_block, kind_of(backbone))
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
