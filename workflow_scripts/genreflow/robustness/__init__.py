"""The robustness stage: how much each final model loses when only the recording changes.

- `perturb`: the perturbation families (audio in, audio out; seeded, parameterised, numpy /
  scipy / soundfile / soxr, librosa for the pitch shift only), for this stage's fixed test
  conditions and for augmented training views;
- `conditions`: the test clips under each condition (`perturb_test_clips`, one job per
  perturbation; `render_test_songs`, the synthetic corpus' second rendering), in tables the
  main run's feature and musicnn rules read like a corpus shard;
- `score`: a chain's final models (every round and seed) fed the clean and the conditions'
  test inputs as the bundle feeds them (`score_final_models`);
- `summary`: every model under every condition with intervals and paired differences
  against the same model clean, an HTML table, the figure (`genreflow.plots.robustness`)
  and the report front page's line (`summarize_robustness`).

TensorFlow is imported only inside `score`'s functions.
"""
