"""The families of augmented training views: each draws its parameters at random from the
ranges of its config block (training.augment.families) and applies them with
`genreflow.robustness.perturb`'s functions, so that a view is "the same music recorded
another way".

==========  =================================================================  ==================
kind        what one view is                                                   parameters
==========  =================================================================  ==================
`eq`        a random EQ curve: a gain uniform in +-`max_db` at each of `bands`  max_db, bands
            log-spaced frequencies from 60 Hz to 0.45 x the rate, smooth
            between them (linear in log frequency), linear phase
`bandlimit` a Butterworth low-pass at a cutoff log-uniform in `lowpass_hz`      lowpass_hz,
            and a high-pass log-uniform in `highpass_hz` (each of `order`),     highpass_hz, order
            cutoffs kept below 0.45 x the rate
`noise`     noise whose power falls `slope` (uniform) x 3 dB per octave (0     snr_db, slope
            white, 1 pink, 2 brown) at an SNR uniform in `snr_db`
`room`      `perturb.reverb`'s synthetic room, RT60 uniform in `rt60_seconds`,  rt60_seconds,
            direct-to-reverberant ratio uniform in `drr_db`                    drr_db
==========  =================================================================  ==================

Ranges are [low, high] pairs (low == high fixes the value). They are meant to differ from
the robustness stage's fixed test conditions (a random EQ curve, not its tilt; coloured
noise of any slope; rooms of random size), and the families leave out what only the tests
apply (MP3, an 8 kHz round trip, a pitch shift): those rows, and above all the second
rendering (other instruments), judge a model on shifts it never trained on.

Which family draws which view does not depend on any family's parameters
(`assign_families`), and a view's randomness is `clip_rng(family, view, clip, seed)`'s
alone: changing one family's ranges redraws only its views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from genreflow.robustness.perturb import HEADROOM, clip_rng, reverb

# Each kind's parameters and their defaults (the schema holds the same).
DEFAULTS: dict[str, dict] = {
    "eq": {"max_db": 6.0, "bands": 6},
    "bandlimit": {"lowpass_hz": [3500.0, 10000.0], "highpass_hz": [40.0, 250.0], "order": 4},
    "noise": {"snr_db": [10.0, 30.0], "slope": [0.0, 2.0]},
    "room": {"rt60_seconds": [0.2, 1.2], "drr_db": [-3.0, 10.0]},
}
KINDS = tuple(DEFAULTS)
# the highest frequency a view's EQ bands or cutoffs reach, as a share of the sample rate
TOP = 0.45
EQ_LOW_HZ = 60.0
EQ_TAPS = 2049


def parameters(spec: Mapping) -> dict:
    """A family block's parameters with the kind's defaults filled in; an unknown kind or
    parameter, or a range whose low exceeds its high, is an error naming them."""
    kind = spec.get("kind")
    if kind not in DEFAULTS:
        raise ValueError(f"augmentation family kind {kind!r}: known kinds are {list(KINDS)}")
    given = {key: value for key, value in spec.items() if key != "kind"}
    unknown = sorted(set(given) - set(DEFAULTS[kind]))
    if unknown:
        raise ValueError(f"augmentation family kind {kind!r} has no parameter(s) {unknown}; "
                         f"its parameters: {sorted(DEFAULTS[kind])}")
    values = {**DEFAULTS[kind], **given}
    for name, value in values.items():
        if isinstance(value, (list, tuple)) and not (len(value) == 2 and value[0] <= value[1]):
            raise ValueError(f"augmentation family {kind!r} {name}: {list(value)} is not a "
                             "[low, high] range with low <= high")
    return values


def _uniform(rng: np.random.Generator, bounds) -> float:
    low, high = bounds
    return float(low) if low == high else float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, bounds) -> float:
    low, high = bounds
    return float(low) if low == high else float(math.exp(rng.uniform(math.log(low),
                                                                       math.log(high))))


def draw(spec: Mapping, sample_rate: int, rng: np.random.Generator) -> dict:
    """The concrete parameters of one view of the family `spec` (what its log records)."""
    p, kind = parameters(spec), spec["kind"]
    top = TOP * sample_rate
    if kind == "eq":
        bands = int(p["bands"])
        return {"kind": kind,
                "frequencies_hz": np.geomspace(EQ_LOW_HZ, top, bands).round(1).tolist(),
                "gains_db": rng.uniform(-p["max_db"], p["max_db"], bands).round(2).tolist()}
    if kind == "bandlimit":
        highpass = min(_log_uniform(rng, p["highpass_hz"]), top / 2)
        lowpass = min(_log_uniform(rng, p["lowpass_hz"]), top)
        return {"kind": kind, "lowpass_hz": round(max(lowpass, 2 * highpass), 1),
                "highpass_hz": round(highpass, 1), "order": int(p["order"])}
    if kind == "noise":
        return {"kind": kind, "snr_db": round(_uniform(rng, p["snr_db"]), 2),
                "slope": round(_uniform(rng, p["slope"]), 3)}
    return {"kind": kind, "rt60_seconds": round(_uniform(rng, p["rt60_seconds"]), 3),
            "drr_db": round(_uniform(rng, p["drr_db"]), 2)}


def eq_curve(y: np.ndarray, sample_rate: int, frequencies_hz: Sequence[float],
             gains_db: Sequence[float]) -> np.ndarray:
    """`y` through a linear-phase FIR whose gain passes through `gains_db` at
    `frequencies_hz`, linear in log frequency between them and flat beyond."""
    from scipy import signal

    nyquist = sample_rate / 2
    grid = np.concatenate([[0.0], np.geomspace(EQ_LOW_HZ / 2, nyquist, 512)])
    gains = np.interp(np.log(np.maximum(grid, 1.0)), np.log(frequencies_hz), gains_db)
    taps = signal.firwin2(EQ_TAPS, grid, 10 ** (gains / 20), fs=sample_rate)
    return signal.oaconvolve(y, taps, mode="same")


def coloured_noise(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls `slope` x 3 dB per octave (power ~ 1 / f^slope)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= f[1:] ** (slope / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def apply(y, sample_rate: int, drawn: Mapping, rng: np.random.Generator) -> np.ndarray:
    """The clip `y` as one view (`drawn` parameters), float32 of its length, scaled down to
    `HEADROOM` where it would exceed full scale (as `perturb.perturb` does)."""
    from scipy import signal

    clip = np.asarray(y, dtype=np.float64)
    kind = drawn["kind"]
    if kind == "eq":
        out = eq_curve(clip, sample_rate, drawn["frequencies_hz"], drawn["gains_db"])
    elif kind == "bandlimit":
        sos = np.concatenate([
            signal.butter(drawn["order"], drawn["highpass_hz"], btype="highpass",
                          fs=sample_rate, output="sos"),
            signal.butter(drawn["order"], drawn["lowpass_hz"], btype="lowpass",
                          fs=sample_rate, output="sos")])
        out = signal.sosfilt(sos, clip)
    elif kind == "noise":
        added = coloured_noise(clip.size, drawn["slope"], rng)
        level = np.sqrt(np.mean(clip**2)) / 10 ** (drawn["snr_db"] / 20)
        out = clip + added * (level / max(float(np.sqrt(np.mean(added**2))), 1e-12))
    elif kind == "room":
        out = reverb(clip, sample_rate, rt60_seconds=drawn["rt60_seconds"],
                     drr_db=drawn["drr_db"], rng=rng)
    else:
        raise ValueError(f"augmentation family kind {kind!r}: known kinds are {list(KINDS)}")
    out = np.asarray(out, dtype=np.float32)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * np.float32(HEADROOM / peak) if peak > 1.0 else out


def view_rng(family: str, view: int, clip: str, seed: int) -> np.random.Generator:
    """The generator of one view: its parameters and its noise."""
    return clip_rng("augment", family, int(view), clip, int(seed))


def assign_families(clip: str, views: int, families: Sequence[str], seed: int) -> list[str]:
    """The family of each of a track's `views` views: the families in their config order,
    from a place drawn for the track, so that each family draws about views / len(families)
    of every track's views and a track's views come from different families where there
    are enough. Depends on the families' names only, never on their parameters."""
    if not families:
        raise ValueError("training.augment.views > 0 needs at least one family in "
                         "training.augment.families")
    start = int(clip_rng("augment families", clip, int(seed)).integers(len(families)))
    return [families[(start + view) % len(families)] for view in range(int(views))]


def make_view(y, sample_rate: int, family: str, spec: Mapping, view: int, clip: str,
              seed: int) -> tuple[np.ndarray, dict]:
    """View number `view` of track `clip` (audio `y`) drawn from `family` (its block
    `spec`), and the parameters it drew."""
    rng = view_rng(family, view, clip, seed)
    drawn = draw(spec, sample_rate, rng)
    return apply(y, sample_rate, drawn, rng), drawn
