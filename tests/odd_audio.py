"""Audio that is not what a genre model was trained on, for the tests and
benchmarks/confidence.py of the "unfamiliar" flag: noise, speech, a clip that is mostly
silence, a sine tone, and songs played through another room and EQ (`shifted`).

`shifted` stands in for the second rendering of the demo's songs (the same songs with
other timbres, genreflow.synthetic, issue 23) until that lands: a strong EQ (low cut, a
boost at 2.5 kHz, a high cut) and a long reverb, the kind of change a phone recording of a
song in a room makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

SR = 22050
SENTENCES = (
    "The quarterly report shows that revenue grew by four percent while costs stayed flat.",
    "Please remember to bring your identity card and a pen to the examination room.",
    "Tomorrow will be cloudy in the morning with light rain spreading from the west.",
    "The committee will meet again next Thursday to discuss the new parking rules.",
    "Turn left at the second traffic light and the station will be on your right.",
    "Our guest today has written twelve books about the history of the railway.",
)


def espeak() -> str | None:
    return shutil.which("espeak-ng")


def white_noise(seconds: float, seed: int) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))


def pink_noise(seconds: float, seed: int) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    n = int(seconds * SR)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1.0))
    y = np.fft.irfft(spectrum, n)
    return 0.3 * y / np.abs(y).max()


def sine_tone(seconds: float, frequency: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.4 * np.sin(2 * np.pi * frequency * t)


def mostly_silence(music: np.ndarray, keep_seconds: float, seed: int) -> np.ndarray:
    """The first `keep_seconds` of `music`, then a very quiet noise floor (-70 dBFS RMS, so
    the clip's peak stays well above the silence threshold and it is not rejected)."""
    keep = int(keep_seconds * SR)
    floor = 10 ** (-70 / 20) * np.random.default_rng(seed).standard_normal(music.size - keep)
    return np.concatenate([music[:keep], floor])


def speech(seconds: float, index: int, folder: str | os.PathLike) -> np.ndarray:
    """espeak-ng reading one of `SENTENCES` (voices alternate), repeated to `seconds`."""
    binary = espeak()
    if binary is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    path = Path(folder) / f"_speech_{index}.wav"
    voice = ("en", "en-us", "en+f3", "en-us+m3")[index % 4]
    subprocess.run([binary, "-v", voice, "-s", str(150 + 10 * (index % 3)), "-w", str(path),
                    SENTENCES[index % len(SENTENCES)]], check=True, capture_output=True)
    y, rate = soundfile.read(path, dtype="float64")
    path.unlink()
    if rate != SR:
        import soxr

        y = soxr.resample(y, rate, SR)
    return np.resize(y, int(seconds * SR))


def shifted(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """`y` through a strong EQ and a room (see the module's docstring), at its own peak."""
    from scipy.signal import butter, fftconvolve, sosfilt

    low_cut = butter(2, 300, "highpass", fs=SR, output="sos")
    high_cut = butter(4, 5000, "lowpass", fs=SR, output="sos")
    band = butter(2, (1800, 3400), "bandpass", fs=SR, output="sos")
    x = sosfilt(high_cut, sosfilt(low_cut, y))
    x = x + 2.0 * sosfilt(band, x)
    t = np.arange(int(1.2 * SR)) / SR
    room = np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t * 6.9 / 1.2)
    room[0] = 0.0
    wet = fftconvolve(x, room)[: x.size]
    x = 0.5 * x / np.abs(x).max() + 0.5 * wet / np.abs(wet).max()
    return x * (np.abs(y).max() / np.abs(x).max())


def write(path: str | os.PathLike, y: np.ndarray) -> str:
    soundfile.write(path, np.clip(y, -1.0, 1.0), SR, subtype="PCM_16")
    return str(path)


def odd_clips(folder: str | os.PathLike, seconds: float, music: list[np.ndarray],
              count: int = 2, with_speech: bool = True) -> dict[str, str]:
    """`count` clips of each kind of odd audio in `folder`: path -> kind (white noise, pink
    noise, speech, mostly silence (from the given `music` clips), sine tone)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for i in range(count):
        kinds[write(folder / f"white_noise_{i}.wav", white_noise(seconds, i))] = "white noise"
        kinds[write(folder / f"pink_noise_{i}.wav", pink_noise(seconds, 100 + i))] = "pink noise"
        kinds[write(folder / f"tone_{i}.wav", sine_tone(seconds, 220.0 * (i + 1)))] = "sine tone"
        kinds[write(folder / f"mostly_silence_{i}.wav",
                    mostly_silence(music[i % len(music)], 0.15 * seconds, 200 + i))] = "mostly silence"
        if with_speech:
            kinds[write(folder / f"speech_{i}.wav", speech(seconds, i, folder))] = "speech"
    return kinds
