"""Chained Optuna tuning rounds for the transfer models and the baseline CNN.

A round (config `tuning.rounds`, `tuning.baseline.rounds`) searches its scientific and
nuisance hyperparameters, takes the names in `inherit` from the previous round's best trial
and the literal values in `fixed`; `defaults` fill in the rest. Its result,
`results/tuning/{backbone}/{feature}/round_{n}/best_trial.json`, holds every effective
hyperparameter, so that it alone rebuilds the model. `backbone` is `baseline_cnn` for the
baseline, `feature` the image type it was trained on.

Modules
-------
- `space`: a round's declaration (`Dimension`, `RoundPlan`), sampling, samplers, pruners,
  objectives.
- `study`: the study's name fingerprint and the trial claims in its journal.
- `trial`: one trial's training (`train_trial`, `TrialRule`), cross-validated or not; the
  model itself is `genreflow.models.build`'s, the data `genreflow.models.data`'s.
- `worker`: one worker job (`run_worker`).
- `collect`: best_trial.json and trials.csv (`collect_round`).

What other stages use
---------------------
Nothing of this package: final models (`genreflow.evaluation`) read a round's
`best_trial.json` and build its model with `genreflow.models.build`, the builder the
trials used, so a final model is its trial's model trained by the same rule.
- `best_trial.json` keys: backbone, feature, round, params, inherited, fixed, scientific,
  nuisance, value, objective, best_epoch, valid_loss, patience, trial_number, n_trials,
  n_complete, n_pruned, n_failed, n_interrupted, sampler, seed, study_name, corpus, split,
  weights, weights_source, pretrained.
  `trials.csv` (one row per trial that ran): number, state, value, the sampled parameters,
  worker, counted, epochs_run, best_epoch, valid_loss, note, duration_s. The study itself is
  in `study.journal` next to them: `optuna.load_study(study_name=best["study_name"],
  storage=genreflow.journal.journal_storage(path))`. The journal also holds trials that do not count (user
  attribute `claim`: interrupted, crashed, surplus) and older studies of the round: for
  plots take `study.round_trials(study, best["n_trials"])`.

How a round runs
----------------
`worker.run_worker` is one worker job: it opens the round's study in the journal file (with a lock
that works on network file systems, repaired first if a crash left it with a torn last
record: `genreflow.journal`) and runs trials until the study holds `n_trials`.
Several workers may share a study; each trial is claimed before it runs (`study.claim_trial`), so
that together they run exactly `n_trials`. A worker killed mid-trial leaves that trial
RUNNING; the worker's next incarnation marks it failed ("interrupted", not counted) and runs
a replacement. `collect.collect_round` then writes best_trial.json and trials.csv.

The study's name carries a fingerprint of everything its trials depend on (round, defaults,
inherited values, data), so a changed round starts a new study in the same journal, while a
rerun of an unchanged one resumes it; `n_trials` and `workers` are left out, so raising
n_trials extends a study.

TensorFlow/Keras are imported only where a model is built, so that collecting a round stays
a light local job.
"""

import warnings

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
