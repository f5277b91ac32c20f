"""Tuning without Snakemake: search-space declarations, samplers, the trial claims that let
several workers share a study, pruning and diverging trials, the baseline CNN, and the
config checks of tuning rounds."""

import copy
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pytest
import yaml
from conftest import REPO
from optuna.trial import TrialState

from genreflow.config import ConfigError, validate_config
from genreflow.hyperparameters import TABLE, fit_layers, normalize_params
from genreflow.journal import journal_storage
from genreflow.models.data import ModelData
from genreflow.tuning.space import Dimension, RoundPlan, make_pruner, make_sampler, suggest_params
from genreflow.tuning.study import (
    CLAIM,
    claim_trial,
    holds_slot,
    release_dead_claims,
    round_trials,
)
from genreflow.tuning.trial import TrialRule
from genreflow.tuning.worker import RoundContext, run_trial

with open(REPO / "config.yaml") as handle:
    DEMO = yaml.safe_load(handle)

TRANSFER_DEFAULTS = {
    "dense_layers": 1,
    "units": 32,
    "dropout": 0.0,
    "activation": "relu",
    "batch_norm": False,
    "trainable_layers": 0,
    "learning_rate": 0.01,
    "batch_size": 32,
    "epochs": 4,
}


def in_memory_study(sampler=None, pruner=None):
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


# ---------------------------------------------------------------- search-space declarations
def test_dimensions_sample_within_their_declaration():
    study = in_memory_study(optuna.samplers.RandomSampler(seed=0))
    dimensions = [
        Dimension.from_config(
            "learning_rate", {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
        ),
        Dimension.from_config("units", {"type": "int", "low": 16, "high": 64, "step": 16}),
        Dimension.from_config(
            "trainable_layers", {"type": "categorical", "choices": [0, "last_block"]}
        ),
    ]
    seen = {name: set() for name in ("learning_rate", "units", "trainable_layers")}
    for _ in range(40):
        trial = study.ask()
        for dimension in dimensions:
            seen[dimension.name].add(dimension.suggest(trial))
        study.tell(trial, 0.0)
    assert all(1e-4 <= value <= 1e-2 for value in seen["learning_rate"])
    assert seen["units"] <= {16, 32, 48, 64} and len(seen["units"]) > 1
    assert seen["trainable_layers"] == {0, "last_block"}
    distribution = study.trials[0].distributions["learning_rate"]
    assert distribution.log and distribution.low == 1e-4
    with pytest.raises(ValueError, match="low 5 must be below high 5"):
        Dimension.from_config("units", {"type": "int", "low": 5, "high": 5})
    with pytest.raises(ValueError, match="needs choices"):
        Dimension.from_config("activation", {"type": "categorical", "choices": []})


def test_suggest_params_merges_defaults_inherited_fixed_and_per_layer_values():
    plan = RoundPlan.from_config(
        {
            "inherit": ["trainable_layers"],
            "fixed": {"activation": "selu"},
            "scientific": {
                "dense_layers": {"type": "int", "low": 1, "high": 3},
                "units": {
                    "type": "int",
                    "low": 8,
                    "high": 64,
                    "log": True,
                    "per_layer": "dense_layers",
                },
            },
            "nuisance": {
                "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
            },
            "n_trials": 5,
        },
        "transfer",
    )
    study = in_memory_study(optuna.samplers.RandomSampler(seed=3))
    layer_counts = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest_params(trial, plan, TRANSFER_DEFAULTS, {"trainable_layers": "last_block"})
        study.tell(trial, 0.0)
        n = params["dense_layers"]
        layer_counts.add(n)
        assert list(params) == sorted(TABLE["transfer"])
        assert params["trainable_layers"] == "last_block"  # inherited
        assert params["activation"] == ["selu"] * n  # fixed, one value for every layer
        assert params["dropout"] == [0.0] * n and params["epochs"] == 4  # defaults
        assert len(params["units"]) == n and all(8 <= u <= 64 for u in params["units"])
        assert sorted(trial.params) == ["dense_layers", "learning_rate"] + [
            f"units_{i}" for i in range(n)
        ]
    assert len(layer_counts) > 1


def test_fit_layers_and_normalize_params():
    assert fit_layers("units", 8, 3) == [8, 8, 8]
    assert fit_layers("units", [8, 16], 2) == [8, 16]
    assert fit_layers("units", [8, 8], 3) == [8, 8, 8]  # one value for every layer, stretched
    assert fit_layers("units", [8], 0) == []
    with pytest.raises(ValueError, match="units has 2 different per-layer values for 3 layers"):
        fit_layers("units", [8, 16], 3)
    with pytest.raises(ValueError, match=r"missing \['epochs'\]"):
        normalize_params("transfer", {k: v for k, v in TRANSFER_DEFAULTS.items() if k != "epochs"})
    baseline = normalize_params(
        "baseline", {**DEMO["tuning"]["baseline"]["defaults"], "conv_layers": 2, "kernels": [8, 16]}
    )
    assert (
        baseline["kernels"] == [8, 16]
        and baseline["stride"] == [1, 1]
        and baseline["units"] == [128]
    )


def test_samplers_and_pruners_from_the_declaration():
    plan = RoundPlan.from_config({"sampler": "qmc", "n_trials": 8, "seed": 5}, "transfer")
    qmc = make_sampler(plan)
    assert isinstance(qmc, optuna.samplers.QMCSampler)
    study = in_memory_study(qmc)
    dimension = Dimension.from_config(
        "learning_rate", {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
    )
    points = []
    for _ in range(8):
        trial = study.ask()
        points.append(np.log10(dimension.suggest(trial)))
        study.tell(trial, 0.0)
    # Sobol points after the first (random) trial: 7 distinct points, one in each eighth-ish
    assert len(set(np.round(points, 6))) == 8
    assert len({int((p + 4) / 3 * 4) for p in points[1:]}) == 4  # every quarter of the range
    tpe = make_sampler(
        RoundPlan.from_config({"sampler": "tpe", "startup_trials": 3, "n_trials": 2}, "transfer")
    )
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 3
    assert isinstance(
        make_sampler(RoundPlan.from_config({"sampler": "random", "n_trials": 2}, "transfer")),
        optuna.samplers.RandomSampler,
    )
    # two workers (or a resumed worker) draw different random streams
    random_plan = RoundPlan.from_config({"sampler": "random", "n_trials": 2, "seed": 1}, "transfer")
    draws = [make_sampler(random_plan, worker)._rng.rng.random() for worker in (0, 1)]
    assert draws[0] != draws[1]
    settings = {"n_startup_trials": 2, "n_warmup_steps": 1, "percentile": 25.0}
    assert isinstance(make_pruner({**settings, "kind": "median"}), optuna.pruners.MedianPruner)
    assert isinstance(
        make_pruner({**settings, "kind": "percentile"}), optuna.pruners.PercentilePruner
    )
    assert isinstance(make_pruner({**settings, "kind": "none"}), optuna.pruners.NopPruner)


def test_hyperparameter_names_agree_with_the_model_builders():
    import keras

    from genreflow.hyperparameters import (
        ACTIVATIONS,
        BASELINE_DEFAULTS,
        HEAD_DEFAULTS,
        HEAD_KEYS,
        TRAINING_KEYS,
        per_layer_keys,
    )
    from genreflow.models.baseline import normalize_baseline
    from genreflow.models.heads import normalize_head

    transfer = TABLE["transfer"]
    assert set(transfer) == set(HEAD_DEFAULTS) | set(TRAINING_KEYS)
    assert set(HEAD_KEYS) == set(HEAD_DEFAULTS)
    assert set(per_layer_keys("transfer")) == {"units", "dropout", "activation"}
    assert set(TABLE["baseline"]) == set(BASELINE_DEFAULTS)
    # the builders expand every per-layer key of the table to its layers
    head = normalize_head({"dense_layers": 2})
    assert all(len(head[key]) == 2 for key in per_layer_keys("transfer"))
    baseline = normalize_baseline({"conv_layers": 2, "dense_layers": 3})
    for key, count in per_layer_keys("baseline").items():
        assert len(baseline[key]) == {"conv_layers": 2, "dense_layers": 3}[count]
    for name in ACTIVATIONS:
        keras.activations.get(name)


# ---------------------------------------------------------------- config checks
def tuning_config(change):
    config = copy.deepcopy(DEMO)
    config["tuning"] = copy.deepcopy(DEMO["tuning"])
    change(config["tuning"])
    return config


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: t["rounds"][1]["scientific"].pop("batch_norm"),
            r"tuning\.rounds\.2\.inherit: 'batch_norm' is not produced by round 1",
        ),
        (
            lambda t: t["rounds"][1].update(inherit=["trainable_layers", "units_0"]),
            r"tuning\.rounds\.1\.inherit: unknown hyperparameter 'units_0'",
        ),
        (
            lambda t: t["rounds"][0].update(inherit=["units"]),
            r"tuning\.rounds\.0\.inherit: round 0 has no previous round to inherit 'units' from",
        ),
        (
            lambda t: t["rounds"][0]["fixed"].update(units=128),
            r"tuning\.rounds\.0\.fixed: 'units' is also in nuisance",
        ),
        (
            lambda t: t["rounds"][0]["nuisance"]["units"].update(per_layer="conv_layers"),
            r"tuning\.rounds\.0\.nuisance\.units\.per_layer: units cannot be searched per 'conv_layers'",
        ),
        (
            lambda t: t["rounds"][0]["nuisance"]["learning_rate"].update(low=0.0),
            r"tuning\.rounds\.0\.nuisance\.learning_rate: a log-scale dimension needs low > 0",
        ),
        (
            lambda t: t["rounds"][1]["nuisance"]["dropout"].update(type="int"),
            r"tuning\.rounds\.1\.nuisance\.dropout\.type: dropout is searched with type float",
        ),
        (
            lambda t: t["rounds"][1]["nuisance"]["activation"].update(choices=["relu", "rleu"]),
            r"tuning\.rounds\.1\.nuisance\.activation\.choices: 'rleu' is not a valid activation",
        ),
        (
            lambda t: t["baseline"]["rounds"][0]["scientific"].update(
                trainable_layers={"type": "int", "low": 0, "high": 4}
            ),
            r"tuning\.baseline\.rounds\.0\.scientific: unknown hyperparameter 'trainable_layers'",
        ),
        (
            lambda t: t.update(combinations=[{"backbone": "vgg16", "feature": "melody"}]),
            r"tuning\.combinations\.0\.feature: 'melody' is not in screening\.features",
        ),
        (
            lambda t: t.update(combinations=[{"backbone": "vgg16", "feature": "mel"}]),
            r"tuning\.baseline\.feature: 'best' means the best feature of the screening selection",
        ),
        (
            lambda t: t["rounds"][0].update(sampler="grid"),
            r"tuning\.rounds\.0\.sampler: 'grid' is not one of",
        ),
    ],
)
def test_bad_rounds_fail_validation_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tuning_config(change))


def test_demo_and_gtzan_rounds_are_valid():
    demo = validate_config(DEMO)["tuning"]
    assert [r["sampler"] for r in demo["rounds"]] == ["qmc", "qmc", "tpe"]
    assert demo["rounds"][2]["inherit"] == ["trainable_layers", "batch_norm", "dense_layers"]
    gtzan = validate_config({**DEMO, "preset": "gtzan"}, overrides={"dataset": {"root": "."}})[
        "tuning"
    ]
    assert all(r["n_trials"] >= 30 for r in gtzan["rounds"] + gtzan["baseline"]["rounds"])


# ---------------------------------------------------------------- claims: workers sharing a study
CLAIMER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {scripts!r})
    import optuna
    from genreflow.journal import journal_storage
    from genreflow.tuning.study import claim_trial, release_dead_claims
    journal, worker, workers, n_trials, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    study = optuna.create_study(storage=journal_storage(journal), study_name="claims",
                                direction="maximize", load_if_exists=True)
    release_dead_claims(study, worker, workers)
    while (trial := claim_trial(study, n_trials, worker, "x")) is not None:
        value = trial.suggest_float("x", 0, 1)
        time.sleep(pause)
        study.tell(trial, value)
    """).format(scripts=str(REPO / "workflow_scripts"))


def test_concurrent_workers_run_exactly_n_trials_and_a_killed_one_resumes(tmp_path):
    journal = str(tmp_path / "study.journal")
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER)
    n_trials, workers = 30, 4

    def start(worker, pause):
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                journal,
                str(worker),
                str(workers),
                str(n_trials),
                str(pause),
            ]
        )

    # worker 0 takes long trials: it is killed while one of them runs
    slow = start(0, 60.0)
    others = [start(worker, 0.02) for worker in range(1, workers)]
    storage = journal_storage(journal)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name="claims", storage=storage)
            if any(
                t.user_attrs.get("worker") == 0
                for t in study.get_trials(states=(TrialState.RUNNING,))
            ):
                break
        except KeyError:
            pass
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    for process in others:
        assert process.wait(timeout=120) == 0
    study = optuna.load_study(study_name="claims", storage=storage)
    stuck = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
    assert len(stuck) == 1  # the killed worker's trial still holds its slot...
    assert len(round_trials(study, n_trials)) == n_trials
    # ...until the worker's next incarnation fails it and runs a replacement
    assert start(0, 0.01).wait(timeout=60) == 0
    study = optuna.load_study(study_name="claims", storage=storage)
    counted = round_trials(study, n_trials)
    assert len(counted) == n_trials and all(t.state == TrialState.COMPLETE for t in counted)
    assert sum(holds_slot(t) for t in study.trials) == n_trials  # never more than n_trials
    interrupted = study.trials[stuck[0]]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs[CLAIM] == "interrupted"
    assert {t.user_attrs.get(CLAIM) for t in study.trials} <= {"held", "interrupted", "surplus"}


def test_a_worker_fails_only_its_own_running_trials(tmp_path):
    study = optuna.create_study(
        storage=journal_storage(tmp_path / "s.journal"), study_name="s", direction="maximize"
    )
    mine, other, gone = (claim_trial(study, 10, worker, "x") for worker in (0, 1, 5))
    assert release_dead_claims(study, worker=0, workers=2) == [mine.number, gone.number]
    states = {t.number: (t.state, t.user_attrs[CLAIM]) for t in study.trials}
    assert states[other.number] == (TrialState.RUNNING, "held")
    assert states[mine.number] == states[gone.number] == (TrialState.FAIL, "interrupted")


# ---------------------------------------------------------------- trials: pruning, divergence
def separable_embeddings(seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (10, 16))

    def split(n):
        labels = rng.integers(0, 10, n)
        return (means[labels] + rng.normal(0, 1, (n, 16))).astype(np.float32), labels.astype(
            np.int32
        )

    (x_train, y_train), (x_valid, y_valid) = split(200), split(60)
    def rows(labels, offset):
        return {"clip": np.arange(offset, offset + len(labels)).astype(str),
                "segment": np.zeros(len(labels), dtype=int), "label": labels}

    return ModelData(
        kind="transfer",
        backbone="vgg16",
        genres=[f"g{i}" for i in range(10)],
        image_size=32,
        weights=None,
        examples={},
        embeddings={"train": x_train, "valid": x_valid},
        embedding_rows={"train": rows(y_train, 0), "valid": rows(y_valid, 200)},
    )


def test_pruned_and_diverged_trials_are_counted_and_the_study_goes_on(tmp_path):
    data = separable_embeddings()
    pruner = {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1, "percentile": 25.0}
    study = optuna.create_study(
        storage=journal_storage(tmp_path / "s.journal"),
        study_name="s",
        direction="maximize",
        pruner=make_pruner(pruner),
    )
    states = []
    # two good trials, a hopeless one (tiny learning rate), a diverging one, a good one
    for learning_rate in (0.02, 0.01, 1e-7, 1e30, 0.02):
        plan = RoundPlan.from_config(
            {"fixed": {"learning_rate": learning_rate}, "n_trials": 5}, "transfer"
        )
        trial = claim_trial(study, 5, 0, "x")
        states.append(
            run_trial(
                study,
                trial,
                RoundContext(plan, TRANSFER_DEFAULTS, {}, TrialRule(plan.objective, 8), data=data),
                log=lambda m: None,
            )
        )
    assert states == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    trials = study.trials
    assert trials[0].value > 0.5 and trials[0].user_attrs["params"]["learning_rate"] == 0.02
    assert (
        trials[2].user_attrs["epochs_run"] == 2
        and "pruned after epoch 2" in trials[2].user_attrs["note"]
    )
    assert trials[3].user_attrs["note"].startswith("diverged: training loss nan")
    assert all(holds_slot(t) for t in trials)  # pruned and failed trials count towards n_trials


# ---------------------------------------------------------------- the baseline CNN
def test_baseline_cnn_takes_one_channel_in_0_1_and_follows_its_params(tmp_path):
    from PIL import Image

    from genreflow.models.baseline import baseline_dataset, build_baseline_cnn

    params = {
        "conv_layers": 4,
        "kernels": [4, 8, 8, 16],
        "kernel_size": [3, 5, 3, 3],
        "stride": 2,  # with pooling, 32 px shrink to 1 px before the last block: still valid
        "conv_dropout": 0.1,
        "conv_batch_norm": True,
        "activation": "selu",
        "dense_layers": 2,
        "units": [16, 8],
        "dropout": [0.2, 0.3],
        "batch_norm": True,
        "learning_rate": 0.01,
    }
    model = build_baseline_cnn(params, 32, 10)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 10)
    assert (
        model.get_layer("conv_1").kernel_size == (5, 5) and model.get_layer("conv_3").filters == 16
    )
    assert model.get_layer("dense_1").units == 8 and model.get_layer("dense_dropout_1").rate == 0.3
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((32, 32), 255 * (i % 2), dtype=np.uint8)).save(path)
        paths.append(path)
    images, labels = next(iter(baseline_dataset(paths, [0, 1, 2, 3], 32, 4, shuffle=False, seed=0)))
    assert images.shape == (4, 32, 32, 1) and float(images[1].numpy().max()) == 1.0
    assert float(images[0].numpy().max()) == 0.0
    history = model.fit(images, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_out_of_memory_fails_the_trial_and_a_bug_stops_the_worker(tmp_path, monkeypatch):
    import tensorflow as tf

    from genreflow.tuning import worker

    study = optuna.create_study(
        storage=journal_storage(tmp_path / "s.journal"), study_name="s", direction="maximize"
    )
    plan = RoundPlan.from_config({"n_trials": 3}, "transfer")
    context = RoundContext(plan, TRANSFER_DEFAULTS, {}, TrialRule(plan.objective, 8), data=None)

    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(worker, "train_trial", out_of_memory)
    assert (
        run_trial(study, claim_trial(study, 3, 0, "x"), context, log=lambda m: None)
        == TrialState.FAIL
    )
    assert study.trials[0].user_attrs["note"].startswith("out of memory")
    assert holds_slot(study.trials[0])  # counted: the study goes on

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(worker, "train_trial", bug)
    with pytest.raises(KeyError):
        run_trial(study, claim_trial(study, 3, 0, "x"), context, log=lambda m: None)
    crashed = study.trials[1]
    assert crashed.state == TrialState.FAIL and crashed.user_attrs[CLAIM] == "crashed"
    assert len(round_trials(study, 3)) == 1  # a rerun redoes the crashed trial
