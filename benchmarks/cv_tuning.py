"""Does a cross-validated objective make tuning less of a lottery? One head round on the
demo's cached embeddings, tuned with 5 sampler seeds, with tuning.cv_folds 1 (the single
20-track validation split) against 5 (the mean over 5 folds of the pooled 100 train and
validation tracks): the spread of the chosen trial's test macro-F1 across the seeds, the
number of trials tied at the best value, and the cost in trials per hour, side by side.

Each chosen configuration is trained again as a final model is (train split, stopped on
the validation split, seed 0) and scored once on the test split.

Usage: python benchmarks/cv_tuning.py --workdir DEMO_RUN [--backbone efficientnetb0
       --feature stft --seeds 5 --trials 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

ROUND = {
    "scientific": {"dense_layers": {"type": "int", "low": 1, "high": 2},
                   "batch_norm": {"type": "categorical", "choices": [False, True]}},
    "nuisance": {"dropout": {"type": "float", "low": 0.0, "high": 0.6},
                 "units": {"type": "int", "low": 32, "high": 512, "log": True},
                 "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
    "fixed": {"trainable_layers": 0},
    "sampler": "tpe",
    "startup_trials": 6,
    "objective": "valid_accuracy",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--backbone", default="efficientnetb0")
    parser.add_argument("--feature", default="stft")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    import os

    import optuna

    from genreflow.hyperparameters import HEAD_DEFAULTS
    from genreflow.models.build import build_model
    from genreflow.models.data import load_model_data
    from genreflow.models.train import predict_proba, train
    from genreflow.names import GTZAN_GENRES
    from genreflow.scoring import score
    from genreflow.tuning.collect import best_trial
    from genreflow.tuning.space import RoundPlan, make_sampler, suggest_params
    from genreflow.tuning.trial import TrialRule, train_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.chdir(args.workdir)
    manifests = {split: f"results/splits/{split}.csv" for split in ("train", "valid", "test")}
    data = load_model_data(args.backbone, f"results/features/{args.feature}/index.csv", manifests,
                           GTZAN_GENRES, 0, f"results/embeddings/{args.backbone}/{args.feature}.npz")
    defaults = {**HEAD_DEFAULTS, "batch_size": 32, "epochs": args.epochs}
    plan = RoundPlan.from_config({**ROUND, "n_trials": args.trials}, "transfer")
    print(f"{args.backbone} + {args.feature}: {len(data.embeddings['train'])} train, "
          f"{len(data.embeddings['valid'])} valid, {len(data.embeddings['test'])} test tracks; "
          f"{args.seeds} sampler seeds x {args.trials} trials per variant")

    def test_f1(params) -> float:
        built = build_model(data, params, seed=0)
        train(built.model, built.train_data, built.validation, epochs=params["epochs"],
              patience=8, batch_size=built.batch_size, seed=0)
        rows = data.embedding_rows["test"]
        probabilities = predict_proba(built.model, data.embeddings["test"])
        return score(rows["clip"], rows["label"], probabilities, GTZAN_GENRES)["tracks"]["macro_f1"]

    results = {}
    for folds in (1, 5):
        data.fold_seed = 0
        chosen, ties, seconds = [], [], 0.0
        for seed in range(args.seeds):
            seeded = dataclasses.replace(plan, seed=seed)
            study = optuna.create_study(direction="maximize", sampler=make_sampler(seeded))
            started = time.perf_counter()
            for _ in range(args.trials):
                trial = study.ask()
                params = suggest_params(trial, seeded, defaults, {})
                trial.set_user_attr("params", params)
                result = train_trial(trial, params, data, seed + trial.number,
                                     TrialRule(seeded.objective, 8, folds, prune=False))
                trial.set_user_attr("valid_loss", result.valid_loss)
                study.tell(trial, result.value)
            seconds += time.perf_counter() - started
            complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            best, tied, _ = best_trial(complete, seeded.objective)
            chosen.append(test_f1(best.user_attrs["params"]))
            ties.append(tied)
            print(f"cv_folds {folds}, seed {seed}: best valid accuracy {best.value:.3f} "
                  f"({tied} trials tied), its test macro-F1 {chosen[-1]:.3f}", flush=True)
        results[folds] = (chosen, ties, 3600 * args.seeds * args.trials / seconds)

    print("\n| cv_folds | chosen trial's test macro-F1 (per seed) | sd over seeds | "
          "range | trials tied at the best (per seed) | trials/hour |")
    print("|---:|---|---:|---:|---|---:|")
    for folds, (chosen, ties, rate) in results.items():
        print(f"| {folds} | {', '.join(f'{v:.3f}' for v in chosen)} | "
              f"{statistics.stdev(chosen):.3f} | {max(chosen) - min(chosen):.3f} | "
              f"{', '.join(map(str, ties))} | {rate:.0f} |")
    sd1, sd5 = (statistics.stdev(results[k][0]) for k in (1, 5))
    print(f"\nspread of the chosen trial's test macro-F1: cv_folds 5 / cv_folds 1 = "
          f"{sd5 / sd1 if sd1 else float('nan'):.2f}")


if __name__ == "__main__":
    main()
