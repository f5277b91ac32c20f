"""The final evaluation: each tuned best configuration (and the baseline CNN) is trained
again with its best hyperparameters, once per seed, tested once on the held-out split,
and the seeds are summarised as mean ± standard deviation (the study's Table 5).

- `train`: one (model, seed) job (`train_final`): the model is built by
  `genreflow.models.build` from best_trial.json, as its trials were, and tested once;
- `seeds`: a model's seeds combined (`combine_seeds`);
- `summary`: the models ranked on validation, Table 5, the headline (`summarize_final`).
- `calibration`: each model's temperature, fitted per seed on the validation tracks, and
  its test split's calibration before and after (`calibrate_final`);
- `unfamiliar`: the "unfamiliar" score of the seed a bundle exports, fitted on its own
  model.keras's representations of the training split, thresholded on validation
  (`fit_unfamiliarity`; the score itself is `genreflow.models.unfamiliar`).

One Snakemake job trains one (model, seed), so seeds run in parallel on a cluster and a
killed job loses one seed. Track-level scores (segment probabilities averaged per track)
come from `genreflow.scoring.score`, as in screening; the track level is the headline, and
equals the clip level when clips are not cut into segments. Final training stands on
`genreflow.models` alone: it never imports `genreflow.tuning`, only reads its
best_trial.json.

TensorFlow is imported only inside the functions that train, so that the combining and
summarising jobs start in a fraction of a second.
"""

# Scores reported per model: (split, level, metric). "tracks" averages the segment
# probabilities of each track; "examples" scores every image (segment) on its own.
HEADLINE_LEVEL = "tracks"
SCORES = [
    (split, level, metric)
    for split in ("test", "valid")
    for level in ("tracks", "examples")
    for metric in ("macro_f1", "accuracy", "loss")
]


def score_column(split: str, level: str, metric: str) -> str:
    """The column of a score in metrics.json and the tables: track-level scores carry the
    plain names (test_macro_f1), as in screening; segment-level ones `segment_`."""
    infix = "" if level == HEADLINE_LEVEL else "segment_"
    return f"{split}_{infix}{metric}"
