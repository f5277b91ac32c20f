"""The Keras models: `backbones` (the image backbones, their weights, inference mode and
embeddings), `heads` (the classification head, alone or on a backbone), `train` (seeding,
the one training rule, prediction). The baseline CNN is `genreflow.baseline`, the audio
backbones `genreflow.audio_embeddings`.

Import `genreflow.models.backbones` before loading a saved model.keras of an image
backbone: it registers `InferenceMode`, the layer that wraps the backbone.
"""
