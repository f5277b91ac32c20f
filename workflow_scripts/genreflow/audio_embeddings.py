"""Audio-pretrained backbones: embeddings of musicnn's taggers, computed from the audio.

musicnn (Pons & Serra 2019) ships two musically motivated CNNs trained to tag music, on
the Million Song Dataset (`musicnn_msd`) and on MagnaTagATune (`musicnn_mtt`), as TF1
checkpoints inside its wheel, so they work offline. Its code is TF1 graph code: it needs
`tf-keras` with TF_USE_LEGACY_KERAS=1 and graph mode, so it runs only in the embed_audio
job's own process (workflow_scripts/embed_audio.py sets the variable before TensorFlow is
imported), never in a Keras 3 training process. Only the model definition is taken from
the package (`musicnn.models.define_model`); the input, batching and checkpoint restore
are ours, because the package's extractor decodes one file per call, rebuilds the graph
per call and swallows restore errors (it would quietly tag with random weights).

Input, as musicnn was trained: 16 kHz mono, 512-point STFT, hop 256, 96 mel bands, power
mel spectrogram -> log10(10000 x + 1) (in float32: the extractor's float16 overflows), of
the audio brought to one RMS level first (musicnn's input is not level-invariant),
cut into non-overlapping 3 s patches (187 frames).
A clip's (or segment's) embedding is the mean over its patches of one layer's output.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreflow.io import file_md5
from genreflow.names import MUSICNN_MODELS

# The checkpoint folders of musicnn_msd and musicnn_mtt, in genreflow.names' order.
_MSD, _MTT = MUSICNN_MODELS.values()
# Tags each checkpoint was trained on (the logits' width).
MUSICNN_CLASSES = {_MSD: 50, _MTT: 50}
# md5 of the checkpoint files in the musicnn 0.1.0 wheel: a corrupted or swapped copy is
# refused before TensorFlow reads it.
MUSICNN_MD5 = {
    _MSD: {
        ".index": "a4558c73008236781ef8b5ae747d6d51",
        ".data-00000-of-00001": "fa0ae3fd01780a22ab969d994a4415be",
    },
    _MTT: {
        ".index": "b874fcc39855eb8f5f4ed93a85618765",
        ".data-00000-of-00001": "1c380582c347ee40d908f84d8bd2e5b2",
    },
}
# Layers a head can be trained on, and their width.
MUSICNN_LAYERS = {"max_pool": 753, "mean_pool": 753, "penultimate": 200}

SAMPLE_RATE = 16000
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1


class CheckpointError(RuntimeError):
    """A musicnn checkpoint that is missing, corrupted, or did not restore."""


def checkpoint_root(setting: str | None) -> Path:
    """The folder holding MSD_musicnn/ and MTT_musicnn/: `setting`, or the installed
    musicnn package's (found without importing it: importing needs TensorFlow)."""
    if setting:
        return Path(setting)
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "backbones.names lists a musicnn backbone but the musicnn package is not "
            "installed. Install it without its dependencies (its metadata pins numpy<1.17): "
            "pip install --no-deps -r requirements.lock (or pip install --no-deps "
            "musicnn==0.1.0 tf-keras==2.21.0), or set backbones.musicnn.checkpoints to a "
            "folder holding MSD_musicnn/ and MTT_musicnn/."
        )
    return Path(list(spec.submodule_search_locations)[0])


def checkpoint_files(backbone: str, root: str | os.PathLike) -> dict[str, str]:
    """{suffix: path} of a backbone's checkpoint files (the prefix is the folder + '/')."""
    model = MUSICNN_MODELS[backbone]
    return {suffix: str(Path(root) / model / suffix) for suffix in MUSICNN_MD5[model]}


def checkpoint_prefix(backbone: str, root: str | os.PathLike) -> str:
    # musicnn saved its checkpoints with an empty file name: the prefix is the folder.
    return str(Path(root) / MUSICNN_MODELS[backbone]) + "/"


def check_checkpoint_files(backbone: str, root: str | os.PathLike) -> None:
    """Refuse a missing or altered checkpoint file, naming it and the fix."""
    model = MUSICNN_MODELS[backbone]
    for suffix, path in checkpoint_files(backbone, root).items():
        if not os.path.exists(path):
            raise CheckpointError(f"{backbone}: checkpoint file {path} is missing")
        found = file_md5(path)
        expected = MUSICNN_MD5[model][suffix]
        if found != expected:
            raise CheckpointError(
                f"{backbone}: checkpoint file {path} has md5 {found}, expected {expected} "
                "(musicnn 0.1.0): it is corrupted or another model's. Reinstall it: "
                "pip install --force-reinstall --no-deps musicnn==0.1.0"
            )


# ------------------------------------------------------------------------------- input


# musicnn's input (log10(10000 x + 1) of the mel power) is not level-invariant: the same
# music recorded 12 dB quieter gave other embeddings, and cost the demo's chosen musicnn
# model 0.32 of test macro-F1 (the robustness stage's gain row), where every image is
# relative to its own maximum and costs nothing. So each clip, segment or window is scaled
# to one RMS level first (a typical level of music, -20 dBFS), by at most MAX_GAIN_DB, so
# that a nearly silent window is not raised to full loudness.
REFERENCE_RMS = 0.1
MAX_GAIN_DB = 40.0


def level_normalised(y: np.ndarray) -> np.ndarray:
    """`y` scaled to REFERENCE_RMS (the gain capped at MAX_GAIN_DB)."""
    y = np.asarray(y, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms == 0.0:
        return y
    gain = min(REFERENCE_RMS / rms, 10 ** (MAX_GAIN_DB / 20))
    return (y * np.float32(gain)).astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's input of 16 kHz mono audio, brought to one level (`level_normalised`):
    (frames, 96) log-compressed mel power."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=level_normalised(y),
        sr=SAMPLE_RATE,
        hop_length=FFT_HOP,
        n_fft=FFT_SIZE,
        n_mels=N_MELS,
    ).T
    # musicnn's extractor casts to float16 first, where 10000 * x overflows to inf for any
    # bin above 6.55 (loud clips) and the network then outputs NaN; float32 keeps the
    # same compression without the overflow.
    return np.log10(10000 * mel.astype(np.float32) + 1)


def patches(spectrogram: np.ndarray) -> np.ndarray:
    """Non-overlapping 187-frame patches (n, 187, 96); a short input is zero-padded (the
    log-mel of silence is 0) to one patch, a remainder shorter than a patch is dropped."""
    frames = spectrogram.shape[0]
    if frames < PATCH_FRAMES:
        spectrogram = np.pad(spectrogram, ((0, PATCH_FRAMES - frames), (0, 0)))
        frames = PATCH_FRAMES
    count = (frames - PATCH_FRAMES) // PATCH_FRAMES + 1
    return np.stack(
        [spectrogram[k * PATCH_FRAMES : (k + 1) * PATCH_FRAMES] for k in range(count)]
    )


# ------------------------------------------------------------------------------- model


class MusicnnEmbedder:
    """One musicnn graph and session, restored and verified once, run on many patches."""

    def __init__(self, backbone: str, root: str | os.PathLike, layer: str = "max_pool"):
        if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
            raise RuntimeError(
                "musicnn needs TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported "
                "(workflow_scripts/embed_audio.py does so); do not run it in a Keras 3 process"
            )
        if layer not in MUSICNN_LAYERS:
            raise ValueError(f"musicnn layer {layer!r} is not one of {sorted(MUSICNN_LAYERS)}")
        import tensorflow as tf
        from musicnn import models

        check_checkpoint_files(backbone, root)
        self.backbone, self.layer = backbone, layer
        self.prefix = checkpoint_prefix(backbone, root)
        model = MUSICNN_MODELS[backbone]
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, N_MELS])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            outputs = models.define_model(self.x, self.is_training, model, MUSICNN_CLASSES[model])
            names = ("logits", "timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool",
                     "max_pool", "penultimate")
            self.output = dict(zip(names, outputs))[layer]
            self.variables = tf.compat.v1.global_variables()
            self.session = tf.compat.v1.Session(graph=self.graph)
            saver = tf.compat.v1.train.Saver(self.variables)
            restore_verified(self.session, saver, self.variables, self.prefix)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.output, {self.x: batch, self.is_training: False})

    def close(self) -> None:
        self.session.close()


def restore_verified(session, saver, variables, prefix: str) -> None:
    """Restore `variables` from `prefix`, then check every restored value against the
    checkpoint read independently; anything short of equality raises CheckpointError.

    The check is what catches a restore that failed quietly (musicnn's extractor wraps
    restore in a bare except) and left randomly initialised weights in the graph.
    """
    import tensorflow as tf

    session.run(tf.compat.v1.variables_initializer(variables))
    try:
        saver.restore(session, prefix)
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise CheckpointError(f"restoring {prefix} failed: {message}") from None
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    values = session.run(variables)
    missing, differing = [], []
    for variable, value in zip(variables, values):
        name = variable.op.name
        if not reader.has_tensor(name):
            missing.append(name)
        elif not np.array_equal(reader.get_tensor(name), value):
            differing.append(name)
    if missing or differing:
        raise CheckpointError(
            f"musicnn checkpoint {prefix} did not restore: "
            f"{len(differing)} of {len(variables)} variables differ from the checkpoint "
            f"({differing[:3]}), {len(missing)} are not in it ({missing[:3]})"
        )


# ------------------------------------------------------------------------------- shard


@dataclass
class AudioExamples:
    """Patches of every clip (or segment) of a shard, and which example each belongs to."""

    patches: np.ndarray  # (n_patches, 187, 96)
    owner: np.ndarray  # (n_patches,) example row of each patch
    clip: list[str]
    segment: list[int]
    genre: list[str]


def shard_examples(accepted_clips, audio, segment_seconds: float | None, log=print) -> AudioExamples:
    """musicnn input of every clip of a shard, segmented as the images are."""
    from dataclasses import replace

    from genreflow.audio import load_clip, segment_bounds

    settings = replace(audio, sample_rate=SAMPLE_RATE)
    chunks, owners, clips, segments, genres = [], [], [], [], []
    for clip in accepted_clips.itertuples(index=False):
        y, _ = load_clip(clip.path, settings)
        for segment, (start, stop) in enumerate(segment_bounds(y.size, SAMPLE_RATE, segment_seconds)):
            example_patches = patches(log_mel(y[start:stop]))
            owners.append(np.full(len(example_patches), len(clips)))
            chunks.append(example_patches)
            clips.append(clip.clip)
            segments.append(segment)
            genres.append(clip.genre)
    if not chunks:
        return AudioExamples(np.zeros((0, PATCH_FRAMES, N_MELS), np.float32),
                             np.zeros(0, int), [], [], [])
    return AudioExamples(np.concatenate(chunks), np.concatenate(owners), clips, segments, genres)


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n_examples: int) -> np.ndarray:
    """Average the rows of `values` that belong to each example (patch -> example)."""
    sums = np.zeros((n_examples, values.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, values)
    counts = np.bincount(owner, minlength=n_examples)[:, None]
    return (sums / counts).astype(np.float32)


# One job's entry point: a parameter per input, param and output of its rule (embed_audio),
# passed by name from the thin script.
def embed_shard(
    backbone: str,
    checkpoints: str | os.PathLike,
    layer: str,
    accepted_clips,
    audio,
    segment_seconds: float | None,
    genres: Sequence[str],
    out_npz: str,
    batch_size: int = 64,
    log=print,
) -> None:
    """musicnn embeddings of one shard of accepted clips, as an embedding cache (.npz)."""
    import time

    from genreflow.io import save_embeddings

    started = time.perf_counter()
    embedder = MusicnnEmbedder(backbone, checkpoints, layer)
    log(f"{backbone}: restored and verified {embedder.prefix} "
        f"({len(embedder.variables)} variables), layer {layer}")
    examples = shard_examples(accepted_clips, audio, segment_seconds, log)
    position = {genre: i for i, genre in enumerate(genres)}
    unknown = sorted(set(examples.genre) - set(position))
    if unknown:
        raise ValueError(f"genres {unknown} are not in dataset.genres")
    outputs = []
    for start in range(0, len(examples.patches), batch_size):
        outputs.append(embedder(examples.patches[start : start + batch_size]))
        done = min(start + batch_size, len(examples.patches))
        if done == len(examples.patches) or (start // batch_size) % 10 == 0:
            log(f"{done}/{len(examples.patches)} patches, {time.perf_counter() - started:.1f} s")
    embedder.close()
    width = MUSICNN_LAYERS[layer]
    values = np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32)
    embeddings = mean_by_owner(values, examples.owner, len(examples.clip))
    save_embeddings(out_npz, embeddings, examples.clip, examples.segment,
                    [position[genre] for genre in examples.genre])
    log(f"wrote {embeddings.shape} embeddings of {len(set(examples.clip))} clips to {out_npz}")


def join_embeddings(shard_npzs: Sequence[str], out_npz: str, log=print) -> None:
    """One embedding cache from the shards' (in shard order)."""
    from genreflow.io import load_embeddings, save_embeddings

    caches = [load_embeddings(path) for path in shard_npzs]
    widths = {cache.embeddings.shape[1] for cache in caches if len(cache.clip)}
    if len(widths) > 1:
        raise ValueError(f"shard embeddings differ in width {sorted(widths)}: {list(shard_npzs)}")
    width = widths.pop() if widths else 0
    save_embeddings(
        out_npz,
        np.concatenate([cache.embeddings.reshape(-1, width) for cache in caches]),
        np.concatenate([cache.clip for cache in caches]),
        np.concatenate([cache.segment for cache in caches]),
        np.concatenate([cache.label for cache in caches]),
    )
    log(f"joined {len(caches)} shards: {sum(len(c.clip) for c in caches)} examples")



# ----------------------------------------------------------------- prediction windows


def embed_track_windows(request_json: str, out_npz: str) -> None:
    """musicnn's embedding of every prediction window of some files, for
    `genreflow.predict.Bundle` (which runs this in a process of its own: see the module
    docstring). The request names the backbone, layer, checkpoints, audio settings, window
    length and files; the result holds each window's embedding and its file (`owner`),
    each file's duration and, for a file that cannot be used, the reason instead."""
    from dataclasses import replace

    from genreflow.audio import AudioSettings, BadClip, load_track, track_windows
    from genreflow.io import read_json

    request = read_json(request_json)
    settings = replace(AudioSettings.from_config(request["audio"]), sample_rate=SAMPLE_RATE)
    embedder = MusicnnEmbedder(request["backbone"], checkpoint_root(request["checkpoints"]),
                               request["layer"])
    rows, owners, durations, reasons = [], [], [], []
    for i, path in enumerate(request["paths"]):
        try:
            track, info = load_track(path, settings)
            bounds = track_windows(track.size, SAMPLE_RATE, request["window_seconds"],
                                   settings.min_seconds)
            if not bounds:
                raise BadClip("too short for one window")
        except BadClip as reason:
            durations.append(0.0)
            reasons.append(str(reason))
            continue
        length = bounds[0][1] - bounds[0][0]
        track = np.pad(track, (0, max(0, length - track.size)))
        for start, stop in bounds:
            window_patches = patches(log_mel(track[start:stop]))
            rows.append(embedder(window_patches).mean(axis=0))
            owners.append(i)
        durations.append(info.source_seconds)
        reasons.append("")
    embedder.close()
    width = MUSICNN_LAYERS[request["layer"]]
    np.savez(out_npz, embeddings=np.asarray(rows, np.float32).reshape(-1, width),
             owner=np.asarray(owners, np.int64), duration_s=np.asarray(durations),
             reason=np.asarray(reasons, dtype=str))


if __name__ == "__main__":
    import sys

    embed_track_windows(*sys.argv[1:3])
