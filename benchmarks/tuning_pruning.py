"""Pruning, side by side: the same round (the study's round 1 search space, TPE, same seed)
run once with the median pruner and once without, trial for trial interleaved so that both
see the same machine load. Prints wall time per trial, trials completed per hour and the
best validation accuracy each reaches.

    .venv/bin/python benchmarks/tuning_pruning.py --workdir .   # a finished demo run

Trials train the head on the demo's cached VGG16 embeddings (trainable_layers 0, as the
demo's round 0 mostly picks) for up to --epochs epochs; with --workdir elsewhere, a small
synthetic set of embeddings is made there instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tuning_memory import GENRES, demo_inputs, synthetic_inputs  # noqa: E402

ROUND = {
    "scientific": {
        "dense_layers": {"type": "int", "low": 1, "high": 3},
        "batch_norm": {"type": "categorical", "choices": [False, True]},
    },
    "nuisance": {
        "dropout": {"type": "float", "low": 0.0, "high": 0.6},
        "units": {"type": "int", "low": 64, "high": 512, "log": True},
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "activation": {"type": "categorical", "choices": ["relu", "selu", "swish", "elu"]},
    },
    "fixed": {"trainable_layers": 0},
    "sampler": "tpe",
    "startup_trials": 5,
    "seed": 0,
}
PRUNER = {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 5, "percentile": 25.0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--feature", default="stft")
    parser.add_argument("--trials", type=int, default=40, help="trials per variant")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()

    import numpy as np
    import optuna
    from optuna.trial import TrialState

    from genreflow.journal import journal_storage
    from genreflow.models.data import load_model_data
    from genreflow.tuning.space import RoundPlan, make_pruner, make_sampler
    from genreflow.tuning.study import claim_trial
    from genreflow.tuning.trial import TrialRule
    from genreflow.tuning.worker import RoundContext, run_trial

    workdir = Path(args.workdir).resolve()
    os.chdir(workdir)
    inputs = demo_inputs(workdir, args.feature)
    source = f"demo results in {workdir} (vgg16 + {args.feature})"
    if inputs is None:
        inputs, source = synthetic_inputs(workdir), f"synthetic embeddings in {workdir}/synthetic"
    manifests = {split: str(inputs[split]) for split in ("train", "valid", "test")}
    data = load_model_data(
        "vgg16", str(inputs["index"]), manifests, GENRES, 0, str(inputs["embeddings"])
    )
    from genreflow.hyperparameters import HEAD_DEFAULTS

    defaults = {**HEAD_DEFAULTS, "batch_size": 32, "epochs": args.epochs}
    plan = RoundPlan.from_config({**ROUND, "n_trials": args.trials}, "transfer")
    print(
        f"{args.trials} trials per variant, up to {args.epochs} epochs, on {source}: "
        f"{len(data.embedding_rows['train']['label'])} train / {len(data.embedding_rows['valid']['label'])} valid "
        f"examples; {os.cpu_count()} CPUs; pruner {PRUNER}"
    )
    variants = {"median pruner": PRUNER, "no pruning": {**PRUNER, "kind": "none"}}
    with tempfile.TemporaryDirectory() as folder:
        storage = journal_storage(Path(folder) / "pruning.journal")
        studies, contexts, seconds = {}, {}, {}
        for name, pruner in variants.items():
            studies[name] = optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=make_sampler(plan),
                pruner=make_pruner(pruner),
            )
            contexts[name] = RoundContext(
                plan, defaults, {}, TrialRule(plan.objective, 8, prune=pruner["kind"] != "none"),
                data=data,
            )
            seconds[name] = []
        for _ in range(args.trials):
            for name in variants:
                trial = claim_trial(studies[name], args.trials, 0, "bench")
                started = time.perf_counter()
                run_trial(studies[name], trial, contexts[name], log=lambda message: None)
                seconds[name].append(time.perf_counter() - started)
        print(
            f"{'':>14} {'s/trial':>8} {'trials/h':>9} {'epochs':>7} {'pruned':>7} {'failed':>7} {'best acc':>9} {'total s':>8}"
        )
        rates = {}
        for name, study in studies.items():
            trials = study.trials
            total = sum(seconds[name])
            epochs = sum(t.user_attrs.get("epochs_run", 0) for t in trials)
            best = max(
                (t.value for t in trials if t.state == TrialState.COMPLETE), default=float("nan")
            )
            rates[name] = 3600 * len(trials) / total
            print(
                f"{name:>14} {np.mean(seconds[name]):8.2f} {rates[name]:9.0f} {epochs:7d} "
                f"{sum(t.state == TrialState.PRUNED for t in trials):7d} "
                f"{sum(t.state == TrialState.FAIL for t in trials):7d} {best:9.3f} {total:8.0f}"
            )
        print(
            f"trials per hour, pruned / unpruned: {rates['median pruner'] / rates['no pruning']:.2f}x"
        )


if __name__ == "__main__":
    main()
