"""The workflow's vocabulary: the one definition of every name that config keys, paths,
wildcards, tables and the package share. No imports beyond the standard library, so that
validating a config and planning the DAG read them for free.

- splits: `SPLITS`;
- what a model sees: the five image `FEATURES`, and `AUDIO_FEATURE`, the feature of the
  audio backbones, which embed the audio itself;
- models: `BASELINE` (the CNN trained from scratch), the musicnn taggers
  (`MUSICNN_MODELS`, audio backbones), and the image backbones (their facts are
  `genreflow.registry`'s); `model_kind` says which kind a backbone name is;
- segment lengths (`WHOLE`, `length_label`);
- the robustness stage's conditions besides its perturbations (`CLEAN`, `SECOND_RENDERING`);
- corpora: GTZAN's ten genres (`GTZAN_GENRES`, which the synthetic demo renders), and the
  published artist-filtered split (`FAULT_FILTERED`);
- how tables and figures print models (`model_label`).
"""

from __future__ import annotations

SPLITS = ("train", "valid", "test")

FEATURES = ("mel", "mfcc", "stft", "spectrogram", "chroma")
AUDIO_FEATURE = "audio"

BASELINE = "baseline_cnn"
# musicnn's taggers (genreflow.audio_embeddings), pretrained on music whatever
# backbones.weights says about the image backbones: backbone name -> checkpoint folder.
MUSICNN_MODELS = {"musicnn_msd": "MSD_musicnn", "musicnn_mtt": "MTT_musicnn"}

GTZAN_GENRES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
FAULT_FILTERED = "fault_filtered"


def is_audio_backbone(name: str) -> bool:
    return name in MUSICNN_MODELS


def model_kind(backbone: str) -> str:
    """`baseline` (the CNN from scratch, its own hyperparameters) or `transfer` (a head on
    an image or audio backbone)."""
    return "baseline" if backbone == BASELINE else "transfer"


# The robustness stage's test conditions besides the perturbations the config names
# (robustness.perturbations): the test split as it is, and the synthetic corpus' test songs
# recorded another way (genreflow.synthetic, rendering 1).
CLEAN = "clean"
SECOND_RENDERING = "second_rendering"


# Segment lengths, as paths and tables name them: "whole" clips, or e.g. "3s".
WHOLE = "whole"


def length_label(seconds: float | None) -> str:
    """The path component of a segment length: 'whole' or e.g. '3s', '2.5s'."""
    return WHOLE if seconds is None else f"{float(seconds):g}s"


def length_seconds(label: str) -> float | None:
    if label == WHOLE:
        return None
    if not label.endswith("s"):
        raise ValueError(f"segment length {label!r} is neither 'whole' nor like '3s'")
    return float(label[:-1])


def length_order(labels) -> list[str]:
    """Length labels in reading order: whole clips first, then shortest to longest."""
    return sorted(set(labels), key=lambda label: (label != WHOLE, length_seconds(label) or 0))


# How tables and figures name the models.
BACKBONE_LABELS = {
    "efficientnetb0": "EfficientNetB0",
    "inceptionv3": "InceptionV3",
    "resnet50": "ResNet50",
    "vgg16": "VGG16",
    "musicnn_msd": "musicnn (MSD)",
    "musicnn_mtt": "musicnn (MTT)",
    BASELINE: "Baseline CNN",
}
FEATURE_LABELS = {
    "mel": "mel spectrogram",
    "mfcc": "MFCC",
    "stft": "STFT",
    "spectrogram": "spectrogram",
    "chroma": "chromagram",
    AUDIO_FEATURE: "audio",
}


def model_label(backbone: str, feature: str) -> str:
    """Human-readable model name, e.g. 'VGG16 + mel spectrogram'."""
    return f"{BACKBONE_LABELS.get(backbone, backbone)} + {FEATURE_LABELS.get(feature, feature)}"
