"""Decode and check audio clips.

Every clip goes through `load_clip`, which is the one documented rule for turning a
file into model input:

1. decode with libsndfile (WAV, AU/SND, AIFF, FLAC, OGG, MP3, ...), any channel count; only
   the first `seconds` (plus a few milliseconds the resampler needs) are read, so memory
   follows the clip's length, not the file's (a 30-minute file costs what a 30 s one does);
2. mix to mono by averaging the channels;
3. resample to `sample_rate` with soxr (high quality) if the file has another rate;
4. reject the clip (raise `BadClip` with the reason) if it is shorter than
   `min_seconds`, silent (peak below `silence_dbfs`), or holds NaN/inf samples;
5. keep the first `seconds` seconds; a clip between `min_seconds` and `seconds` long is
   zero-padded at the end, so that every clip gives images of the same width.

Samples beyond full scale (float files can hold them) are kept as they are, with a warning:
every default image is gain-invariant (genreflow.features), so the level does not reach the
models through the images; the peak is reported in `ClipInfo.peak_dbfs` (clips.csv).

Only numpy, soundfile and soxr are imported here: feature jobs decode thousands of
clips, and pulling in librosa/numba would add seconds of start-up to each job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile

from genreflow.audio_formats import truncation, unreadable_reason

SILENCE_DBFS = -60.0
# Read past the clip's end so that resampling gives the first `seconds` exactly as from the
# whole file: soxr's HQ filter looks ahead a few milliseconds.
RESAMPLER_MARGIN_SECONDS = 0.05


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
    peak_dbfs: float  # of the samples used; above 0 when a float file exceeds full scale


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32 [frames, channels]: the first frames of the file
    sample_rate: int
    source_frames: int  # frames in the whole file, as its header says
    format: str = ""  # libsndfile's name of the format ("WAV", "MP3", ...)
    header_frames: int = 0  # as its header says; above source_frames if the data ends early


def decode(path: str | os.PathLike, max_seconds: float | None = None) -> Decoded:
    """The first `max_seconds` of a file (all of it for None), or raise BadClip."""
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise BadClip(f"cannot open file: {error.strerror}") from None
    if size == 0:
        raise BadClip("empty file (0 bytes)")
    try:
        with soundfile.SoundFile(path) as source:
            rate, total = int(source.samplerate), int(source.frames)
            format_name = source.format
            wanted = -1 if max_seconds is None else int(math.ceil(max_seconds * rate))
            samples = source.read(wanted, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise BadClip(unreadable_reason(path, error)) from None
    # A header can promise more frames than the file holds (a cut-off download).
    header_frames = total
    if max_seconds is None or samples.shape[0] < wanted:
        total = samples.shape[0]
    return Decoded(samples, rate, total, format_name, header_frames)


def to_mono_at_rate(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate:
        import soxr  # only clips at another rate pay for it

        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_signal(mono: np.ndarray, settings: AudioSettings, seconds: float) -> None:
    """Reject a clip of `seconds` (the file's length) whose used part `mono` is unusable."""
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


def check_length_of(
    path, format_name: str, header_frames: int, frames: int, rate: int, settings: AudioSettings
) -> None:
    """A file too short to use because it was cut short says so: "truncated", not just
    "too short", is what tells a user to fetch it again."""
    if frames / rate >= settings.min_seconds:
        return
    cut = truncation(path, header_frames, frames, rate)
    if cut:
        short = (
            "no audio frames" if frames == 0 else
            f"too short: {frames / rate:.2f} s < audio.min_seconds {settings.min_seconds:g} s"
        )
        raise BadClip(f"truncated {format_name} file: {cut}; {short}")


def fit_length(mono: np.ndarray, n_samples: int) -> np.ndarray:
    if mono.size >= n_samples:
        return mono[:n_samples]
    return np.pad(mono, (0, n_samples - mono.size))


def load_clip(path: str | os.PathLike, settings: AudioSettings) -> tuple[np.ndarray, ClipInfo]:
    """Decode, check and normalise one clip (see the module docstring for the rule)."""
    decoded = decode(path, settings.seconds + RESAMPLER_MARGIN_SECONDS)
    samples, rate = decoded.samples, decoded.sample_rate
    check_length_of(path, decoded.format, decoded.header_frames, decoded.source_frames, rate,
                    settings)
    if samples.shape[0] == 0:
        raise BadClip("no audio frames")
    mono = to_mono_at_rate(samples, rate, settings.sample_rate)
    check_signal(mono, settings, decoded.source_frames / rate)
    peak = float(np.max(np.abs(samples)))
    info = ClipInfo(
        source_seconds=round(decoded.source_frames / rate, 3),
        source_sample_rate=rate,
        source_channels=samples.shape[1],
        peak_dbfs=round(20 * math.log10(peak), 2),
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


def load_track(
    path: str | os.PathLike, settings: AudioSettings, block_seconds: float = 60.0
) -> tuple[np.ndarray, ClipInfo]:
    """A whole track of any length, mono at `settings.sample_rate`, checked by the corpus
    rule (decodable, not shorter than `min_seconds`, not silent, finite) but not cut to
    `seconds`: prediction covers all of it (`track_windows`).

    Read and resampled block by block (soxr's stream gives the same samples as resampling
    the whole track at once), so memory follows the resampled track, not the decoded file.
    """
    if os.path.exists(path) and os.path.getsize(path) == 0:
        raise BadClip("empty file (0 bytes)")
    try:
        with soundfile.SoundFile(path) as source:
            rate, channels = int(source.samplerate), int(source.channels)
            format_name, header_frames = source.format, int(source.frames)
            resampler = None
            if rate != settings.sample_rate:
                import soxr

                resampler = soxr.ResampleStream(rate, settings.sample_rate, 1, dtype="float32",
                                                quality="HQ")
            parts, frames, peak = [], 0, 0.0
            block = max(1, int(block_seconds * rate))
            while True:
                samples = source.read(block, dtype="float32", always_2d=True)
                last = samples.shape[0] < block
                frames += samples.shape[0]
                if samples.size:
                    peak = max(peak, float(np.max(np.abs(samples))))
                mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                parts.append(resampler.resample_chunk(mono, last=last) if resampler else mono)
                if last:
                    break
    except BadClip:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise BadClip(unreadable_reason(path, error)) from None
    check_length_of(path, format_name, header_frames, frames, rate, settings)
    if frames == 0:
        raise BadClip("no audio frames")
    track = np.concatenate(parts)
    check_signal(track, settings, frames / rate)
    info = ClipInfo(round(frames / rate, 3), rate, channels, round(20 * math.log10(peak), 2))
    return track, info


def track_windows(
    n_samples: int, sample_rate: int, window_seconds: float, min_seconds: float
) -> list[tuple[int, int]]:
    """Sample ranges a model of `window_seconds` clips (or segments) sees of a track: the
    non-overlapping windows that fit, the remainder dropped (as segments are cut); a track
    shorter than one window but at least `min_seconds` long is one window, zero-padded as a
    corpus clip is. A 70 s track and 30 s windows: two windows."""
    length = int(round(window_seconds * sample_rate))
    count = n_samples // length
    if count == 0 and n_samples >= min_seconds * sample_rate:
        return [(0, length)]
    return [(k * length, (k + 1) * length) for k in range(count)]
