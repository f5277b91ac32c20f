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
import re
import struct
from dataclasses import dataclass

import numpy as np
import soundfile

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


# ------------------------------------------------------------------ what a file is
# What a file is, from its first bytes, so that a rejection says what is wrong with it.
#
# libsndfile's own words are often beside the point: an .mp3 it cannot parse is reported as
# "File does not exist or is not a regular file (possibly a pipe?)", a WAV cut inside its
# header as "No 'data' chunk marker". `unreadable_reason` puts what the file is in front (not
# an audio file, a damaged header, truncated, a format libsndfile cannot decode) and keeps
# the decoder's words after it, which is what a user can search for.
#
# Only the first bytes and the file size are read; nothing here decodes audio.
HEAD_BYTES = 64

# Audio formats libsndfile decodes, by their magic bytes at offset 0.
_DECODABLE = (
    (b"RIFF", "WAV"),
    (b"RIFX", "WAV"),
    (b"RF64", "WAV (RF64)"),
    (b"FORM", "AIFF"),
    (b".snd", "AU"),
    (b"fLaC", "FLAC"),
    (b"OggS", "OGG"),
    (b"caff", "CAF"),
    (b"NIST_1A", "NIST SPHERE"),
    (b"ID3", "MP3"),  # an ID3 tag in front of MPEG audio frames
)
# Formats people keep music in that libsndfile cannot decode (convert them first).
_UNSUPPORTED = (
    (b"MThd", "MIDI (notes, not sound)"),
    (b"wvpk", "WavPack"),
    (b"MAC ", "Monkey's Audio (APE)"),
    (b"ADIF", "AAC (ADIF)"),
    (b"MPCK", "Musepack"),
    (b"MP+", "Musepack"),
    (b"#!AMR", "AMR"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "WMA (ASF)"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (b".ra\xfd", "RealAudio"),
    (b"DSD ", "DSD (DSF)"),
    (b"FRM8", "DSD (DFF)"),
)
# Files that end up under an audio name by mistake.
_NOT_AUDIO = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a file say it is."""

    format: str | None  # "WAV", "MP3", ...; None: no audio format's header
    decodable: bool  # libsndfile decodes this format
    problem: str = ""  # what is wrong with the header or size, if the bytes show it
    looks_like: str = ""  # for a file without an audio header: what it seems to be


def sniff(path: str | os.PathLike) -> Sniffed:
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    size = os.path.getsize(path)
    for magic, name in _UNSUPPORTED:
        if head.startswith(magic):
            return Sniffed(name, False)
    if head[4:8] == b"ftyp":
        return Sniffed("MP4/M4A (AAC or ALAC)", False)
    for magic, name in _DECODABLE:
        if head.startswith(magic):
            return Sniffed(name, True, _size_problem(name, head, size))
    if head[8:12] == b"WAVE":
        # GTZAN's jazz.00054.wav: a WAV whose first four bytes are not "RIFF"
        return Sniffed("WAV", True, f"damaged WAV header: no 'RIFF' id at its start "
                                    f"(bytes {head[:4].hex(' ')})")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # an MPEG audio frame sync; layer bits 00 is AAC's ADTS stream instead
        if head[1] & 0x06 == 0:
            return Sniffed("AAC (ADTS)", False)
        return Sniffed("MP3", True)
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            return Sniffed(None, False, looks_like=what)
    return Sniffed(None, False, looks_like=_describe_bytes(head))


def _size_problem(name: str, head: bytes, size: int) -> str:
    """A container whose header gives more bytes than the file has: cut short."""
    if name == "WAV" and len(head) >= 8:
        declared = 8 + struct.unpack("<I" if head[:4] == b"RIFF" else ">I", head[4:8])[0]
    elif name == "AIFF" and len(head) >= 8:
        declared = 8 + struct.unpack(">I", head[4:8])[0]
    elif name == "AU" and len(head) >= 12:
        offset, data = struct.unpack(">II", head[4:12])
        if data == 0xFFFFFFFF:  # "unknown size", written by streaming encoders
            return ""
        declared = offset + data
    else:
        return ""
    # one byte of slack: a chunk's pad byte is sometimes left out
    if size + 1 < declared:
        return f"its header gives {declared} bytes, the file has {size}"
    return ""


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "it is empty"
    text = head.split(b"\n")[0]
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is not None and decoded.isprintable() and decoded.strip():
        shown = decoded.strip()[:40]
        return f'it is text, starting "{shown}"'
    return f"it starts with bytes {head[:8].hex(' ')}"


def decoder_words(error: Exception, path: str | os.PathLike) -> str:
    """libsndfile's message without the "Error opening '<path>':" in front of it."""
    words = str(error)
    words = re.sub(r"^Error opening " + re.escape(repr(str(path))) + r":\s*", "", words)
    words = re.sub(r"^Error opening '[^']*':\s*", "", words)
    words = re.sub(r"^Error\s*:\s*", "", words)
    words = words.strip().rstrip(".")
    if words.startswith("File does not exist or is not a regular file"):
        # libsndfile's answer for an MPEG stream its decoder cannot parse
        words += " [libsndfile's words for a file it cannot parse; the file is there]"
    return words


def unreadable_reason(path: str | os.PathLike, error: Exception) -> str:
    """Why libsndfile could not decode `path` (it raised `error`): what the file is, then
    the decoder's words."""
    words = f"libsndfile: {decoder_words(error, path)}"
    try:
        found = sniff(path)
    except OSError as problem:
        return f"cannot read the file ({problem.strerror}); {words}"
    if found.format is None:
        return f"not an audio file: no audio format's header ({found.looks_like}); {words}"
    if not found.decodable:
        return (
            f"unsupported format {found.format}: libsndfile cannot decode it; convert it "
            f"to WAV or FLAC (e.g. with ffmpeg); {words}"
        )
    if found.problem.startswith("damaged"):
        return f"{found.problem}; {words}"
    if found.problem:
        return f"truncated {found.format} file: {found.problem}; {words}"
    return f"truncated or damaged {found.format} file: its data cannot be decoded; {words}"


def truncation(path: str | os.PathLike, header_frames: int, frames: int, rate: int) -> str:
    """How a decodable file whose audio ends early is cut short ("" if it is not): its
    header promises more frames (MP3, FLAC) or bytes (WAV, AIFF, AU) than it holds."""
    if header_frames > frames:
        return f"its header gives {header_frames / rate:.2f} s, the data ends at {frames / rate:.2f} s"
    try:
        problem = sniff(path).problem
    except OSError:
        return ""
    return "" if problem.startswith("damaged") else problem
