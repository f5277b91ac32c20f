"""The Keras models, and everything that builds or feeds one; tuning trials, final models and
prediction all stand on this package, and it on none of theirs.

- `backbones`: the image backbones (Keras' own ImageNet path, weights checks, the trainable
  tail, inference mode, pooled embeddings); `heads`: the head, alone or on a backbone;
  `baseline`: the CNN trained from scratch; `activations`: fine-tuning on the cached
  activations below a backbone's trainable tail;
- `images`: feature index x split manifest, and the tf.data image pipeline;
- `data`: what the models of one (backbone, feature) train and score on (`ModelData`,
  `ModelInputs`, `ModelSettings`);
- `build`: the model of a set of hyperparameters (`build_model`), for tuning and final
  training alike; `train`: seeding, the one training rule, prediction;
- `assemble`: the whole network a final model's model.keras holds, checked before it is
  saved.
- `unfamiliar`: how far an input lies from what a model was trained on (the "unfamiliar"
  flag): the representation a saved model's head reads, and its distance to the training
  examples of the nearest genre.

Import `genreflow.models.backbones` before loading a saved model.keras of an image
backbone: it registers `InferenceMode`, the layer that wraps the backbone.
"""
