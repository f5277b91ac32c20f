"""Deterministic synthetic music corpus laid out like GTZAN, for demos and tests.

Every clip is built from four layers (drums, bass, harmony, lead) plus a recording
stage (EQ tilt, band limit, room reverb, hiss, bus saturation). Each genre draws its
tempo, key, progression, patterns, instruments and mix levels from its own ranges, and
some options are shared between related genres on purpose, so that a classifier has
to learn tendencies rather than look clips up:

* blues     - 65-110 BPM shuffle (triplet swing), 12-bar I7-IV7-V7, boogie bass, lightly
              overdriven guitar dyads, blues-scale lead, old-recording band limit and hiss.
* classical - no drums, 60-110 BPM; string ensemble (slow-attack additive tones with vibrato)
              or solo piano arpeggios, cello bass, I-IV-V / i-iv-V / Pachelbel, big reverb.
* country   - 95-150 BPM two-step/train beat, boom-chick root-fifth bass, clean plucked
              strums of major triads, twangy pluck or fiddle lead; sometimes shuffles.
* disco     - 112-128 BPM four-on-the-floor with open hats on the offbeats and claps,
              octave-jumping synth bass, minor-7th vamps, string pads and funk chops.
* hiphop    - 82-98 BPM swung boom-bap with sparse kicks, 808 sub bass, lo-fi electric
              piano m9 loop, vinyl crackle, rap-like formant bursts.
* jazz      - 110-200 BPM swung ride, feathered kick, walking upright bass, ii-V-I with
              7th/9th rootless piano comping, reed or muted lead.
* metal     - 140-200 BPM fast double kick and crash wash, palm-muted 16th power-chord
              chugs through heavy distortion, phrygian/minor riffs.
* pop       - 95-128 BPM backbeat (sometimes four-on-the-floor), pulsing synth bass,
              I-V-vi-IV with add9 pads or piano, vowel-formant vocal lead, loud bus.
* reggae    - 66-84 BPM one-drop (kick and rim on beat 3), offbeat guitar skank, organ
              bubble, round melodic bass that rests on the one.
* rock      - 105-150 BPM backbeat with 8th hats, 8th-note power chords or open triads
              through moderate distortion, picked bass following the roots.

Randomness comes only from ``numpy.random.default_rng`` seeded with a BLAKE2 hash of
(genre, index, seed), so a clip is bit-identical across runs and processes.

A second rendering of the same songs (``render_clip(..., rendering=1)``, `write_songs`)
draws every musical choice from that same generator (notes, rhythm, form, tempo, key, mix
levels) but plays the parts on other instruments (each timbre's second synthesis
`_SECOND_TIMBRES`, another drum kit, another guitar amp) and records them in another room,
EQ, noise and bus (`_master_second`), with draws of its own generator: the same song
recorded another way, for the robustness stage (tests/test_synthetic.py checks that its
chromagram follows the first rendering's while its MFCC timbre does not).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from genreflow.io import atomic_path
from genreflow.names import GTZAN_GENRES

_TABLE = 2048  # wavetable length; a power of two so the phase index can be masked
_MAX_HARMONICS = 48

# --------------------------------------------------------------------------- harmony

_QUALITY = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "5": (0, 7, 12),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "9": (0, 4, 7, 10, 14),
    "m9": (0, 3, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14),
    "m7b5": (0, 3, 6, 10),
    "add9": (0, 4, 7, 14),
    "sus4": (0, 5, 7),
    "6": (0, 4, 7, 9),
}

_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "majpent": (0, 2, 4, 7, 9),
    "minpent": (0, 3, 5, 7, 10),
}

_TWELVE_BAR = ((0, "7"),) * 4 + ((5, "7"),) * 2 + ((0, "7"),) * 2 + ((7, "7"), (5, "7"), (0, "7"), (7, "7"))
_QUICK_CHANGE = ((0, "7"), (5, "7"), (0, "7"), (0, "7")) + _TWELVE_BAR[4:]
_MINOR_BLUES = ((0, "m7"),) * 4 + ((5, "m7"),) * 2 + ((0, "m7"),) * 2 + ((8, "7"), (7, "7"), (0, "m7"), (7, "7"))
_POP_AXIS = ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj"))

# Each entry: (scale for melodies, chord sequence as (semitones above key, quality)).
_PROGRESSIONS = {
    "blues": (("blues", _TWELVE_BAR), ("blues", _QUICK_CHANGE), ("minpent", _MINOR_BLUES)),
    "classical": (
        ("major", ((0, "maj"), (5, "maj"), (7, "7"), (0, "maj"))),
        ("harmonic", ((0, "min"), (5, "min"), (7, "7"), (0, "min"))),
        ("major", ((0, "maj"), (7, "maj"), (9, "min"), (4, "min"), (5, "maj"), (0, "maj"), (5, "maj"), (7, "maj"))),
        ("major", ((0, "maj"), (9, "min"), (2, "min"), (7, "7"))),
    ),
    "country": (
        ("majpent", ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj"))),
        ("majpent", ((0, "maj"), (0, "maj"), (5, "maj"), (7, "7"))),
        ("major", _POP_AXIS),
        ("mixolydian", ((0, "7"), (5, "7"), (0, "7"), (7, "7"))),
    ),
    "disco": (
        ("dorian", ((0, "m7"), (5, "m7"))),
        ("dorian", ((0, "m7"), (5, "7"))),
        ("major", ((2, "m7"), (7, "7"), (0, "maj7"), (9, "m7"))),
        ("minor", ((0, "m9"), (10, "maj7"), (8, "maj7"), (7, "m7"))),
    ),
    "hiphop": (
        ("dorian", ((0, "m9"), (5, "m9"))),
        ("minor", ((0, "m7"), (8, "maj7"), (10, "7"), (0, "m7"))),
        ("minor", ((0, "m7"), (3, "maj7"))),
        ("minpent", ((0, "min"), (0, "min"), (8, "maj"), (7, "min"))),
    ),
    "jazz": (
        ("major", ((2, "m7"), (7, "7"), (0, "maj7"), (0, "maj7"))),
        ("major", ((2, "m9"), (7, "9"), (0, "maj9"), (9, "7"))),
        ("major", ((0, "maj7"), (9, "m7"), (2, "m7"), (7, "7"))),
        ("dorian", ((2, "m7b5"), (7, "7"), (0, "m9"), (0, "m9"))),
    ),
    "metal": (
        ("phrygian", ((0, "5"), (1, "5"), (0, "5"), (8, "5"))),
        ("minor", ((0, "5"), (0, "5"), (10, "5"), (8, "5"))),
        ("blues", ((0, "5"), (3, "5"), (5, "5"), (6, "5"))),
    ),
    "pop": (
        ("major", _POP_AXIS),
        ("major", ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj"))),
        ("major", ((0, "add9"), (5, "add9"), (9, "min"), (7, "sus4"))),
        ("major", ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj"))),
    ),
    "reggae": (
        ("majpent", ((0, "maj"), (5, "maj"))),
        ("minor", ((0, "min"), (5, "min"))),
        ("major", _POP_AXIS),
        ("dorian", ((0, "min"), (10, "maj"))),
    ),
    "rock": (
        ("minpent", ((0, "5"), (10, "5"), (5, "5"), (0, "5"))),
        ("majpent", ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj"))),
        ("minor", ((0, "5"), (8, "5"), (10, "5"), (0, "5"))),
        ("major", _POP_AXIS),
    ),
}


# --------------------------------------------------------------------------- timbres


def _formant_amps(k: np.ndarray, f0: float, formants) -> np.ndarray:
    freqs = k * f0
    amps = np.zeros_like(freqs)
    for centre, bandwidth, gain in formants:
        amps += gain / (1.0 + ((freqs - centre) / bandwidth) ** 2)
    return amps / np.sqrt(k)


_VOWELS = (
    ((730, 90, 1.0), (1090, 110, 0.5), (2440, 160, 0.25)),  # "ah"
    ((530, 80, 1.0), (1840, 120, 0.45), (2480, 160, 0.3)),  # "eh"
    ((300, 60, 1.0), (870, 100, 0.35), (2240, 150, 0.2)),  # "oo"
)

# Harmonic amplitude laws, k = 1..K, f0 in Hz; the shape of these is what MFCCs see.
_TIMBRES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "sine": lambda k, f0: (k == 1) * 1.0,
    "saw": lambda k, f0: 1.0 / k,
    "square": lambda k, f0: (k % 2 == 1) / k,
    "string": lambda k, f0: (1.0 / k) * (1.0 + 1.5 * np.exp(-(((k * f0 - 2800.0) / 900.0) ** 2))) * (k * f0 < 7000),
    "organ": lambda k, f0: np.select(
        [k == 1, k == 2, k == 3, k == 4, k == 6, k == 8], [1.0, 0.8, 0.6, 0.35, 0.25, 0.2]
    ),
    "epiano": lambda k, f0: np.select([k == 1, k == 2, k == 3, k == 4], [1.0, 0.3, 0.08, 0.05]),
    "piano": lambda k, f0: 1.0 / k**1.3,
    "dull": lambda k, f0: 1.0 / k**2.8,
    "pluck": lambda k, f0: np.abs(np.sin(np.pi * k * 0.18)) / k**0.9,
    "reed": lambda k, f0: np.where(k % 2 == 1, 1.0, 0.35) / k**0.9,
    "muted": lambda k, f0: np.exp(-(((k * f0 - 1400.0) / 900.0) ** 2)) + 0.3 / k,
    "brass": lambda k, f0: 1.0 / k**0.7 * (k * f0 < 5000),
    "bass_round": lambda k, f0: np.select([k == 1, k == 2, k == 3], [1.0, 0.45, 0.15]),
    "bass_synth": lambda k, f0: (1.0 / k) * np.exp(-k * f0 / 900.0),
    "bass_pick": lambda k, f0: 1.0 / k**1.2 * np.exp(-k * f0 / 2500.0),
    "vox_ah": lambda k, f0: _formant_amps(k, f0, _VOWELS[0]),
    "vox_eh": lambda k, f0: _formant_amps(k, f0, _VOWELS[1]),
    "vox_oo": lambda k, f0: _formant_amps(k, f0, _VOWELS[2]),
}
_F0_DEPENDENT = {"string", "muted", "brass", "bass_synth", "bass_pick", "vox_ah", "vox_eh", "vox_oo"}

# The second rendering's instruments (`render_clip(..., rendering=1)`): each timbre of the
# first played on another instrument of its kind (another piano, another organ registration,
# a singer with other formants), as a second recording of the same song would have it. The
# roles stay (a bass is still a bass, a pad a pad), so the genre is still audible; the
# spectral envelopes, which MFCCs and spectrogram images see, differ.
_SECOND = "2:"
_SECOND_TIMBRES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "sine": lambda k, f0: np.select([k == 1, k == 2, k == 3], [1.0, 0.12, 0.04]),
    "saw": lambda k, f0: (1.0 / k**1.25) * (1.0 + 1.2 * np.exp(-(((k * f0 - 1500.0) / 700.0) ** 2))),
    "square": lambda k, f0: np.abs(np.sin(np.pi * k * 0.25)) / k,  # a 25% pulse
    "string": lambda k, f0: (1.0 / k**1.15) * (1.0 + 1.8 * np.exp(-(((k * f0 - 1700.0) / 600.0) ** 2)))
    * (k * f0 < 6000),
    "organ": lambda k, f0: np.select(
        [k == 1, k == 2, k == 3, k == 4, k == 5, k == 8], [1.0, 0.25, 0.9, 0.15, 0.5, 0.45]
    ),
    "epiano": lambda k, f0: np.select([k == 1, k == 2, k == 3, k == 5, k == 7], [1.0, 0.12, 0.2, 0.06, 0.09]),
    "piano": lambda k, f0: np.exp(-k / 9.0) / k**0.8,
    "dull": lambda k, f0: 1.0 / k**2.2 * np.exp(-k / 14.0),
    "pluck": lambda k, f0: np.abs(np.sin(np.pi * k * 0.31)) / k**1.1,
    "reed": lambda k, f0: (1.0 / k**0.8) * (1.0 + np.exp(-(((k * f0 - 1200.0) / 800.0) ** 2))),
    "muted": lambda k, f0: np.exp(-(((k * f0 - 2300.0) / 1100.0) ** 2)) + 0.2 / k,
    "brass": lambda k, f0: 1.0 / k**0.5 * (k * f0 < 3500),
    "bass_round": lambda k, f0: np.select([k == 1, k == 2, k == 3, k == 4], [1.0, 0.6, 0.1, 0.12]),
    "bass_synth": lambda k, f0: (1.0 / k) * np.exp(-k * f0 / 1600.0),
    "bass_pick": lambda k, f0: 1.0 / k**1.5 * np.exp(-k * f0 / 1500.0),
    # another singer: formants about 12% higher
    "vox_ah": lambda k, f0: _formant_amps(k, f0, [(c * 1.12, b, g) for c, b, g in _VOWELS[0]]),
    "vox_eh": lambda k, f0: _formant_amps(k, f0, [(c * 1.12, b, g) for c, b, g in _VOWELS[1]]),
    "vox_oo": lambda k, f0: _formant_amps(k, f0, [(c * 1.12, b, g) for c, b, g in _VOWELS[2]]),
}
_TIMBRES.update({_SECOND + name: law for name, law in _SECOND_TIMBRES.items()})
_F0_DEPENDENT |= {_SECOND + name for name in _F0_DEPENDENT} | {_SECOND + "saw", _SECOND + "reed"}

_table_cache: dict[tuple, np.ndarray] = {}


def _table(timbre: str, kmax: int, f0: float) -> np.ndarray:
    # F0-dependent laws are evaluated at the nearest semitone so the cache stays bounded.
    # The table must depend on the key alone: the cache is shared by every clip rendered
    # in the process, and a clip must not depend on which clips came before it.
    bucket = int(round(12 * math.log2(max(f0, 1.0) / 440.0))) if timbre in _F0_DEPENDENT else 0
    key = (timbre, kmax, bucket)
    tab = _table_cache.get(key)
    if tab is None:
        k = np.arange(1, kmax + 1, dtype=np.float64)
        amps = np.asarray(_TIMBRES[timbre](k, 440.0 * 2 ** (bucket / 12)), dtype=np.float64)
        amps = np.broadcast_to(amps, k.shape)
        spec = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
        spec[1 : kmax + 1] = -1j * amps
        tab = np.fft.irfft(spec, _TABLE)
        tab /= max(np.abs(tab).max(), 1e-12)
        _table_cache[key] = tab
    return tab


def _osc(timbre: str, freq: float, n: int, sr: int, vibrato=(0.0, 0.0), phase0: float = 0.0) -> np.ndarray:
    rate, depth = vibrato
    # Band-limit per note: harmonics above Nyquist would fold back as inharmonic fizz.
    kmax = int(max(1, min(_MAX_HARMONICS, 0.45 * sr / (freq * (1.0 + depth)))))
    tab = _table(timbre, kmax, freq)
    ramp = np.arange(n, dtype=np.float64)
    # Work directly in table positions: one multiply-add per sample before the lookup.
    pos = ramp * (freq * _TABLE / sr)
    pos += phase0 * _TABLE
    if depth > 0.0:
        pos -= (freq * depth / (2 * np.pi * rate) * _TABLE) * np.cos(ramp * (2 * np.pi * rate / sr))
    idx = pos.astype(np.int64)
    idx &= _TABLE - 1
    return tab.take(idx)


# Many parameters because it is a synthesiser voice: pitch, timing, envelope and timbre are
# each one knob, given by name by every part.
def _note(
    sr: int,
    dur: float,
    freq: float,
    timbre: str,
    attack: float = 0.005,
    decay: float = 0.3,
    sustain: float = 0.6,
    release: float = 0.1,
    vibrato=(0.0, 0.0),
    bright: str | None = None,
    bright_tau: float = 0.15,
    detune_cents: float = 0.0,
) -> np.ndarray:
    n_on = max(1, int(dur * sr))
    n = n_on + max(1, int(release * sr))
    x = _osc(timbre, freq, n, sr, vibrato)
    t = np.arange(n, dtype=np.float64) / sr
    if bright is not None:
        # A bright attack fading to a dull body is the cheap stand-in for string damping.
        xb = _osc(bright, freq, n, sr, vibrato)
        x += (xb - x) * np.exp(-t / bright_tau)
    if detune_cents:
        x = 0.5 * (x + _osc(timbre, freq * 2 ** (detune_cents / 1200), n, sr, vibrato, phase0=0.37))
    env = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    if attack > 0:
        env *= np.minimum(t / attack, 1.0)
    level = env[n_on - 1]
    env[n_on:] = level * np.exp(-(t[n_on:] - t[n_on - 1]) * 5.0 / max(release, 1e-3))
    return x * env


def _add(buf: np.ndarray, start: int, sig: np.ndarray, gain: float = 1.0) -> None:
    lo = max(start, 0)
    hi = min(start + len(sig), len(buf))
    if hi > lo:
        buf[lo:hi] += gain * sig[lo - start : hi - start]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    return np.convolve(x, np.full(width, 1.0 / width), mode="same")


def _highpass(x: np.ndarray) -> np.ndarray:
    return np.diff(x, prepend=0.0)


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


# --------------------------------------------------------------------------- drums


# Long because it is a kit: one synthesised voice per drum (kick, snare, hats, ...), each a
# few lines of its own.
def _drum_kit(rng: np.random.Generator, sr: int, kind: str) -> dict[str, np.ndarray]:
    u = rng.uniform

    def t_axis(seconds):
        return np.arange(int(seconds * sr)) / sr

    def noise(seconds):
        return rng.standard_normal(int(seconds * sr))

    def kick(f_hi, f_lo, pitch_tau, amp_tau, length, click):
        t = t_axis(length)
        freq = f_lo + (f_hi - f_lo) * np.exp(-t / pitch_tau)
        body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / amp_tau)
        return body + click * _highpass(noise(length)) * np.exp(-t / 0.004)

    kit: dict[str, np.ndarray] = {}
    if kind == "808":
        k = kick(u(110, 150), u(42, 55), 0.04, u(0.35, 0.6), 1.0, 0.2)
        kit["kick"] = np.tanh(2.5 * k)
    elif kind == "metal":
        kit["kick"] = kick(u(160, 220), u(50, 65), 0.012, u(0.08, 0.14), 0.3, u(1.0, 1.8))
    elif kind == "jazz":
        kit["kick"] = kick(u(90, 120), u(55, 70), 0.03, u(0.12, 0.2), 0.4, 0.2)
    elif kind == "electronic":
        kit["kick"] = kick(u(130, 170), u(45, 55), 0.025, u(0.18, 0.3), 0.5, 0.6)
    else:
        kit["kick"] = kick(u(110, 150), u(50, 62), 0.02, u(0.12, 0.22), 0.4, u(0.4, 0.9))

    t = t_axis(0.4)
    snare_tau = u(0.08, 0.18) if kind != "808" else u(0.1, 0.2)
    tone = np.sin(2 * np.pi * u(170, 230) * t) * np.exp(-t / 0.035)
    rattle = _highpass(noise(0.4)) * np.exp(-t / snare_tau)
    kit["snare"] = 0.6 * tone + u(0.7, 1.1) * rattle

    t = t_axis(0.3)
    burst = np.zeros_like(t)
    for offset in (0.0, 0.011, 0.022):
        burst += np.exp(-np.maximum(t - offset, 0) / 0.006) * (t >= offset)
    band = noise(0.3)
    band = _smooth(band, 2) - _smooth(band, 9)
    kit["clap"] = 2.0 * band * (burst + 0.5 * np.exp(-t / 0.08))

    t = t_axis(0.08)
    rim = noise(0.08)
    kit["rim"] = (1.5 * (_smooth(rim, 2) - _smooth(rim, 6)) + np.sin(2 * np.pi * u(1500, 1900) * t)) * np.exp(
        -t / 0.012
    )

    hat_bright = 2 if kind in ("electronic", "metal") else 1
    t = t_axis(0.12)
    hat = noise(0.12)
    for _ in range(hat_bright):
        hat = _highpass(hat)
    kit["hat"] = 0.6 * hat * np.exp(-t / u(0.015, 0.035))
    t = t_axis(0.5)
    ohat = _highpass(_highpass(noise(0.5)))
    kit["ohat"] = 0.35 * ohat * np.exp(-t / u(0.12, 0.25))

    t = t_axis(1.2)
    metallic = sum(
        np.sign(np.sin(2 * np.pi * f * u(0.95, 1.05) * t)) for f in (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)
    )
    ride = _highpass(_highpass(0.25 * metallic + noise(1.2)))
    kit["ride"] = 0.25 * ride * (np.exp(-t / u(0.35, 0.7)) + 0.3 * np.exp(-t / 0.02))

    t = t_axis(2.0)
    kit["crash"] = 0.3 * _highpass(noise(2.0)) * np.exp(-t / u(0.6, 1.2))

    t = t_axis(0.25)
    swish = _smooth(noise(0.25), 3)
    kit["brush"] = 0.6 * swish * np.minimum(t / 0.02, 1.0) * np.exp(-t / 0.08)
    return kit


def _second_kit(rng: np.random.Generator, sr: int, kind: str) -> dict[str, np.ndarray]:
    """The second rendering's drum kit: another kit of the same kind (its own draws), its
    drums tuned lower (a bigger shell) and its cymbals through darker overhead microphones."""
    kit = _drum_kit(rng, sr, kind)
    tune = rng.uniform(0.8, 0.9)
    for voice in ("kick", "snare", "rim", "clap"):
        x = kit[voice]
        # read more slowly: every partial lower and the decay longer, as on a bigger drum
        kit[voice] = np.interp(np.arange(0.0, len(x) - 1, tune), np.arange(len(x)), x)
    for voice in ("hat", "ohat", "ride", "crash", "brush"):
        x = kit[voice]
        dark = _smooth(x, 2)  # a gentle roll-off towards Nyquist, no notch in the band
        kit[voice] = dark * (np.sqrt(np.mean(x**2)) / max(np.sqrt(np.mean(dark**2)), 1e-12))
    return kit


def _pattern(text: str) -> list[tuple[int, float]]:
    # 'X' accent, 'x' normal, 'o' ghost, '.' rest; one character per 16th note.
    levels = {"X": 1.0, "x": 0.75, "o": 0.35}
    return [(i, levels[c]) for i, c in enumerate(text) if c in levels]


# Drum pattern families: a list of variants, each a dict of voice -> one or two bars.
_DRUMS: dict[str, list[dict[str, tuple[str, ...]]]] = {
    "disco": [
        {
            "kick": ("X...X...X...X...",),
            "clap": ("....x.......x...",),
            "ohat": ("..x...x...x...x.",),
            "hat": ("o.o.o.o.o.o.o.o.",),
        },
        {
            "kick": ("X...X...X...X...",),
            "snare": ("....x.......x...",),
            "ohat": ("..x...x...x...x.",),
            "hat": ("oooooooooooooooo",),
        },
    ],
    "rock": [
        {"kick": ("X.......x.x.....",), "snare": ("....X.......X...",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("X......xx.......",), "snare": ("....X.......X...",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("X.....x.X.......",), "snare": ("....X.......X...",), "ride": ("x.x.x.x.x.x.x.x.",)},
    ],
    "pop": [
        {"kick": ("X.....x...x.....",), "clap": ("....X.......X...",), "hat": ("x.o.x.o.x.o.x.o.",)},
        {"kick": ("X...X...X...X...",), "clap": ("....X.......X...",), "hat": ("..x...x...x...x.",)},
        {"kick": ("X.......X.x.....",), "snare": ("....X.......X...",), "hat": ("xoxoxoxoxoxoxoxo",)},
    ],
    "metal": [
        {"kick": ("xxxxxxxxxxxxxxxx",), "snare": ("....X.......X...",), "crash": ("x...x...x...x...",)},
        {
            "kick": ("x.x.x.x.x.x.x.x.",),
            "snare": ("..X...X...X...X.",),
            "ride": ("x.x.x.x.x.x.x.x.",),
            "crash": ("x.......x.......",),
        },
        {"kick": ("xxxxxxxxxxxxxxxx",), "snare": ("....X.......X...",), "ride": ("x.x.x.x.x.x.x.x.",)},
    ],
    "hiphop": [
        {
            "kick": ("X......x..x.....", "X.........X..x.."),
            "snare": ("....X.......X...",),
            "hat": ("x.x.x.x.x.x.x.x.",),
        },
        {
            "kick": ("X.........x.....",),
            "snare": ("....X.......X...",),
            "hat": ("x.o.x.o.x.o.x.o.",),
            "ohat": ("..............x.",),
        },
        {"kick": ("X..x......x.....",), "snare": ("....X.......X..o",), "hat": ("x.x.x.x.x.x.x.x.",)},
    ],
    "reggae": [
        {"kick": ("........X.......",), "rim": ("........X.......",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("X...X...X...X...",), "rim": ("........X.......",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("........X.......",), "rim": ("....x.......X...",), "hat": ("..x...x...x...x.",)},
    ],
    "jazz": [
        {
            "ride": ("X...x.x.X...x.x.",),
            "hat": ("....x.......x...",),
            "kick": ("o...o...o...o...",),
            "brush": ("o.o.o.o.o.o.o.o.",),
        },
        {"ride": ("X...x.x.X...x.x.",), "hat": ("....x.......x...",), "kick": ("o.......o.......",)},
    ],
    "blues": [
        {"kick": ("X.......x.......",), "snare": ("....X.......X...",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("X.....x.X.......",), "snare": ("....X.......X...",), "ride": ("x.x.x.x.x.x.x.x.",)},
    ],
    "country": [
        {"kick": ("X.......X.......",), "snare": ("....x.......x...",), "hat": ("x.x.x.x.x.x.x.x.",)},
        {"kick": ("X.......X.......",), "brush": ("xoxoxoxoxoxoxoxo",), "snare": ("....x.......x...",)},
        {"kick": ("X.......X.......",), "rim": ("....x.......x...",), "hat": ("x.x.x.x.x.x.x.x.",)},
    ],
}
_DRUM_LEVEL = {
    "kick": 1.0,
    "snare": 0.8,
    "clap": 0.6,
    "rim": 0.45,
    "hat": 0.35,
    "ohat": 0.35,
    "ride": 0.45,
    "crash": 0.4,
    "brush": 0.5,
}


# --------------------------------------------------------------------------- clip context


@dataclass
class _Ctx:
    rng: np.random.Generator
    sr: int
    n: int
    bpm: float
    swing: float
    t0: float
    key: int
    scale: tuple[int, ...]
    chords: list[tuple[int, tuple[int, ...]]]
    chord_beats: int
    n_steps: int
    jitter: float
    notes: dict = field(default_factory=dict)  # per clip: riffs repeat the same note many times
    # 0: the corpus; 1: the second rendering, whose own draws (its drum kit, room, mix bus)
    # come from `second_rng`, so that `rng` makes the same musical choices in both
    rendering: int = 0
    second_rng: np.random.Generator | None = None

    def note(self, dur: float, freq: float, timbre: str, **kw) -> np.ndarray:
        if self.rendering:
            timbre = _SECOND + timbre
            if kw.get("bright"):
                kw["bright"] = _SECOND + kw["bright"]
        key = (round(dur * self.sr), round(freq, 6), timbre, tuple(sorted(kw.items())))
        sig = self.notes.get(key)
        if sig is None:
            sig = _note(self.sr, key[0] / self.sr, freq, timbre, **kw)
            self.notes[key] = sig
        return sig

    def time(self, step: float) -> float:
        beat, sub = divmod(step, 4)
        off = 0.5 + self.swing / 6.0  # swing 1.0 puts the offbeat on the triplet
        frac = (0.0, off / 2, off, off + (1 - off) / 2)[int(sub)] + (sub - int(sub)) * 0.25
        return self.t0 + (beat + frac) * 60.0 / self.bpm

    def sample(self, step: float) -> int:
        jitter = self.rng.normal(0.0, self.jitter) if self.jitter else 0.0
        return int(round((self.time(step) + jitter) * self.sr))

    def chord(self, step: int) -> tuple[int, tuple[int, ...]]:
        return self.chords[(step // 4 // self.chord_beats) % len(self.chords)]

    @property
    def step_seconds(self) -> float:
        return 15.0 / self.bpm


def _voice(root: int, intervals, centre: int) -> list[int]:
    """Fold chord tones into an octave around ``centre``: close voicing, smooth motion."""
    out = []
    for iv in intervals:
        pc = (root + iv) % 12
        m = centre - 6 + ((pc - (centre - 6)) % 12)
        out.append(m)
    return sorted(set(out))


# --------------------------------------------------------------------------- parts


def _part_drums(ctx: _Ctx, family: str, kit_kind: str, fills: float) -> np.ndarray:
    rng = ctx.rng
    buf = np.zeros(ctx.n)
    kit = _drum_kit(rng, ctx.sr, kit_kind)
    if ctx.rendering:
        # the first kit is still drawn, so that `rng` goes on to the same patterns
        kit = _second_kit(ctx.second_rng, ctx.sr, kit_kind)
    variant = _DRUMS[family][rng.integers(len(_DRUMS[family]))]
    alt = _DRUMS[family][rng.integers(len(_DRUMS[family]))]
    voice_gain = {v: _DRUM_LEVEL[v] * rng.uniform(0.6, 1.3) for v in kit}
    drop = rng.uniform(0.0, 0.12)
    for bar in range(ctx.n_steps // 16):
        # A different groove every few bars keeps clips of one genre from being loops.
        pattern = alt if bar % 4 == 3 and rng.random() < 0.5 else variant
        fill = bar % 4 == 3 and rng.random() < fills
        for voice, bars in pattern.items():
            for step, vel in _pattern(bars[bar % len(bars)]):
                if fill and step >= 8 and voice in ("hat", "ride"):
                    continue
                if vel < 1.0 and rng.random() < drop:
                    continue
                _add(buf, ctx.sample(bar * 16 + step), kit[voice], vel * voice_gain[voice] * rng.uniform(0.85, 1.0))
        if fill:
            for step in range(8, 16, rng.choice([1, 2])):
                _add(buf, ctx.sample(bar * 16 + step), kit["snare"], 0.4 + 0.04 * (step - 8))
            _add(buf, ctx.sample(bar * 16 + 16), kit["crash"], voice_gain["crash"])
    return buf


# Long because each bass style (walking, ...) is written out as its own branch.
def _part_bass(ctx: _Ctx, style: str) -> np.ndarray:
    rng = ctx.rng
    buf = np.zeros(ctx.n)
    sr = ctx.sr
    sd = ctx.step_seconds
    low = 36 + ctx.key % 12 if ctx.key % 12 < 8 else 24 + ctx.key % 12  # roots between G#1 and G2

    def play(step, steps, midi, timbre, vel=1.0, **kw):
        sig = ctx.note(steps * sd, _midi_hz(midi), timbre, **kw)
        _add(buf, ctx.sample(step), sig, vel)

    for bar in range(ctx.n_steps // 16):
        for beat in range(4):
            step = bar * 16 + beat * 4
            root_pc, ivs = ctx.chord(step)
            root = low + (root_pc - ctx.key) % 12
            third = ivs[1] if len(ivs) > 1 and ivs[1] in (3, 4) else 4
            if style == "walking":
                nxt_root = low + (ctx.chord(step + 4)[0] - ctx.key) % 12
                # Chord tones on 1-3, then a chromatic approach into the next chord's root.
                choice = (root, root + third, root + 7)[beat] if beat < 3 else nxt_root + rng.choice([-1, 1])
                play(
                    step,
                    3.6,
                    choice,
                    "bass_round",
                    0.9,
                    attack=0.005,
                    decay=0.25,
                    sustain=0.3,
                    release=0.05,
                    bright="pluck",
                    bright_tau=0.05,
                )
            elif style == "boogie":
                seq = (0, third, 7, 9, 10, 9, 7, third)
                for half in range(2):
                    iv = seq[(beat * 2 + half) % 8]
                    play(step + half * 2, 1.8, root + iv, "bass_round", 0.9, decay=0.2, sustain=0.4, release=0.05)
            elif style == "root_fifth":
                if beat in (0, 2):
                    play(
                        step,
                        3.0,
                        root if beat == 0 else root + 7 - 12 * (root + 7 > low + 14),
                        "bass_round",
                        1.0,
                        decay=0.15,
                        sustain=0.3,
                        release=0.06,
                    )
                elif rng.random() < 0.3:
                    play(step + 2, 1.5, root + rng.choice([2, 4, -1]), "bass_round", 0.6, decay=0.1, sustain=0.2)
            elif style == "octave":
                for half in range(2):
                    play(
                        step + half * 2, 1.6, root + 12 * half, "bass_synth", 0.9, decay=0.12, sustain=0.5, release=0.03
                    )
            elif style == "pulse":
                for half in range(2):
                    play(
                        step + half * 2,
                        1.8,
                        root,
                        "bass_synth",
                        0.8 + 0.2 * (half == 0),
                        decay=0.2,
                        sustain=0.6,
                        release=0.03,
                    )
            elif style == "sub808":
                if beat in (0, 2) or rng.random() < 0.25:
                    sig = ctx.note(
                        int(rng.integers(3, 8)) * sd,
                        _midi_hz(root + 12 * (root < 36)),
                        "sine",
                        attack=0.003,
                        decay=0.6,
                        sustain=0.3,
                        release=0.1,
                    )
                    _add(buf, ctx.sample(step + (0 if beat in (0, 2) else 3)), np.tanh(1.8 * sig), 1.1)
            elif style == "reggae":
                if beat == 0:
                    continue  # the one-drop leaves beat one empty for the bass too
                for sub, iv in ((0, 0), (2, rng.choice([third, 7, 12, 10]))):
                    if rng.random() < 0.85:
                        play(
                            step + sub,
                            1.8,
                            root + iv,
                            "bass_round",
                            1.0,
                            attack=0.01,
                            decay=0.3,
                            sustain=0.6,
                            release=0.08,
                        )
            elif style == "eighths":
                for half in range(2):
                    play(step + half * 2, 1.7, root, "bass_pick", 0.85, decay=0.15, sustain=0.5, release=0.03)
            elif style == "chug":
                for sub in range(4):
                    play(step + sub, 0.9, root, "bass_pick", 0.8, decay=0.06, sustain=0.3, release=0.02)
            elif style == "cello":
                if beat in (0, 2):
                    play(
                        step,
                        7.8,
                        root + 12 * rng.integers(0, 2),
                        "string",
                        0.7,
                        attack=0.12,
                        decay=0.5,
                        sustain=0.8,
                        release=0.3,
                        vibrato=(5.0, 0.004),
                    )
    return buf


# Long because each comping style (pad, arpeggio, strum, skank, jazzcomp, ...) is written out
# as its own branch; the voices themselves are _note's.
def _part_comp(ctx: _Ctx, style: str) -> np.ndarray:
    """Harmony layer. Guitar styles set ``drive`` and go through the amp at the end."""
    rng = ctx.rng
    buf = np.zeros(ctx.n)
    sr = ctx.sr
    sd = ctx.step_seconds
    drive = 0.0
    centre = 60 + int(rng.integers(-3, 4))
    # One vibrato rate per part (a player's habit), which also lets repeated chords hit the note cache.
    vib_rate = round(rng.uniform(4.5, 6.0), 2)
    wow_rate = round(rng.uniform(0.3, 1.0), 2)

    def chord_notes(step, centre_=centre, power=False):
        root_pc, ivs = ctx.chord(step)
        if power:
            root = 40 + (root_pc - 4) % 12
            return [root, root + 7, root + 12]
        return _voice(root_pc, ivs, centre_)

    def hit(step, steps, notes, timbre, vel, strum=0.0, **kw):
        for i, m in enumerate(notes):
            sig = ctx.note(steps * sd, _midi_hz(m), timbre, **kw)
            _add(buf, ctx.sample(step) + int(i * strum * sr), sig, vel / math.sqrt(len(notes)))

    n_bars = ctx.n_steps // 16
    if style == "pad":
        # Strings change with the chord and swell in, like a section would.
        span = ctx.chord_beats * 4
        for step in range(0, ctx.n_steps, span):
            hit(
                step,
                span,
                chord_notes(step),
                "string",
                0.9,
                attack=0.25,
                decay=1.0,
                sustain=0.85,
                release=0.4,
                vibrato=(vib_rate, 0.004),
                detune_cents=8,
            )
    elif style == "synthpad":
        span = ctx.chord_beats * 4
        for step in range(0, ctx.n_steps, span):
            hit(
                step,
                span,
                chord_notes(step),
                "saw",
                0.5,
                attack=0.08,
                decay=0.8,
                sustain=0.7,
                release=0.3,
                detune_cents=12,
            )
        buf = _smooth(buf, 4)
    elif style == "arpeggio":
        pattern = rng.choice([0, 1])
        for step in range(0, ctx.n_steps, 2):
            notes = chord_notes(step)
            seq = notes + notes[-2:0:-1] if pattern else notes + [notes[0] + 12]
            m = seq[(step // 2) % len(seq)]
            hit(step, 4, [m], "piano", 0.7, decay=0.6, sustain=0.05, release=0.3, bright="piano", bright_tau=0.1)
    elif style == "piano":
        for step in range(0, ctx.n_steps, 4):
            if step % 16 in (0, 8) or rng.random() < 0.3:
                hit(step, 4, chord_notes(step), "piano", 0.8, decay=0.5, sustain=0.1, release=0.2)
    elif style == "strum":
        rhythm = rng.choice([0, 1, 2])
        for bar in range(n_bars):
            steps = ((4, 12), (0, 4, 6, 10, 12, 14), (4, 6, 12, 14))[rhythm]
            for s in steps:
                step = bar * 16 + s
                up = s % 4 == 2
                notes = chord_notes(step, centre - 5)
                notes = notes + [notes[0] + 12]
                hit(
                    step,
                    3.5,
                    notes[::-1] if up else notes,
                    "dull",
                    0.7 if up else 0.9,
                    strum=0.012,
                    decay=0.25,
                    sustain=0.15,
                    release=0.15,
                    bright="pluck",
                    bright_tau=0.06,
                )
    elif style == "chops":
        # 16th-note muted funk guitar: mostly ghost strokes with accents on the offbeats.
        for step in range(ctx.n_steps):
            if rng.random() < (0.8 if step % 4 == 2 else 0.35):
                hit(
                    step,
                    0.6,
                    chord_notes(step, 67)[-3:],
                    "pluck",
                    0.6 if step % 4 == 2 else 0.25,
                    decay=0.04,
                    sustain=0.0,
                    release=0.02,
                )
    elif style == "stabs":
        for bar in range(n_bars):
            for s in ((2, 10), (6, 14), (3, 6, 11))[rng.integers(3)]:
                hit(
                    bar * 16 + s,
                    1.5,
                    chord_notes(bar * 16 + s, 67),
                    "brass",
                    0.7,
                    attack=0.01,
                    decay=0.1,
                    sustain=0.5,
                    release=0.08,
                )
    elif style == "skank":
        timbre = rng.choice(["pluck", "organ"])
        # Either every 8th-note offbeat, or 2 and 4 when the tempo is counted in half time.
        offbeats = (2, 6, 10, 14) if rng.random() < 0.6 else (4, 12)
        for bar in range(n_bars):
            for s in offbeats:
                hit(
                    bar * 16 + s, 0.9, chord_notes(bar * 16 + s, 64), timbre, 0.8, decay=0.05, sustain=0.0, release=0.03
                )
    elif style == "bubble":
        for step in range(ctx.n_steps):
            if step % 4 in (1, 3) or (step % 4 == 2 and rng.random() < 0.5):
                hit(step, 0.8, chord_notes(step, 60), "organ", 0.5, decay=0.06, sustain=0.3, release=0.03)
        for step in range(2, ctx.n_steps, 4):
            hit(step, 0.9, chord_notes(step, 66), "pluck", 0.6, decay=0.05, sustain=0.0, release=0.03)
    elif style == "jazzcomp":
        for bar in range(n_bars):
            for s in (0, 6) if rng.random() < 0.5 else rng.choice(16, size=rng.integers(1, 4), replace=False):
                step = bar * 16 + int(s)
                notes = chord_notes(step, 62)
                hit(
                    step,
                    rng.uniform(1.5, 4),
                    notes[1:] if len(notes) > 3 else notes,
                    rng.choice(["epiano", "piano"]),
                    0.7,
                    decay=0.4,
                    sustain=0.2,
                    release=0.15,
                )
    elif style == "lofikeys":
        span = ctx.chord_beats * 4
        for step in range(0, ctx.n_steps, span):
            hit(
                step,
                span * 0.9,
                chord_notes(step, 60),
                "epiano",
                0.8,
                attack=0.01,
                decay=0.8,
                sustain=0.3,
                release=0.3,
                vibrato=(wow_rate, 0.003),
            )
        buf = _smooth(buf, rng.integers(3, 7))
    elif style == "shuffle":
        # Blues boogie dyads on the guitar: root-fifth and root-sixth alternating.
        for step in range(0, ctx.n_steps, 2):
            root_pc, _ = ctx.chord(step)
            root = 40 + (root_pc - 4) % 12
            top = root + (7 if (step // 2) % 2 == 0 else 9)
            hit(step, 1.7, [root, top], "saw", 0.8, decay=0.12, sustain=0.35, release=0.05)
        drive = rng.uniform(1.5, 4.0)
    elif style == "power8":
        for step in range(0, ctx.n_steps, 2):
            hit(
                step,
                1.8,
                chord_notes(step, power=True),
                "saw",
                0.9 if step % 4 == 0 else 0.7,
                decay=0.2,
                sustain=0.5,
                release=0.04,
            )
        drive = rng.uniform(3.0, 8.0)
    elif style == "opentriads":
        for step in range(0, ctx.n_steps, 8):
            notes = chord_notes(step, 55)
            hit(step, 7.5, notes + [notes[0] + 12], "saw", 0.9, strum=0.01, decay=0.8, sustain=0.5, release=0.1)
        drive = rng.uniform(2.0, 6.0)
    elif style == "chug":
        accent = rng.random(16) < 0.3
        for step in range(ctx.n_steps):
            if accent[step % 16]:
                hit(step, 1.9, chord_notes(step, power=True), "saw", 1.0, decay=0.25, sustain=0.6, release=0.03)
            else:
                hit(step, 0.7, chord_notes(step, power=True)[:2], "saw", 0.7, decay=0.03, sustain=0.1, release=0.02)
        drive = rng.uniform(10.0, 30.0)
    if drive:
        buf /= max(np.abs(buf).max(), 1e-9)
        if ctx.rendering:
            # another amp: asymmetric (tube-like) clipping, and a darker cab below
            bias = 0.25
            buf = (np.tanh(drive * buf + bias) - math.tanh(bias)) / math.tanh(drive)
        else:
            buf = np.tanh(drive * buf) / math.tanh(drive)
        # A guitar cab rolls off the fizz above a few kHz; a box filter is a crude but cheap cab.
        width = rng.integers(3, 6)
        buf = _smooth(buf, width + 3 if ctx.rendering else width)
    return buf


def _part_lead(ctx: _Ctx, timbre: str, density: float, register: int, legato: bool, vibrato: float) -> np.ndarray:
    rng = ctx.rng
    buf = np.zeros(ctx.n)
    sr = ctx.sr
    sd = ctx.step_seconds
    scale = ctx.scale
    pitches = sorted(m for m in range(register - 12, register + 13) if (m - ctx.key) % 12 in scale)
    pos = len(pitches) // 2
    grid = 2 if density < 0.6 else 1
    vib_rate = round(rng.uniform(4.5, 6.5), 2)
    for bar in range(ctx.n_steps // 16):
        if rng.random() < 0.3:
            continue  # phrases breathe
        step = bar * 16
        while step < bar * 16 + 16:
            length = int(rng.choice([1, 2, 2, 3, 4, 6, 8]) * grid)
            if rng.random() < density:
                root_pc, ivs = ctx.chord(step)
                pos = int(np.clip(pos + rng.choice([-2, -1, -1, 1, 1, 2, 0]), 0, len(pitches) - 1))
                m = pitches[pos]
                if step % 4 == 0:
                    chord_pcs = {(root_pc + iv) % 12 for iv in ivs}
                    near = [p for p in pitches if p % 12 in chord_pcs]
                    if near:
                        m = min(near, key=lambda p: abs(p - m))
                        pos = pitches.index(m)
                dur = length * sd * (1.0 if legato else 0.6)
                sig = ctx.note(
                    dur,
                    _midi_hz(m),
                    timbre,
                    attack=0.03 if legato else 0.008,
                    decay=0.3,
                    sustain=0.7,
                    release=0.08,
                    vibrato=(vib_rate, vibrato),
                )
                _add(buf, ctx.sample(step), sig, rng.uniform(0.7, 1.0))
            step += length
    return buf


def _part_rap(ctx: _Ctx) -> np.ndarray:
    """Speech-like syllables: short vowel-formant bursts on a 16th grid at a spoken, unsung pitch."""
    rng = ctx.rng
    buf = np.zeros(ctx.n)
    f_base = rng.uniform(100, 190)
    for bar in range(ctx.n_steps // 16):
        if rng.random() < 0.25:
            continue
        for s in range(16):
            if rng.random() < 0.55:
                dur = ctx.step_seconds * rng.uniform(0.6, 1.6)
                f0 = f_base * rng.uniform(0.85, 1.2)
                sig = ctx.note(
                    dur,
                    f0,
                    rng.choice(["vox_ah", "vox_eh", "vox_oo"]),
                    attack=0.01,
                    decay=0.08,
                    sustain=0.5,
                    release=0.03,
                    vibrato=(rng.uniform(3, 7), 0.02),
                )
                _add(buf, ctx.sample(bar * 16 + s), sig, rng.uniform(0.5, 1.0))
    return buf


# --------------------------------------------------------------------------- genre table


@dataclass(frozen=True)
class _Style:
    tempo: tuple[float, float]
    swing: tuple[float, float]
    drums: tuple[tuple[str, float], ...]  # (pattern family, weight); "" means no drums
    kit: str
    chord_beats: tuple[int, ...]
    bass: tuple[tuple[str, float], ...]
    comp: tuple[tuple[str, float], ...]
    lead: tuple[tuple[str, float], ...]  # (timbre, weight); "" means no lead
    lead_register: tuple[int, int]
    lead_density: tuple[float, float]
    levels: dict  # part -> (low, high) gain
    reverb: tuple[float, float]
    band_limit: tuple[float, float]  # low-pass corner in Hz
    hiss: tuple[float, float]
    bus_drive: tuple[float, float]
    rap: float = 0.0
    jitter: float = 0.004


_STYLES: dict[str, _Style] = {
    "blues": _Style(
        tempo=(65, 110),
        swing=(0.7, 1.0),
        drums=(("blues", 0.8), ("jazz", 0.2)),
        kit="acoustic",
        chord_beats=(4,),
        bass=(("boogie", 0.6), ("walking", 0.4)),
        comp=(("shuffle", 0.6), ("piano", 0.25), ("power8", 0.15)),
        lead=(("saw", 0.35), ("reed", 0.25), ("square", 0.2), ("", 0.2)),
        lead_register=(64, 76),
        lead_density=(0.4, 0.8),
        levels={"drums": (0.4, 0.9), "bass": (0.5, 1.0), "comp": (0.4, 0.9), "lead": (0.3, 0.7)},
        reverb=(0.05, 0.3),
        band_limit=(3500, 9000),
        hiss=(0.002, 0.02),
        bus_drive=(0.5, 2.0),
        jitter=0.008,
    ),
    "classical": _Style(
        tempo=(60, 110),
        swing=(0.0, 0.0),
        drums=(("", 1.0),),
        kit="acoustic",
        chord_beats=(2, 4),
        bass=(("cello", 0.7), ("", 0.3)),
        comp=(("pad", 0.6), ("arpeggio", 0.4)),
        lead=(("string", 0.45), ("reed", 0.2), ("piano", 0.2), ("", 0.15)),
        lead_register=(70, 82),
        lead_density=(0.5, 0.9),
        levels={"drums": (0, 0), "bass": (0.4, 0.8), "comp": (0.6, 1.0), "lead": (0.3, 0.8)},
        reverb=(0.3, 0.7),
        band_limit=(5000, 11000),
        hiss=(0.001, 0.01),
        bus_drive=(0.1, 0.5),
        jitter=0.012,
    ),
    "country": _Style(
        tempo=(95, 150),
        swing=(0.0, 0.4),
        drums=(("country", 0.75), ("blues", 0.25)),
        kit="acoustic",
        chord_beats=(4, 8),
        bass=(("root_fifth", 0.8), ("walking", 0.2)),
        comp=(("strum", 0.7), ("piano", 0.2), ("opentriads", 0.1)),
        lead=(("pluck", 0.35), ("string", 0.25), ("vox_ah", 0.2), ("", 0.2)),
        lead_register=(67, 79),
        lead_density=(0.5, 0.9),
        levels={"drums": (0.4, 0.9), "bass": (0.5, 1.0), "comp": (0.5, 1.0), "lead": (0.3, 0.7)},
        reverb=(0.05, 0.3),
        band_limit=(5000, 11000),
        hiss=(0.001, 0.01),
        bus_drive=(0.5, 1.5),
    ),
    "disco": _Style(
        tempo=(112, 128),
        swing=(0.0, 0.1),
        drums=(("disco", 0.85), ("pop", 0.15)),
        kit="electronic",
        chord_beats=(4, 8),
        bass=(("octave", 0.7), ("pulse", 0.3)),
        comp=(("pad", 0.3), ("chops", 0.35), ("stabs", 0.2), ("synthpad", 0.15)),
        lead=(("string", 0.3), ("vox_ah", 0.3), ("brass", 0.2), ("", 0.2)),
        lead_register=(69, 81),
        lead_density=(0.5, 0.9),
        levels={"drums": (0.6, 1.0), "bass": (0.6, 1.0), "comp": (0.4, 0.8), "lead": (0.3, 0.6)},
        reverb=(0.05, 0.25),
        band_limit=(6000, 11000),
        hiss=(0.001, 0.008),
        bus_drive=(1.0, 2.5),
    ),
    "hiphop": _Style(
        tempo=(82, 98),
        swing=(0.2, 0.6),
        drums=(("hiphop", 0.85), ("reggae", 0.15)),
        kit="808",
        chord_beats=(4, 8),
        bass=(("sub808", 0.8), ("reggae", 0.2)),
        comp=(("lofikeys", 0.6), ("jazzcomp", 0.2), ("piano", 0.2)),
        lead=(("", 0.5), ("reed", 0.2), ("epiano", 0.3)),
        lead_register=(65, 77),
        lead_density=(0.2, 0.5),
        levels={"drums": (0.7, 1.1), "bass": (0.6, 1.1), "comp": (0.3, 0.7), "lead": (0.2, 0.5)},
        reverb=(0.02, 0.15),
        band_limit=(5000, 11000),
        hiss=(0.002, 0.015),
        bus_drive=(1.0, 3.0),
        rap=0.7,
    ),
    "jazz": _Style(
        tempo=(110, 200),
        swing=(0.5, 0.9),
        drums=(("jazz", 0.85), ("blues", 0.15)),
        kit="jazz",
        chord_beats=(2, 4),
        bass=(("walking", 0.85), ("boogie", 0.15)),
        comp=(("jazzcomp", 0.7), ("lofikeys", 0.15), ("piano", 0.15)),
        lead=(("reed", 0.4), ("muted", 0.3), ("", 0.3)),
        lead_register=(64, 79),
        lead_density=(0.5, 0.95),
        levels={"drums": (0.3, 0.8), "bass": (0.6, 1.1), "comp": (0.4, 0.8), "lead": (0.3, 0.8)},
        reverb=(0.1, 0.4),
        band_limit=(4000, 10000),
        hiss=(0.002, 0.015),
        bus_drive=(0.2, 1.0),
        jitter=0.008,
    ),
    "metal": _Style(
        tempo=(140, 200),
        swing=(0.0, 0.0),
        drums=(("metal", 0.85), ("rock", 0.15)),
        kit="metal",
        chord_beats=(2, 4),
        bass=(("chug", 0.6), ("eighths", 0.4)),
        comp=(("chug", 0.7), ("power8", 0.3)),
        lead=(("", 0.6), ("saw", 0.4)),
        lead_register=(67, 84),
        lead_density=(0.7, 1.0),
        levels={"drums": (0.5, 1.0), "bass": (0.4, 0.8), "comp": (0.7, 1.1), "lead": (0.2, 0.5)},
        reverb=(0.05, 0.2),
        band_limit=(6000, 11000),
        hiss=(0.001, 0.008),
        bus_drive=(1.5, 4.0),
        jitter=0.002,
    ),
    "pop": _Style(
        tempo=(95, 128),
        swing=(0.0, 0.15),
        drums=(("pop", 0.7), ("disco", 0.2), ("rock", 0.1)),
        kit="electronic",
        chord_beats=(4, 8),
        bass=(("pulse", 0.6), ("octave", 0.2), ("eighths", 0.2)),
        comp=(("synthpad", 0.35), ("piano", 0.3), ("strum", 0.2), ("chops", 0.15)),
        lead=(("vox_ah", 0.35), ("vox_eh", 0.25), ("square", 0.2), ("", 0.2)),
        lead_register=(64, 76),
        lead_density=(0.5, 0.9),
        levels={"drums": (0.6, 1.0), "bass": (0.5, 1.0), "comp": (0.4, 0.8), "lead": (0.4, 0.8)},
        reverb=(0.05, 0.3),
        band_limit=(7000, 11000),
        hiss=(0.0005, 0.005),
        bus_drive=(1.5, 3.5),
    ),
    "reggae": _Style(
        tempo=(66, 84),
        swing=(0.2, 0.6),
        drums=(("reggae", 0.8), ("hiphop", 0.2)),
        kit="acoustic",
        chord_beats=(4, 8),
        bass=(("reggae", 0.85), ("sub808", 0.15)),
        comp=(("skank", 0.5), ("bubble", 0.5)),
        lead=(("vox_ah", 0.3), ("reed", 0.25), ("organ", 0.15), ("", 0.3)),
        lead_register=(64, 76),
        lead_density=(0.4, 0.8),
        levels={"drums": (0.5, 1.0), "bass": (0.8, 1.2), "comp": (0.4, 0.8), "lead": (0.3, 0.6)},
        reverb=(0.05, 0.35),
        band_limit=(4500, 10000),
        hiss=(0.002, 0.015),
        bus_drive=(0.5, 2.0),
        rap=0.15,
    ),
    "rock": _Style(
        tempo=(105, 150),
        swing=(0.0, 0.1),
        drums=(("rock", 0.8), ("metal", 0.1), ("pop", 0.1)),
        kit="acoustic",
        chord_beats=(4, 8),
        bass=(("eighths", 0.75), ("root_fifth", 0.25)),
        comp=(("power8", 0.5), ("opentriads", 0.3), ("strum", 0.2)),
        lead=(("vox_ah", 0.3), ("saw", 0.3), ("", 0.4)),
        lead_register=(64, 79),
        lead_density=(0.5, 0.9),
        levels={"drums": (0.6, 1.0), "bass": (0.5, 0.9), "comp": (0.6, 1.0), "lead": (0.3, 0.6)},
        reverb=(0.05, 0.3),
        band_limit=(5000, 11000),
        hiss=(0.001, 0.01),
        bus_drive=(1.0, 3.0),
    ),
}


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    weights = np.array([w for _, w in options], dtype=np.float64)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


# --------------------------------------------------------------------------- recording stage


def _fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is fast there and it wastes less than a power of two."""
    best = 1 << int(math.ceil(math.log2(n)))
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            size = f35
            while size < n:
                size *= 2
            best = min(best, size)
            f35 *= 3
        f5 *= 5
    return best


def _master(rng: np.random.Generator, x: np.ndarray, sr: int, style: _Style) -> np.ndarray:
    n = len(x)
    reverb_seconds = rng.uniform(0.6, 1.8)
    ir_len = int(reverb_seconds * sr)
    ir = rng.standard_normal(ir_len) * np.exp(-np.arange(ir_len) / (sr * reverb_seconds / 6.9))
    ir = _smooth(ir, 3)
    ir *= rng.uniform(*style.reverb) / max(np.sqrt(np.sum(ir**2)), 1e-9)
    ir[0] += 1.0
    nfft = _fft_size(n + ir_len)
    # Each clip gets its own "microphone and room": a tilt, a band limit and a low cut.
    # The curve is smooth, so it is evaluated on a coarse grid and interpolated.
    coarse = np.linspace(0.0, sr / 2, 513)
    tilt_db_per_octave = rng.uniform(-2.0, 2.0)
    eq = 10 ** (tilt_db_per_octave * np.log2(np.maximum(coarse, 20.0) / 1000.0) / 20.0)
    eq /= np.sqrt(1.0 + (coarse / rng.uniform(*style.band_limit)) ** 8)
    eq /= np.sqrt(1.0 + (rng.uniform(25, 70) / np.maximum(coarse, 1.0)) ** 4)
    eq = np.interp(np.fft.rfftfreq(nfft, 1.0 / sr), coarse, eq)
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft) * eq, nfft)[:n]
    rms = np.sqrt(np.mean(y**2)) + 1e-9
    hiss = rng.standard_normal(n, dtype=np.float32)
    y += (rms * rng.uniform(*style.hiss) * 10.0) * _smooth(hiss, 2)
    drive = rng.uniform(*style.bus_drive)
    y *= drive / (np.abs(y).max() + 1e-12)
    return np.tanh(y) / math.tanh(drive)


def _master_second(rng: np.random.Generator, x: np.ndarray, sr: int, style: _Style) -> np.ndarray:
    """The second rendering's recording stage: another room (shorter, with early
    reflections), another microphone and desk (another tilt, band limit and low cut, and a
    presence bump or a mid scoop), pink noise with mains hum instead of white hiss, and a
    bus that clips more softly. The style's ranges still apply (an old blues recording
    stays band-limited and noisy), so the genre's recording habits survive."""
    n = len(x)
    reverb_seconds = rng.uniform(0.3, 1.0)
    ir_len = int(reverb_seconds * sr)
    ir = rng.standard_normal(ir_len) * np.exp(-np.arange(ir_len) / (sr * reverb_seconds / 6.9))
    ir *= rng.uniform(*style.reverb) / max(np.sqrt(np.sum(ir**2)), 1e-9)
    for delay_ms, level in zip(rng.uniform(7.0, 35.0, 4), rng.uniform(0.1, 0.35, 4)):
        ir[int(delay_ms * sr / 1000)] += level * rng.choice([-1.0, 1.0])
    ir[0] += 1.0
    nfft = _fft_size(n + ir_len)
    coarse = np.linspace(0.0, sr / 2, 513)
    octaves = np.log2(np.maximum(coarse, 20.0) / 1000.0)
    eq = 10 ** (rng.uniform(-2.5, 2.5) * octaves / 20.0)
    centre, bump_db = np.log2(rng.uniform(1500, 4500) / 1000.0), rng.choice([-1, 1]) * rng.uniform(3, 7)
    eq *= 10 ** (bump_db * np.exp(-((octaves - centre) ** 2) / (2 * 0.6**2)) / 20.0)
    corner = min(rng.uniform(*style.band_limit) * rng.uniform(0.7, 1.3), 0.45 * sr)
    eq /= np.sqrt(1.0 + (coarse / corner) ** 6)
    eq /= np.sqrt(1.0 + (rng.uniform(60, 140) / np.maximum(coarse, 1.0)) ** 4)
    eq = np.interp(np.fft.rfftfreq(nfft, 1.0 / sr), coarse, eq)
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft) * eq, nfft)[:n]
    rms = np.sqrt(np.mean(y**2)) + 1e-9
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    pink = np.fft.irfft(spectrum, n)
    y += (rms * rng.uniform(*style.hiss) * 10.0) * pink / (np.sqrt(np.mean(pink**2)) + 1e-12)
    t = np.arange(n) / sr
    mains = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * mains * h * t) / h for h in (1, 2, 3))
    y += rms * rng.uniform(0.002, 0.01) * hum
    drive = rng.uniform(*style.bus_drive)
    y *= drive / (np.abs(y).max() + 1e-12)
    return y / (1.0 + np.abs(y)) * ((1.0 + drive) / drive)


# --------------------------------------------------------------------------- public API


# 0: the corpus; 1: the same songs recorded another way (`render_clip`)
RENDERINGS = (0, 1)


def _rng_for(genre: str, index: int, seed: int, rendering: int = 0) -> np.random.Generator:
    key = f"genreflow.synthetic|{genre}|{int(index)}|{int(seed)}"
    if rendering:
        key += f"|rendering {int(rendering)}"
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


# Long because it mixes every part of a genre's arrangement in order (drums, bass, comping,
# lead, rap), each a call, then masters the mix.
def render_clip(
    genre: str, index: int, seconds: float, sample_rate: int = 22050, seed: int = 0, rendering: int = 0
) -> np.ndarray:
    """Render one clip: float32 mono, ``round(seconds * sample_rate)`` samples in [-1, 1].

    ``rendering`` 0 is the corpus. ``rendering`` 1 is a second recording of the same song:
    the same notes, rhythm, structure, tempo, key and mix levels, played on other
    instruments (another synthesis of every timbre, another drum kit and guitar amp) and
    recorded in another room (`_master_second`). It is how the robustness stage shows what
    a change of recording costs a model, without downloading anything."""
    if genre not in _STYLES:
        raise ValueError(f"unknown genre {genre!r}; expected one of {', '.join(GTZAN_GENRES)}")
    if seconds <= 0 or sample_rate <= 0:
        raise ValueError("seconds and sample_rate must be positive")
    if rendering not in RENDERINGS:
        raise ValueError(f"rendering {rendering!r}: expected one of {RENDERINGS}")
    n = int(round(seconds * sample_rate))
    rng = _rng_for(genre, index, seed)
    second_rng = _rng_for(genre, index, seed, rendering) if rendering else None
    style = _STYLES[genre]

    bpm = rng.uniform(*style.tempo)
    scale_name, progression = _PROGRESSIONS[genre][rng.integers(len(_PROGRESSIONS[genre]))]
    key = int(rng.integers(12))
    bar_seconds = 240.0 / bpm
    ctx = _Ctx(
        rng=rng,
        sr=sample_rate,
        n=n,
        bpm=bpm,
        swing=rng.uniform(*style.swing),
        # Start somewhere inside the first bar, as an excerpt cut from a song would.
        t0=-rng.uniform(0.0, bar_seconds),
        key=key,
        scale=_SCALES[scale_name],
        chords=[((key + deg) % 12, _QUALITY[q]) for deg, q in progression],
        chord_beats=int(rng.choice(style.chord_beats)),
        n_steps=16 * (int(math.ceil(seconds / bar_seconds)) + 2),
        jitter=style.jitter,
        rendering=rendering,
        second_rng=second_rng,
    )
    # Rotate the progression so clips do not all start on the tonic.
    shift = int(rng.integers(len(ctx.chords)))
    ctx.chords = ctx.chords[shift:] + ctx.chords[:shift]

    def level(part):
        lo, hi = style.levels[part]
        return rng.uniform(lo, hi)

    mix = np.zeros(n)
    family = _pick(rng, style.drums)
    if family:
        kit = {"metal": "metal", "disco": "electronic", "hiphop": "808", "jazz": "jazz"}.get(family, style.kit)
        drums = _part_drums(ctx, family, kit if rng.random() < 0.7 else style.kit, fills=rng.uniform(0.1, 0.6))
        mix += level("drums") * drums / (np.abs(drums).max() + 1e-9)
    bass_style = _pick(rng, style.bass)
    if bass_style:
        bass = _part_bass(ctx, bass_style)
        mix += level("bass") * bass / (np.abs(bass).max() + 1e-9)
    comp = _part_comp(ctx, _pick(rng, style.comp))
    mix += level("comp") * comp / (np.abs(comp).max() + 1e-9)
    lead_timbre = _pick(rng, style.lead)
    if lead_timbre:
        density = rng.uniform(*style.lead_density)
        lead = _part_lead(
            ctx,
            lead_timbre,
            density,
            int(rng.integers(*style.lead_register)),
            legato=lead_timbre in ("string", "reed", "vox_ah", "vox_eh", "muted", "organ"),
            vibrato=0.006 if lead_timbre in ("string", "reed", "vox_ah", "vox_eh") else 0.0,
        )
        mix += level("lead") * lead / (np.abs(lead).max() + 1e-9)
    if style.rap and rng.random() < style.rap:
        rap = _part_rap(ctx)
        mix += rng.uniform(0.3, 0.7) * rap / (np.abs(rap).max() + 1e-9)

    if rendering:
        y = _master_second(second_rng, mix, sample_rate, style)
        peak = 10 ** (-second_rng.uniform(1.0, 4.0) / 20.0)
    else:
        y = _master(rng, mix, sample_rate, style)
        # Peak between -4 and -1 dBFS: loud enough to be useful, never clipping on write.
        peak = 10 ** (-rng.uniform(1.0, 4.0) / 20.0)
    y *= peak / (np.abs(y).max() + 1e-12)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def clip_relpath(genre: str, index: int) -> str:
    """GTZAN-style relative path, e.g. ``genres_original/blues/blues.00003.wav``."""
    return f"genres_original/{genre}/{genre}.{int(index):05d}.wav"


def write_corpus(
    root: str | os.PathLike,
    clips_per_genre: int,
    seconds: float,
    sample_rate: int = 22050,
    seed: int = 0,
    log: Callable[[str], object] = print,
    rendering: int = 0,
) -> list[Path]:
    """Write ``clips_per_genre`` clips for every genre under ``root``; return the sorted paths.

    Each file is written to a temporary sibling and renamed into place, so an
    interrupted run never leaves a truncated WAV that looks complete. ``rendering`` 1
    writes the same songs recorded another way (`render_clip`).
    """
    songs = [(genre, index) for genre in GTZAN_GENRES for index in range(clips_per_genre)]
    return write_songs(root, songs, seconds, sample_rate, seed, rendering, log)


def write_songs(
    root: str | os.PathLike,
    songs: Sequence[tuple[str, int]],
    seconds: float,
    sample_rate: int = 22050,
    seed: int = 0,
    rendering: int = 0,
    log: Callable[[str], object] = print,
) -> list[Path]:
    """Write the clips of ``songs`` ((genre, index) pairs) under ``root`` in the GTZAN
    layout (`clip_relpath`), as `write_corpus` does; return the sorted paths."""
    root = Path(root)
    total = len(songs)
    every = max(1, math.ceil(total / 10))
    paths: list[Path] = []
    for done, (genre, index) in enumerate(songs, start=1):
        path = root / clip_relpath(genre, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = render_clip(genre, index, seconds, sample_rate=sample_rate, seed=seed, rendering=rendering)
        with atomic_path(path) as tmp:
            sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
        paths.append(path)
        if done % every == 0 or done == total:
            what = "synthetic corpus" if rendering == 0 else f"synthetic rendering {rendering}"
            log(f"{what}: {done}/{total} clips ({100 * done // total}%)")
    return sorted(paths)
