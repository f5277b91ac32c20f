"""Decode and check audio clips.

Every clip goes through `load_clip`, which is the one documented rule for turning a
file into model input:

1. decode with libsndfile (WAV, AU/SND, AIFF, FLAC, OGG, ...), any channel count;
2. mix to mono by averaging the channels;
3. resample to `sample_rate` with soxr (high quality) if the file has another rate;
4. reject the clip (raise `BadClip` with the reason) if it is shorter than
   `min_seconds`, silent (peak below `silence_dbfs`), or holds NaN/inf samples;
5. keep the first `seconds` seconds; a clip between `min_seconds` and `seconds` long is
   zero-padded at the end, so that every clip gives images of the same width.

Only numpy, soundfile and soxr are imported here: feature jobs decode thousands of
clips, and pulling in librosa/numba would add seconds of start-up to each job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile

SILENCE_DBFS = -60.0


class BadClip(Exception):
    """A clip that cannot be used; the message is the reason written to rejected.csv."""


@dataclass(frozen=True)
class AudioSettings:
    sample_rate: int = 22050
    seconds: float = 30.0
    min_seconds: float = 10.0
    silence_dbfs: float = SILENCE_DBFS

    @classmethod
    def from_config(cls, audio: dict) -> "AudioSettings":
        return cls(
            sample_rate=int(audio["sample_rate"]),
            seconds=float(audio["seconds"]),
            min_seconds=float(audio["min_seconds"]),
            silence_dbfs=float(audio.get("silence_dbfs", SILENCE_DBFS)),
        )

    @property
    def n_samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))


@dataclass(frozen=True)
class ClipInfo:
    """What the check learned about a file that was accepted."""

    source_seconds: float
    source_sample_rate: int
    source_channels: int


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Return (samples as float32 [frames, channels], sample rate) or raise BadClip."""
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise BadClip(f"cannot open file: {error.strerror}") from None
    if size == 0:
        raise BadClip("empty file (0 bytes)")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        # libsndfile's own words ("Format not recognised", "Unspecified internal
        # error", ...) are what a user can search for, so keep them.
        message = str(error).replace(str(path), "").strip(" :")
        raise BadClip(f"not readable as audio: {message}") from None
    return samples, int(rate)


def to_mono_at_rate(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate:
        import soxr  # only clips at another rate pay for it

        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_signal(mono: np.ndarray, settings: AudioSettings) -> None:
    seconds = mono.size / settings.sample_rate
    if seconds < settings.min_seconds:
        raise BadClip(
            f"too short: {seconds:.2f} s < audio.min_seconds {settings.min_seconds:g} s"
        )
    if not np.all(np.isfinite(mono)):
        raise BadClip("holds NaN or infinite samples")
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs < settings.silence_dbfs:
        shown = "-inf" if math.isinf(peak_dbfs) else f"{peak_dbfs:.1f}"
        raise BadClip(
            f"silent: peak {shown} dBFS < {settings.silence_dbfs:g} dBFS"
        )


def fit_length(mono: np.ndarray, n_samples: int) -> np.ndarray:
    if mono.size >= n_samples:
        return mono[:n_samples]
    return np.pad(mono, (0, n_samples - mono.size))


def load_clip(path: str | os.PathLike, settings: AudioSettings) -> tuple[np.ndarray, ClipInfo]:
    """Decode, check and normalise one clip (see the module docstring for the rule)."""
    samples, rate = decode(path)
    if samples.shape[0] == 0:
        raise BadClip("no audio frames")
    mono = to_mono_at_rate(samples, rate, settings.sample_rate)
    check_signal(mono, settings)
    info = ClipInfo(
        source_seconds=round(samples.shape[0] / rate, 3),
        source_sample_rate=rate,
        source_channels=samples.shape[1],
    )
    return fit_length(mono, settings.n_samples), info


def segment_bounds(n_samples: int, sample_rate: int, segment_seconds: float | None):
    """Sample ranges of the non-overlapping segments of a clip; the remainder is dropped.

    `None` means the whole clip is one segment (index 0).
    """
    if segment_seconds is None:
        return [(0, n_samples)]
    length = int(round(segment_seconds * sample_rate))
    count = n_samples // length
    return [(k * length, (k + 1) * length) for k in range(count)]
