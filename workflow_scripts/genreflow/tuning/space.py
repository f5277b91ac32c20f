"""A round's search space: its declared dimensions (`Dimension`, `RoundPlan`), how a
trial samples them, the samplers and pruners, and the objectives."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import optuna

from genreflow.hyperparameters import TABLE, normalize_params

OBJECTIVES = ("valid_accuracy", "valid_macro_f1", "valid_loss")
# Step-valued objectives (multiples of 1/tracks) tie often; their ties go to the lower loss.
STEP_VALUED = ("valid_accuracy", "valid_macro_f1")


def direction(objective: str) -> str:
    return "minimize" if objective == "valid_loss" else "maximize"


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
        known = TABLE[kind]
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


def suggest_params(trial, plan: RoundPlan, defaults: Mapping, inherited: Mapping) -> dict:
    """Sample the round's dimensions and merge them over defaults, inherited and fixed values.

    Layer counts are sampled first, so that per-layer dimensions (`per_layer:
    dense_layers`) know how many values to sample (named units_0, units_1, ... in Optuna);
    the rest follow in name order, whatever the order of the config.
    """
    values = {**defaults, **inherited, **plan.fixed}
    counts = set(TABLE[plan.kind].values()) - {None}
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

