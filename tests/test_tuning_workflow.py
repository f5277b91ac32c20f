"""Tuning through Snakemake on a tiny corpus: a real three-round chain, rerun semantics, a
tuning job killed mid-study and resumed, two workers on one study, config errors.

The stages before tuning run once (`upstream`); every test copies that working directory
(results, Snakemake's metadata, mtimes) and runs only tuning jobs in its copy.
"""

import copy
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import psutil
import pytest
from conftest import REPO, TINY_CONFIG, make_tiny_gtzan, planned_jobs, snakemake, write_config
from optuna.trial import TrialState

from genreflow.journal import journal_storage
from genreflow.tuning.study import round_trials

pytestmark = pytest.mark.workflow

R0 = "results/tuning/vgg16/mel/round_0"
R1 = "results/tuning/vgg16/mel/round_1"
R2 = "results/tuning/vgg16/mel/round_2"
BASE = "results/tuning/baseline_cnn/mel/round_0"


def dim(**declaration):
    return declaration


CHAIN = {
    "combinations": [{"backbone": "vgg16", "feature": "mel"}],
    "pruner": {"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
    "defaults": {"epochs": 2, "batch_size": 16, "units": 16},
    "rounds": [
        {
            "scientific": {"trainable_layers": dim(type="categorical", choices=[0, "last_block"])},
            "nuisance": {
                "units": dim(type="int", low=8, high=32, log=True),
                "learning_rate": dim(type="float", low=1.0e-3, high=1.0e-2, log=True),
            },
            "fixed": {"dense_layers": 1, "dropout": 0.2, "activation": "relu"},
            "sampler": "qmc",
            "n_trials": 3,
        },
        {
            "inherit": ["trainable_layers"],
            "scientific": {
                "dense_layers": dim(type="int", low=1, high=2),
                "batch_norm": dim(type="categorical", choices=[False, True]),
            },
            "nuisance": {
                "learning_rate": dim(type="float", low=1.0e-3, high=1.0e-2, log=True),
                "activation": dim(type="categorical", choices=["relu", "selu", "swish"]),
            },
            "sampler": "tpe",
            "startup_trials": 1,
            "n_trials": 2,
        },
        {
            "inherit": ["trainable_layers", "batch_norm", "dense_layers"],
            "scientific": {
                "units": dim(type="int", low=8, high=32, per_layer="dense_layers"),
                "dropout": dim(type="float", low=0.0, high=0.5, per_layer="dense_layers"),
            },
            "nuisance": {"learning_rate": dim(type="float", low=1.0e-3, high=1.0e-2, log=True)},
            "sampler": "tpe",
            "n_trials": 2,
        },
    ],
    "baseline": {
        "feature": "mel",
        "defaults": {"epochs": 2, "units": 16, "kernels": 8, "conv_layers": 2},
        "rounds": [
            {
                "scientific": {
                    "kernels": dim(type="int", low=4, high=16, log=True, per_layer="conv_layers"),
                    "stride": dim(type="categorical", choices=[1, 2], per_layer="conv_layers"),
                },
                "nuisance": {"learning_rate": dim(type="float", low=1.0e-3, high=1.0e-2, log=True)},
                "sampler": "qmc",
                "n_trials": 2,
            }
        ],
    },
}


def base_config(tuning):
    config = copy.deepcopy(TINY_CONFIG)
    config["features"]["shard_size"] = 100  # one shard: fewer jobs to start
    config["backbones"]["names"] = ["vgg16"]
    config["screening"]["features"] = ["mel"]
    config["segments"] = {"compare": None}
    config["tuning"] = copy.deepcopy(tuning)
    return config


def one_round(n_trials, epochs, workers=1, sampler="random"):
    """A single transfer round on the cached embeddings, no baseline."""
    return {
        "combinations": [{"backbone": "vgg16", "feature": "mel"}],
        "workers": workers,
        "pruner": {"kind": "none"},
        "defaults": {"epochs": epochs, "batch_size": 8, "units": 16},
        "baseline": {"enabled": False},
        "rounds": [
            {
                "nuisance": {"learning_rate": dim(type="float", low=1.0e-3, high=1.0e-1, log=True)},
                "fixed": {"trainable_layers": 0},
                "sampler": sampler,
                "n_trials": n_trials,
            }
        ],
    }


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Corpus, mel images, splits and VGG16 embeddings of a tiny GTZAN-shaped corpus."""
    workdir = tmp_path_factory.mktemp("tuning_upstream")
    make_tiny_gtzan(workdir / "corpus")
    write_config(workdir, base_config(CHAIN))
    snakemake(
        workdir,
        "--cores",
        "2",
        "results/embeddings/vgg16/mel.npz",
        "results/features/mel/index.csv",
        "results/splits/test.csv",
    )
    return workdir


def copy_workdir(source, dest, tuning=None):
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns("log"))
    if tuning is not None:
        write_config(dest, base_config(tuning))
    return dest


def best(workdir, round_dir):
    return json.loads((Path(workdir) / round_dir / "best_trial.json").read_text())


def ran_rules(output):
    return sorted(job for job in planned_jobs(output) if job[0] != "tuning")


@pytest.fixture(scope="module")
def chain(upstream, tmp_path_factory):
    workdir = copy_workdir(upstream, tmp_path_factory.mktemp("tuning_chain") / "w")
    _, dry = snakemake(workdir, "-n", "tuning")
    _, output = snakemake(workdir, "--cores", "2", "tuning")
    return workdir, dry, output


# ---------------------------------------------------------------- the chain
def test_explicit_combinations_show_every_tuning_job_in_a_dry_run(chain):
    _, dry, _ = chain
    jobs = [job for job in planned_jobs(dry) if job[0] in ("tune_round", "collect_round")]
    assert jobs == sorted(
        [("tune_round", f"backbone=vgg16, feature=mel, round={n}, worker=0") for n in range(3)]
        + [("collect_round", f"backbone=vgg16, feature=mel, round={n}") for n in range(3)]
        + [
            ("tune_round", "backbone=baseline_cnn, feature=mel, round=0, worker=0"),
            ("collect_round", "backbone=baseline_cnn, feature=mel, round=0"),
        ]
    )


def test_each_round_starts_from_the_previous_rounds_best(chain):
    workdir, _, _ = chain
    rounds = [best(workdir, path) for path in (R0, R1, R2)]
    for n, (previous, current) in enumerate(zip(rounds, rounds[1:]), start=1):
        assert current["round"] == n and current["inherited"] == CHAIN["rounds"][n]["inherit"]
        for name in current["inherited"]:
            assert current["params"][name] == previous["params"][name], (n, name)
    first = rounds[0]
    assert {k: first["params"][k] for k in ("dense_layers", "dropout", "activation")} == {
        "dense_layers": 1,
        "dropout": [0.2],
        "activation": ["relu"],
    }
    assert first["fixed"] == {"activation": "relu", "dense_layers": 1, "dropout": 0.2}
    assert len(rounds[2]["params"]["units"]) == rounds[2]["params"]["dense_layers"]
    assert [r["sampler"] for r in rounds] == ["qmc", "tpe", "tpe"]
    for n, record in enumerate(rounds):
        assert (
            record["n_complete"] + record["n_pruned"] + record["n_failed"]
            == CHAIN["rounds"][n]["n_trials"]
        )
        assert set(record["params"]) == {
            "activation",
            "augment",
            "batch_norm",
            "batch_size",
            "dense_layers",
            "dropout",
            "epochs",
            "learning_rate",
            "trainable_layers",
            "units",
        }
        text = (workdir / [R0, R1, R2][n] / "best_trial.json").read_text()
        assert text == json.dumps(record, sort_keys=True, indent=2) + "\n"  # key-sorted
        trials = pd.read_csv(workdir / [R0, R1, R2][n] / "trials.csv")
        assert list(trials.columns[:3]) == ["number", "state", "value"] and "duration_s" in trials
        assert len(trials) == CHAIN["rounds"][n]["n_trials"]
        assert (
            trials.loc[trials["number"] == record["trial_number"], "value"].item()
            == record["value"]
        )
        study = optuna.load_study(
            study_name=record["study_name"],
            storage=journal_storage(workdir / [R0, R1, R2][n] / "study.journal"),
        )
        assert len(study.trials) == CHAIN["rounds"][n]["n_trials"]
    baseline = best(workdir, BASE)
    assert baseline["backbone"] == "baseline_cnn" and len(baseline["params"]["kernels"]) == 2


def test_best_trials_rebuild_their_models(chain, monkeypatch):
    from genreflow.models.build import build_model, build_model_from_best
    from genreflow.models.data import load_model_data, split_dataset
    from genreflow.names import GTZAN_GENRES

    workdir, _, _ = chain
    monkeypatch.chdir(workdir)  # the feature index lists images relative to the working directory
    manifests = {split: f"results/splits/{split}.csv" for split in ("train", "valid", "test")}
    for path, channels in ((R2, 3), (BASE, 1)):
        record = best(workdir, path)
        backbone = record["backbone"]
        embeddings = None if backbone == "baseline_cnn" else "results/embeddings/vgg16/mel.npz"
        data = load_model_data(backbone, "results/features/mel/index.csv", manifests, GTZAN_GENRES, 32,
                               embeddings)
        model = build_model_from_best(record, 32, None, len(GTZAN_GENRES), stats=data.stats)
        test = split_dataset(data.examples["test"], backbone, 32, 8, False, 0)
        images, labels = next(iter(test))
        assert images.shape[-1] == channels
        assert model.predict(images, verbose=0).shape == (len(labels), len(GTZAN_GENRES))
        assert len(data.examples["test"]) == sum(len(batch[1]) for batch in test)
        built = build_model(data, record["params"], seed=0)
        assert built.batch_size == record["params"]["batch_size"]


# ---------------------------------------------------------------- what reruns
def test_a_finished_chain_has_nothing_left_to_do(chain):
    workdir, _, _ = chain
    _, output = snakemake(workdir, "-n", "tuning")
    assert ran_rules(output) == [], output


def test_rewriting_a_best_trial_with_the_same_content_reruns_no_later_round(chain):
    workdir, _, _ = chain
    before = {path: (workdir / path / "best_trial.json").read_bytes() for path in (R1, R2)}
    note = (workdir / R2 / "workers/0.json").stat().st_mtime_ns
    # round 1 is collected again from its study: the same best, rewritten
    _, output = snakemake(workdir, "--cores", "2", "--forcerun", f"{R1}/best_trial.json", "tuning")
    ran = ran_rules(output)
    assert ("collect_round", "backbone=vgg16, feature=mel, round=1") in ran, output
    assert not [job for job in ran if job[0] == "tune_round"], output
    assert (workdir / R2 / "workers/0.json").stat().st_mtime_ns == note
    assert {path: (workdir / path / "best_trial.json").read_bytes() for path in (R1, R2)} == before


def test_a_changed_best_trial_reruns_the_next_round_with_its_values(chain, tmp_path):
    workdir = copy_workdir(chain[0], tmp_path / "w")
    changed = best(workdir, R1)
    changed["params"]["batch_norm"] = not changed["params"]["batch_norm"]
    (workdir / R1 / "best_trial.json").write_text(
        json.dumps(changed, sort_keys=True, indent=2) + "\n"
    )
    _, dry = snakemake(workdir, "-n", "tuning")
    assert ran_rules(dry) == [
        ("collect_round", "backbone=vgg16, feature=mel, round=2"),
        ("tune_round", "backbone=vgg16, feature=mel, round=2, worker=0"),
    ], dry
    assert "Params have changed" in dry
    old_study = best(workdir, R2)["study_name"]
    snakemake(workdir, "--cores", "2", "tuning")
    after = best(workdir, R2)
    assert after["params"]["batch_norm"] == changed["params"]["batch_norm"]
    assert after["study_name"] != old_study  # a new study in the same journal file


# ---------------------------------------------------------------- killed and resumed
def test_a_killed_tuning_job_resumes_its_study(upstream, tmp_path):
    workdir = copy_workdir(upstream, tmp_path / "w", one_round(n_trials=3, epochs=12))
    journal = workdir / R0 / "study.journal"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        "tuning",
    ]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    storage, study, seen = None, None, None
    deadline = time.time() + 300
    while time.time() < deadline and runner.poll() is None:
        if journal.exists():
            storage = storage or journal_storage(journal)
            names = storage.get_all_studies()
            if names:
                study = optuna.load_study(study_name=names[0].study_name, storage=storage)
                trials = study.get_trials(deepcopy=False)
                states = [t.state for t in trials]
                if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
                    seen = trials
                    break
        time.sleep(0.1)
    assert seen is not None, "no trial was running after a completed one"
    tuner = [
        child
        for child in psutil.Process(runner.pid).children(recursive=True)
        if any("tune_round" in part for part in child.cmdline())
    ]
    assert tuner, "no tune_round process found"
    for process in tuner:
        process.send_signal(signal.SIGKILL)
    output = runner.communicate(timeout=120)[0]
    assert runner.returncode != 0, output
    # what the kill left: the trials it had finished, and the one it was running
    killed = optuna.load_study(study_name=study.study_name, storage=journal_storage(journal)).trials
    completed = {t.number: t.value for t in killed if t.state == TrialState.COMPLETE}
    (running,) = [t.number for t in killed if t.state == TrialState.RUNNING]
    assert completed and len(completed) < 3

    snakemake(workdir, "--cores", "2", "tuning")
    study = optuna.load_study(study_name=study.study_name, storage=journal_storage(journal))
    trials = {t.number: t for t in study.trials}
    assert {n: trials[n].value for n in completed} == completed  # kept, not rerun
    assert trials[running].state == TrialState.FAIL
    assert trials[running].user_attrs["claim"] == "interrupted"
    counted = round_trials(study, 3)
    assert len(counted) == 3 and running not in {t.number for t in counted}
    record = best(workdir, R0)
    assert record["n_complete"] + record["n_pruned"] + record["n_failed"] == 3
    assert record["n_interrupted"] == 1
    table = pd.read_csv(workdir / R0 / "trials.csv")
    assert table.set_index("number").loc[running, "counted"] == False  # noqa: E712
    assert "interrupted" in table.set_index("number").loc[running, "note"]


def test_a_torn_journal_record_is_repaired_and_the_round_completes(upstream, tmp_path):
    """The issue's reproduction: finish a round, cut the last line of its study.journal in
    half, remove its workers/, best_trial.json and trials.csv, and rebuild best_trial.json.
    The rerun repairs the journal (the torn bytes moved aside, a WARNING in the log), keeps
    every trial completed before the cut, and ends with exactly n_trials counted trials."""
    import shutil

    workdir = copy_workdir(upstream, tmp_path / "w", one_round(n_trials=3, epochs=2))
    snakemake(workdir, "--cores", "2", "tuning")
    journal = workdir / R0 / "study.journal"
    name = best(workdir, R0)["study_name"]
    before = optuna.load_study(study_name=name, storage=journal_storage(journal, lambda m: None))
    completed_before = {t.number: t.value for t in before.trials if t.state == TrialState.COMPLETE}
    data = journal.read_bytes()
    last = data[:-1].rfind(b"\n") + 1
    journal.write_bytes(data[: last + (len(data) - last) // 2])  # the last record, half written
    shutil.rmtree(workdir / R0 / "workers")
    (workdir / R0 / "best_trial.json").unlink()
    (workdir / R0 / "trials.csv").unlink()

    snakemake(workdir, "--cores", "2", f"{R0}/best_trial.json")
    log = (workdir / "logs/tune_round/vgg16/mel/round_0/0.log").read_text()
    assert f"WARNING: {journal.relative_to(workdir)} ended in a torn record" in log
    assert len(list(journal.parent.glob("study.journal.torn-*"))) == 1
    study = optuna.load_study(study_name=name, storage=journal_storage(journal, lambda m: None))
    counted = round_trials(study, 3)
    assert len(counted) == 3 and all(t.state != TrialState.RUNNING for t in counted)
    after = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    torn = max(completed_before)  # the trial whose completion record was cut
    assert {n: v for n, v in completed_before.items() if n != torn} == {
        n: after[n] for n in completed_before if n != torn}
    record = best(workdir, R0)
    assert record["n_complete"] + record["n_pruned"] + record["n_failed"] == 3


# ---------------------------------------------------------------- workers
def test_two_workers_share_one_study_and_run_exactly_n_trials(upstream, tmp_path):
    workdir = copy_workdir(
        upstream, tmp_path / "w", one_round(n_trials=6, epochs=3, workers=2, sampler="tpe")
    )
    _, output = snakemake(workdir, "--cores", "2", "tuning", "--set-threads", "tune_round=1")
    notes = [json.loads((workdir / R0 / f"workers/{w}.json").read_text()) for w in (0, 1)]
    ran = [set(note["ran"]) for note in notes]
    assert all(ran) and not ran[0] & ran[1], notes  # both worked, no trial twice
    record = best(workdir, R0)
    study = optuna.load_study(
        study_name=record["study_name"], storage=journal_storage(workdir / R0 / "study.journal")
    )
    counted = round_trials(study, 6)
    assert {t.number for t in counted} == ran[0] | ran[1] and len(counted) == 6
    assert sum(t.user_attrs.get("claim", "held") == "held" for t in study.trials) == 6
    assert record["n_complete"] + record["n_pruned"] + record["n_failed"] == 6
    assert len(pd.read_csv(workdir / R0 / "trials.csv")) == 6


# ---------------------------------------------------------------- config errors
def test_inheriting_a_name_the_previous_round_does_not_produce_fails_before_any_job(tmp_path):
    tuning = copy.deepcopy(CHAIN)
    tuning["rounds"][2]["inherit"].append("learning_rate")
    del tuning["rounds"][1]["nuisance"]["learning_rate"]
    config = base_config(tuning)
    config["dataset"]["root"] = "corpus"
    (tmp_path / "corpus").mkdir()
    write_config(tmp_path, config)
    code, output = snakemake(tmp_path, "--cores", "1", check=False)
    assert code != 0
    assert (
        "config key tuning.rounds.2.inherit: 'learning_rate' is not produced by round 1" in output
    )
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


# ---------------------------------------------------------------- cross-validated rounds
def test_a_cross_validated_chain_completes_and_feeds_the_next_round(tmp_path):
    """tuning.cv_folds: 3 on heads: each round's trials train once per fold of the pooled
    train and validation tracks, best_trial.json says so, and round 1 inherits from it."""
    from genreflow.synthetic import write_corpus

    write_corpus(tmp_path / "corpus", 6, 4.0, log=lambda message: None)
    rounds = [
        {"nuisance": {"learning_rate": dim(type="float", low=1.0e-3, high=1.0e-2, log=True)},
         "fixed": {"trainable_layers": 0}, "sampler": "qmc", "n_trials": 2},
        {"inherit": ["learning_rate", "trainable_layers"],
         "scientific": {"units": dim(type="int", low=8, high=32)},
         "sampler": "random", "n_trials": 2, "objective": "valid_loss"},
    ]
    config = {
        "dataset": {"kind": "gtzan", "root": "corpus", "genres": ["classical", "metal", "reggae"]},
        "audio": {"seconds": 4.0, "min_seconds": 3.0},
        "features": {"image_size": 32, "shard_size": 20},
        "backbones": {"names": ["vgg16"], "weights": "none"},
        "segments": {"compare": None},
        "screening": {"features": ["mel"], "epochs": 3, "patience": 2},
        "tuning": {"combinations": [{"backbone": "vgg16", "feature": "mel"}], "cv_folds": 3,
                   "pruner": {"kind": "none"}, "baseline": {"enabled": False},
                   "defaults": {"epochs": 4, "batch_size": 8, "units": 16}, "rounds": rounds},
    }
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "tuning")
    first, second = best(tmp_path, R0), best(tmp_path, R1)
    assert first["cv_folds"] == 3 and len(first["fold_values"]) == 3
    assert first["value"] == pytest.approx(np.mean(first["fold_values"]), abs=1e-6)
    assert second["params"]["learning_rate"] == first["params"]["learning_rate"]
    assert second["objective"] == "valid_loss" and second["cv_folds"] == 3
    trials = pd.read_csv(tmp_path / R0 / "trials.csv")
    assert all(len(str(v).split()) == 3 for v in trials["fold_values"])
    log = (tmp_path / "logs/tune_round/vgg16/mel/round_0/0.log").read_text()
    assert "trials use 3 fold(s) of the pooled train and validation tracks" in log
