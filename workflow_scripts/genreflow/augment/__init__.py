"""Augmented training views (training.augment): each training track also contributes K
perturbed copies, each drawn from one family with its own seed, computed once as files.

- `families`: the view families (random EQ curves, band limits, coloured noise, rooms), each
  drawing its parameters from its config ranges and applying them with
  `genreflow.robustness.perturb`'s functions; which family draws which view;
- `clips`: one job per family (`perturb_training_clips`): its views of the training tracks
  as audio files and a table the main run's feature and musicnn rules read like a corpus
  shard (the views' images and embeddings are theirs).

What a model does with the views (the training rows of its split or fold, never a held-out
track's) is `genreflow.models.views` and `genreflow.models.build`'s. No TensorFlow here.
"""
