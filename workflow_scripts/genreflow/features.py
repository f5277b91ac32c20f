"""The five images of a clip: mel spectrogram, MFCC, STFT magnitude, power spectrogram, chromagram.

All five derive from the short-time Fourier transform. `FeatureComputer.compute` computes
one STFT per distinct (n_fft, hop_length) among the features asked for, so the five default
features share a single STFT in one process.

The transforms follow librosa's definitions (centred frames, zero padding, periodic Hann
window, Slaney mel scale and norm, orthonormal DCT-II, librosa's chroma filter bank with
tuning fixed at 0), and the unit tests check them against librosa. They are written in
numpy here because importing librosa's numba code costs over a second per job.

Image scaling (each image is an 8-bit grayscale PNG, low frequencies at the bottom, time
left to right, resized to `image_size` x `image_size` with bilinear filtering):

- `mel`: power mel spectrogram in dB relative to the image's maximum, the bottom `top_db`
  dB mapped linearly to 0..255 (quieter is clipped to black);
- `mfcc`: MFCCs of the dB mel spectrogram, whole image to 0..255: `relative` (default: dB
  relative to the clip's maximum, so a quieter copy of a clip gives the same image) or
  `minmax` (dB re full scale: c0 carries the recording's loudness and takes most of the grey
  range); or `rowwise` (each coefficient standardised over time, +-3 sigma to 0..255).

Every default scaling is gain-invariant (tests/test_features.py: the same clip 20 dB quieter
gives the same five images within one grey level): GTZAN's loudness says more about the
recording than about the genre.
- `stft`: magnitude |X| relative to the image's maximum, cube-root compressed (`cuberoot`,
  default; a perceptual loudness curve), or `db` or `linear`;
- `spectrogram`: power |X|^2 in dB relative to the maximum, `top_db` range, linear
  frequency axis;
- `chroma`: 12 pitch classes (C at the bottom), each frame divided by its maximum (values
  already in 0..1).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from genreflow.names import FEATURES

AMIN = 1e-10


# ----------------------------------------------------------------------------- transforms
def hann_window(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


def power_stft(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 as float32 [1 + n_fft/2, frames], centred frames, zero padding.

    The STFT is most of a feature job's arithmetic, and each feature job computes its own
    (so that a feature's parameters rerun only its jobs): scipy.fft's float32 transform
    (scipy comes with librosa) runs 3x faster here than numpy.fft's, and the result is
    returned as the transpose view of the frame-major power, not copied into row order
    (every consumer is a matrix product or elementwise). Together they halve a feature
    job's time per clip with the same images (BENCHMARKS.md, "Features")."""
    # imported here, not at the top: the Snakefile imports this module (FEATURES) at every
    # snakemake call, and scipy.fft costs 0.3 s; after the first clip this is a dict lookup
    import scipy.fft

    padded = np.pad(y.astype(np.float32, copy=False), n_fft // 2)
    n_frames = 1 + (padded.size - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, n_fft),
        strides=(padded.strides[0] * hop_length, padded.strides[0]),
        writeable=False,
    )
    spectrum = scipy.fft.rfft(frames * hann_window(n_fft), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return power.T


def hz_to_mel(frequencies):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel = 200.0 / 3, 1000.0, 15.0
    logstep = np.log(6.4) / 27.0
    mels = frequencies / f_sp
    log_part = frequencies >= min_log_hz
    mels = np.where(
        log_part,
        min_log_mel + np.log(np.maximum(frequencies, min_log_hz) / min_log_hz) / logstep,
        mels,
    )
    return mels


def mel_to_hz(mels):
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel = 200.0 / 3, 1000.0, 15.0
    logstep = np.log(6.4) / 27.0
    return np.where(
        mels >= min_log_mel,
        min_log_hz * np.exp(logstep * (mels - min_log_mel)),
        f_sp * mels,
    )


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None):
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2 : n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """librosa.filters.chroma with its defaults (tuning 0, centre octave 5, width 2)."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    octaves = np.log2(frequencies / (440.0 / 16))
    bins = n_chroma * octaves
    bins = np.concatenate(([bins[0] - 1.5 * n_chroma], bins))
    bin_widths = np.concatenate((np.maximum(bins[1:] - bins[:-1], 1.0), [1]))
    distance = np.subtract.outer(bins, np.arange(0, n_chroma, dtype="d")).T
    half = round(float(n_chroma) / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(bin_widths, (n_chroma, 1))) ** 2)
    norms = np.sqrt(np.sum(weights**2, axis=0, keepdims=True))
    weights = weights / np.where(norms < np.finfo(np.float64).tiny, 1.0, norms)
    weights *= np.tile(np.exp(-0.5 * (((bins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : 1 + n_fft // 2], dtype=np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II rows, as scipy.fft.dct(type=2, norm='ortho')."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def power_to_db(power: np.ndarray, top_db: float | None = 80.0) -> np.ndarray:
    """10 log10(power) with ref 1, floor AMIN, then clipped `top_db` below the maximum."""
    db = 10.0 * np.log10(np.maximum(AMIN, power))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db.astype(np.float32)


# ------------------------------------------------------------------------------ features
class FeatureComputer:
    """Computes the requested features of many clips, reusing filter banks and STFTs."""

    def __init__(self, sample_rate: int, blocks: Mapping[str, Mapping]):
        unknown = sorted(set(blocks) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {list(FEATURES)}")
        self.sample_rate = sample_rate
        self.blocks = {name: dict(blocks[name]) for name in blocks}
        self._banks: dict[tuple, np.ndarray] = {}

    def _bank(self, key: tuple) -> np.ndarray:
        if key not in self._banks:
            kind, *args = key
            if kind == "mel":
                self._banks[key] = mel_filterbank(self.sample_rate, *args)
            elif kind == "chroma":
                self._banks[key] = chroma_filterbank(self.sample_rate, *args)
            else:
                self._banks[key] = dct_matrix(*args)
        return self._banks[key]

    def _mel_power(self, power: np.ndarray, block: Mapping) -> np.ndarray:
        bank = self._bank(
            ("mel", block["n_fft"], block["n_mels"], block["fmin"], block.get("fmax"))
        )
        return bank @ power

    def compute(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Raw feature arrays [rows, frames], rows low to high (frequency/coefficient/pitch)."""
        stfts: dict[tuple[int, int], np.ndarray] = {}
        out = {}
        for name, block in self.blocks.items():
            key = (int(block["n_fft"]), int(block["hop_length"]))
            if key not in stfts:
                stfts[key] = power_stft(y, *key)
            out[name] = getattr(self, f"_{name}")(stfts[key], block)
        return out

    def _mel(self, power, block):
        return power_to_db(self._mel_power(power, block), top_db=None)

    def _mfcc(self, power, block):
        log_mel = power_to_db(self._mel_power(power, block), top_db=80.0)
        if block.get("scaling") == "relative":
            # dB relative to the clip's maximum: a gain shifts every log-mel value by the
            # same amount, which lands in c0 alone, so this makes c0 (and the image)
            # independent of the recording's level.
            log_mel = log_mel - log_mel.max()
        return self._bank(("dct", block["n_mfcc"], block["n_mels"])) @ log_mel

    def _stft(self, power, block):
        return np.sqrt(power)

    def _spectrogram(self, power, block):
        return power_to_db(power, top_db=None)

    def _chroma(self, power, block):
        raw = self._bank(("chroma", block["n_fft"], block["n_chroma"])) @ power
        peak = raw.max(axis=0, keepdims=True)
        return raw / np.where(peak < np.finfo(np.float32).tiny, 1.0, peak)


def scale_to_unit(name: str, array: np.ndarray, block: Mapping) -> np.ndarray:
    """Map a raw feature array to 0..1 by the feature's documented scaling."""
    scaling = block.get("scaling")
    if name in ("mel", "spectrogram") or (name == "stft" and scaling == "db"):
        if name == "stft":
            array = 20.0 * np.log10(np.maximum(np.sqrt(AMIN), array))
        top_db = float(block["top_db"])
        unit = (array - (array.max() - top_db)) / top_db
    elif name == "mfcc":  # relative (gain-invariant, see FeatureComputer._mfcc) or minmax
        if scaling == "rowwise":
            mean = array.mean(axis=1, keepdims=True)
            std = array.std(axis=1, keepdims=True)
            unit = ((array - mean) / np.maximum(std, 1e-6) + 3.0) / 6.0
        else:
            low, high = float(array.min()), float(array.max())
            unit = (array - low) / max(high - low, 1e-6)
    elif name == "stft":
        relative = array / max(float(array.max()), np.sqrt(AMIN))
        unit = np.cbrt(relative) if scaling == "cuberoot" else relative
    else:  # chroma is already 0..1
        unit = array
    return np.clip(unit, 0.0, 1.0)


def to_image(unit: np.ndarray, image_size: int) -> np.ndarray:
    """0..1 array [rows low->high, frames] -> uint8 [image_size, image_size], low rows at the bottom."""
    from PIL import Image

    pixels = np.round(np.flipud(unit) * 255.0).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize(
        (image_size, image_size), Image.Resampling.BILINEAR
    )
    return np.asarray(image)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    # compress_level 1: PNG's default level 6 costs several times more CPU for ~10% smaller files
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def clip_images(
    computer: FeatureComputer, y: np.ndarray, image_size: int
) -> dict[str, np.ndarray]:
    """All requested features of one clip (or segment) as uint8 images."""
    raw = computer.compute(y)
    return {
        name: to_image(scale_to_unit(name, array, computer.blocks[name]), image_size)
        for name, array in raw.items()
    }


def image_name(clip: str, segment: int, segment_seconds: float | None) -> str:
    return f"{clip}.png" if segment_seconds is None else f"{clip}.seg{segment:02d}.png"


def make_shard_images(
    accepted_clips,
    features: Mapping[str, Mapping],
    audio,
    segment_seconds: float | None,
    image_size: int,
    image_dirs: Mapping[str, str],
    index_paths: Mapping[str, str],
    log=print,
) -> None:
    """Write the images of one shard of accepted clips, for one or more features.

    `accepted_clips` is a DataFrame with columns clip, genre, path (the shard's check
    table filtered to accepted clips). For each feature, images go to
    `image_dirs[feature]` and an index CSV (clip, segment, genre, image) to
    `index_paths[feature]`.
    """
    import os
    import time

    import pandas as pd

    from genreflow.audio import load_clip, segment_bounds
    from genreflow.io import write_bytes_atomic, write_csv

    computer = FeatureComputer(audio.sample_rate, features)
    for directory in image_dirs.values():
        os.makedirs(directory, exist_ok=True)
    rows = {name: [] for name in features}
    started = time.perf_counter()
    total = len(accepted_clips)
    for done, clip in enumerate(accepted_clips.itertuples(index=False), start=1):
        y, _ = load_clip(clip.path, audio)
        for segment, (start, stop) in enumerate(
            segment_bounds(y.size, audio.sample_rate, segment_seconds)
        ):
            images = clip_images(computer, y[start:stop], image_size)
            name = image_name(clip.clip, segment, segment_seconds)
            for feature, pixels in images.items():
                path = os.path.join(image_dirs[feature], name)
                write_bytes_atomic(path, png_bytes(pixels))
                rows[feature].append((clip.clip, segment, clip.genre, path))
        if done == total or done % max(1, total // 10) == 0:
            elapsed = time.perf_counter() - started
            log(f"{done}/{total} clips, {elapsed:.1f} s ({elapsed / done:.3f} s/clip)")
    for feature, feature_rows in rows.items():
        index = pd.DataFrame(feature_rows, columns=["clip", "segment", "genre", "image"])
        write_csv(index_paths[feature], index)


def join_indexes(shard_indexes, out_csv: str, log=print) -> None:
    import pandas as pd

    from genreflow.io import write_csv

    index = pd.concat([pd.read_csv(path) for path in shard_indexes], ignore_index=True)
    write_csv(out_csv, index.sort_values(["genre", "clip", "segment"]))
    log(f"{len(index)} images of {index['clip'].nunique()} clips")
