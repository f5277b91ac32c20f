"""Perturbations that make one recording of a piece of music sound like another: audio in,
audio out, each seeded and parameterised, for the robustness stage (the test clips) and for
augmented training views.

Every family is a function `family(y, sample_rate, *, rng=None, **parameters)` taking a
mono float clip and returning float32 audio of the same length and rate:

============  ==================================================================  ===========
family        what it does                                                         random?
============  ==================================================================  ===========
`mp3`         encode with libsndfile's MP3 (LAME) writer at `compression_level`,  no
              decode back (gapless modes only; see `mp3`)
`lowpass`     causal Butterworth low-pass (band-limited or old recordings)        no
`highpass`    causal Butterworth high-pass (small speakers, phone microphones)    no
`tilt`        linear-phase EQ of `db_per_octave` about `pivot_hz`                  no
`noise`       white or pink noise at `snr_db` below the clip's RMS                 yes
`reverb`      a synthetic room: direct path + exponentially decaying noise,        yes
              `rt60_seconds`, `drr_db` direct-to-reverberant ratio
`resample`    a round trip through `rate` Hz with soxr (telephone-band audio)      no
`pitch`       `semitones` of pitch shift keeping the duration (librosa)            no
`gain`        `db` of gain                                                         no
============  ==================================================================  ===========

`perturb(y, sample_rate, spec, rng)` applies one described by a config block
(`{"kind": "noise", "snr_db": 20.0, ...}`); `DEFAULTS` holds each family's parameters when
a block leaves them out. A result that would exceed full scale is scaled to peak at
`HEADROOM` (as a mastering limiter would; the images are gain-invariant), so that it can be
stored as PCM like any recording; `gain` never needs it for a negative gain.

Randomness comes only from the `rng` passed in: `clip_rng(...)` derives one from any keys
(a BLAKE2 hash, as the synthetic corpus does), so the same keys give the same perturbed
audio in every run and process, whatever else was perturbed before.

Only numpy, scipy, soundfile and soxr at import; librosa (numba, about 2 s of start-up) is
imported by `pitch` alone.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping

import numpy as np

# Peak of a result scaled down because it would exceed full scale: -0.1 dBFS.
HEADROOM = 10 ** (-0.1 / 20)

# Each family's parameters and their defaults (the config's robustness.perturbations blocks
# give them by name; the schema holds the same defaults).
DEFAULTS: dict[str, dict] = {
    "mp3": {"compression_level": 0.85, "bitrate_mode": "average"},
    "lowpass": {"cutoff_hz": 4000.0, "order": 4},
    "highpass": {"cutoff_hz": 300.0, "order": 4},
    "tilt": {"db_per_octave": -3.0, "pivot_hz": 1000.0, "low_hz": 50.0},
    "noise": {"snr_db": 20.0, "color": "pink"},
    "reverb": {"rt60_seconds": 0.5, "drr_db": 0.0},
    "resample": {"rate": 8000},
    "pitch": {"semitones": 1.0},
    "gain": {"db": -12.0},
}
FAMILIES = tuple(DEFAULTS)
RANDOM_FAMILIES = ("noise", "reverb")


def clip_rng(*keys) -> np.random.Generator:
    """A generator determined by `keys` alone (e.g. the perturbation's name, the clip, a
    seed), the same in every process."""
    text = "genreflow.robustness|" + "|".join(str(key) for key in keys)
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _as_clip(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"a perturbation takes mono audio (one dimension), got shape {y.shape}")
    return y.astype(np.float64)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """`y` cut or zero-padded to n samples: a perturbation keeps the clip's length."""
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


# ------------------------------------------------------------------------------ families
def mp3(y, sample_rate: int, *, compression_level: float = 0.85,
        bitrate_mode: str = "average", rng=None) -> np.ndarray:
    """Encode as MP3 with libsndfile's writer (LAME) and decode again (mpg123).

    `compression_level` is libsndfile's: 0 is its best quality, towards 1 its lowest (1.0
    itself is refused by libsndfile 1.2.2); for 22050 Hz mono, 0.85 gives about 30 kbps.
    `bitrate_mode` `average` or `variable`: libsndfile writes these with the encoder's delay
    recorded, so the decoded clip lines up with the input sample for sample; its
    `constant` files decode about 1105 samples late, so they are refused here."""
    import soundfile

    if bitrate_mode not in ("average", "variable"):
        raise ValueError(f"mp3 bitrate_mode {bitrate_mode!r}: use average or variable "
                         "(libsndfile's constant-bitrate MP3 decodes shifted by the encoder delay)")
    if not 0.0 <= compression_level < 1.0:
        raise ValueError(f"mp3 compression_level {compression_level}: must be in [0, 1) "
                         "(libsndfile refuses 1.0)")
    clip = _as_clip(y)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(clip, -1.0, 1.0), sample_rate, format="MP3",
                    subtype="MPEG_LAYER_III", compression_level=float(compression_level),
                    bitrate_mode=bitrate_mode.upper())
    buffer.seek(0)
    decoded, rate = soundfile.read(buffer, dtype="float64")
    if rate != sample_rate:
        raise RuntimeError(f"the MP3 round trip came back at {rate} Hz, not {sample_rate} Hz")
    return _fit(decoded, clip.size).astype(np.float32)


def mp3_kbps(y, sample_rate: int, compression_level: float = 0.85,
             bitrate_mode: str = "average") -> float:
    """The bitrate the `mp3` family's encoder reaches on `y` (for captions and logs)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(_as_clip(y), -1.0, 1.0), sample_rate, format="MP3",
                    subtype="MPEG_LAYER_III", compression_level=float(compression_level),
                    bitrate_mode=bitrate_mode.upper())
    return buffer.tell() * 8 / (len(y) / sample_rate) / 1000


def _butterworth(y, sample_rate: int, cutoff_hz: float, order: int, kind: str) -> np.ndarray:
    from scipy import signal

    nyquist = sample_rate / 2
    if not 0 < cutoff_hz < nyquist:
        raise ValueError(f"{kind} cutoff_hz {cutoff_hz} must be between 0 and the Nyquist "
                         f"frequency {nyquist} Hz")
    sos = signal.butter(int(order), cutoff_hz, btype=kind, fs=sample_rate, output="sos")
    # causal, as a microphone, a speaker or a tape is: the response of one `order` filter
    return signal.sosfilt(sos, _as_clip(y)).astype(np.float32)


def lowpass(y, sample_rate: int, *, cutoff_hz: float = 4000.0, order: int = 4,
            rng=None) -> np.ndarray:
    """Butterworth low-pass of `order` at `cutoff_hz` (-3 dB there, -6*order dB/octave
    above): an old or band-limited recording."""
    return _butterworth(y, sample_rate, cutoff_hz, order, "lowpass")


def highpass(y, sample_rate: int, *, cutoff_hz: float = 300.0, order: int = 4,
             rng=None) -> np.ndarray:
    """Butterworth high-pass of `order` at `cutoff_hz`: small speakers, phone microphones."""
    return _butterworth(y, sample_rate, cutoff_hz, order, "highpass")


def tilt_gain_db(frequencies, db_per_octave: float, pivot_hz: float, low_hz: float):
    """The tilt EQ's gain in dB at `frequencies`: `db_per_octave` per octave from
    `pivot_hz` (0 dB there), held constant below `low_hz` (else DC would get infinite gain)."""
    f = np.maximum(np.asarray(frequencies, dtype=np.float64), low_hz)
    return db_per_octave * np.log2(f / pivot_hz)


def tilt(y, sample_rate: int, *, db_per_octave: float = -3.0, pivot_hz: float = 1000.0,
         low_hz: float = 50.0, rng=None) -> np.ndarray:
    """A spectral tilt (EQ): `tilt_gain_db`, applied by a linear-phase FIR filter of 2049
    taps (delay compensated, so the clip is not shifted)."""
    from scipy import signal

    nyquist = sample_rate / 2
    grid = np.concatenate([[0.0], np.geomspace(min(low_hz, pivot_hz) / 2, nyquist, 512)])
    gains = 10 ** (tilt_gain_db(grid, db_per_octave, pivot_hz, low_hz) / 20)
    taps = signal.firwin2(2049, grid, gains, fs=sample_rate)
    return signal.oaconvolve(_as_clip(y), taps, mode="same").astype(np.float32)


def _noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    if color != "pink":
        raise ValueError(f"noise color {color!r}: use white or pink")
    # pink: power falling 3 dB per octave, by shaping white noise's spectrum (1/sqrt(f))
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def noise(y, sample_rate: int, *, snr_db: float = 20.0, color: str = "pink",
          rng: np.random.Generator | None = None) -> np.ndarray:
    """Add `color` noise whose RMS is exactly `snr_db` below the clip's RMS (over the whole
    clip). Needs `rng`."""
    if rng is None:
        raise ValueError("noise is random: pass rng (genreflow.robustness.perturb.clip_rng)")
    clip = _as_clip(y)
    added = _noise(clip.size, color, rng)
    level = _rms(clip) / 10 ** (snr_db / 20)
    return (clip + added * (level / max(_rms(added), 1e-12))).astype(np.float32)


def room_response(sample_rate: int, rt60_seconds: float, drr_db: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A synthetic room's impulse response: a unit direct path, then after 5 ms a tail of
    Gaussian noise whose amplitude decays by 60 dB in `rt60_seconds`, lasting that long,
    with `drr_db` as the ratio of the direct path's energy to the tail's."""
    predelay = int(0.005 * sample_rate)
    length = int(rt60_seconds * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-math.log(1000.0) * t / rt60_seconds)
    tail *= math.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    response = np.zeros(predelay + length)
    response[0] = 1.0
    response[predelay:] = tail
    return response


def reverb(y, sample_rate: int, *, rt60_seconds: float = 0.5, drr_db: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """The clip played in a synthetic room (`room_response`), cut to its length and brought
    back to its RMS: the room changes the sound, not the level (`gain` does that). Needs
    `rng` (the room's noise)."""
    from scipy import signal

    if rng is None:
        raise ValueError("reverb is random: pass rng (genreflow.robustness.perturb.clip_rng)")
    clip = _as_clip(y)
    wet = signal.oaconvolve(clip, room_response(sample_rate, rt60_seconds, drr_db, rng))
    wet = wet[: clip.size]
    return (wet * (_rms(clip) / max(_rms(wet), 1e-12))).astype(np.float32)


def resample(y, sample_rate: int, *, rate: int = 8000, rng=None) -> np.ndarray:
    """Down to `rate` Hz and back with soxr (high quality): everything above rate/2 is gone,
    as in telephone-band or low-rate files."""
    import soxr

    clip = _as_clip(y)
    down = soxr.resample(clip, sample_rate, int(rate), quality="HQ")
    return _fit(soxr.resample(down, int(rate), sample_rate, quality="HQ"), clip.size).astype(
        np.float32)


def pitch(y, sample_rate: int, *, semitones: float = 1.0, rng=None) -> np.ndarray:
    """`semitones` of pitch shift, duration kept (librosa.effects.pitch_shift: a phase
    vocoder's time stretch, then a soxr resampling): another tuning or tape speed."""
    import librosa

    clip = _as_clip(y).astype(np.float32)
    shifted = librosa.effects.pitch_shift(clip, sr=sample_rate, n_steps=float(semitones))
    return _fit(shifted, clip.size).astype(np.float32)


def gain(y, sample_rate: int, *, db: float = -12.0, rng=None) -> np.ndarray:
    """The clip `db` louder (negative: quieter). Every default image is gain-invariant
    (genreflow.features), so for image models this must cost nothing."""
    return (_as_clip(y) * 10 ** (db / 20)).astype(np.float32)


_FUNCTIONS = {"mp3": mp3, "lowpass": lowpass, "highpass": highpass, "tilt": tilt,
              "noise": noise, "reverb": reverb, "resample": resample, "pitch": pitch,
              "gain": gain}


# --------------------------------------------------------------------------- by config
def parameters(spec: Mapping) -> dict:
    """A perturbation block's parameters with the family's defaults filled in; an unknown
    family or parameter is an error naming the allowed ones."""
    kind = spec.get("kind")
    if kind not in DEFAULTS:
        raise ValueError(f"perturbation kind {kind!r}: known kinds are {list(FAMILIES)}")
    given = {key: value for key, value in spec.items() if key != "kind"}
    unknown = sorted(set(given) - set(DEFAULTS[kind]))
    if unknown:
        raise ValueError(f"perturbation kind {kind!r} has no parameter(s) {unknown}; its "
                         f"parameters: {sorted(DEFAULTS[kind])}")
    return {**DEFAULTS[kind], **given}


def perturb(y, sample_rate: int, spec: Mapping, rng: np.random.Generator | None = None
            ) -> np.ndarray:
    """The clip `y` (mono, any float) under the perturbation `spec` (a config block:
    `kind` and the family's parameters), float32 of the same length, never beyond full
    scale (see the module docstring). Random families need `rng`."""
    out = _FUNCTIONS[spec["kind"]](y, sample_rate, rng=rng, **parameters(spec))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 1.0:
        out = (out * (HEADROOM / peak)).astype(np.float32)
    return out


def describe(spec: Mapping) -> str:
    """A perturbation in words, for tables and captions."""
    p, kind = parameters(spec), spec["kind"]
    if kind == "mp3":
        return (f"MP3 round trip (libsndfile/LAME, {p['bitrate_mode']} bitrate, compression "
                f"level {p['compression_level']:g})")
    if kind in ("lowpass", "highpass"):
        name = "low-pass" if kind == "lowpass" else "high-pass"
        return f"{name} {p['cutoff_hz']:g} Hz (Butterworth, order {p['order']})"
    if kind == "tilt":
        return f"EQ tilt {p['db_per_octave']:+g} dB/octave about {p['pivot_hz']:g} Hz"
    if kind == "noise":
        return f"{p['color']} noise at {p['snr_db']:g} dB SNR"
    if kind == "reverb":
        return (f"synthetic room, RT60 {p['rt60_seconds']:g} s, direct-to-reverberant "
                f"{p['drr_db']:g} dB")
    if kind == "resample":
        return f"round trip through {p['rate']} Hz (soxr)"
    if kind == "pitch":
        return f"pitch {p['semitones']:+g} semitone(s), duration kept"
    return f"gain {p['db']:+g} dB"
