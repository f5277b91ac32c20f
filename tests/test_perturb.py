"""The perturbation families (genreflow.robustness.perturb) do what they say: measured on
white noise, tones and synthetic music, not taken on trust."""

import numpy as np
import pytest

from genreflow.robustness import perturb
from genreflow.robustness.perturb import DEFAULTS, FAMILIES, clip_rng

SR = 22050


def _white(seconds=4.0, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _tone(frequency, seconds=2.0, level=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _band_db(y, low, high):
    """Power of `y` between `low` and `high` Hz, in dB."""
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(y.size, 1 / SR)
    return 10 * np.log10(spectrum[(frequencies >= low) & (frequencies < high)].sum())


def _rms(y):
    return np.sqrt(np.mean(np.square(y, dtype=np.float64)))


def _music(seconds=4.0, index=0):
    from genreflow.synthetic import render_clip

    return render_clip("rock", index, seconds)


@pytest.mark.parametrize("kind", FAMILIES)
def test_every_family_keeps_length_and_dtype_and_is_reproducible(kind):
    y = _music()
    spec = {"kind": kind}
    first = perturb.perturb(y, SR, spec, clip_rng(kind, "rock.00000", 0))
    again = perturb.perturb(y, SR, spec, clip_rng(kind, "rock.00000", 0))
    assert first.dtype == np.float32 and first.shape == y.shape
    np.testing.assert_array_equal(first, again)  # the same audio in every run
    assert np.max(np.abs(first)) <= 1.0
    assert not np.array_equal(first, y)


@pytest.mark.parametrize("kind", perturb.RANDOM_FAMILIES)
def test_random_families_draw_from_the_generator_they_are_given(kind):
    y = _music()
    a = perturb.perturb(y, SR, {"kind": kind}, clip_rng(kind, "rock.00000", 0))
    b = perturb.perturb(y, SR, {"kind": kind}, clip_rng(kind, "rock.00000", 1))
    c = perturb.perturb(y, SR, {"kind": kind}, clip_rng(kind, "rock.00001", 0))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="is random: pass rng"):
        perturb.perturb(y, SR, {"kind": kind})


def test_lowpass_removes_what_is_above_its_corner():
    y = _white()
    out = perturb.lowpass(y, SR, cutoff_hz=4000.0, order=4)
    # 4th-order Butterworth: -3 dB at 4 kHz, -24 dB an octave above
    assert _band_db(out, 8000, 11025) - _band_db(y, 8000, 11025) < -23
    assert abs(_band_db(out, 3950, 4050) - _band_db(y, 3950, 4050) + 3.0) < 0.6
    assert abs(_band_db(out, 100, 2000) - _band_db(y, 100, 2000)) < 0.2


def test_highpass_removes_what_is_below_its_corner():
    y = _white()
    out = perturb.highpass(y, SR, cutoff_hz=300.0, order=4)
    assert _band_db(out, 20, 120) - _band_db(y, 20, 120) < -30
    assert abs(_band_db(out, 1000, 10000) - _band_db(y, 1000, 10000)) < 0.1


def test_tilt_is_its_db_per_octave_about_its_pivot():
    y = _white(8.0)
    out = perturb.tilt(y, SR, db_per_octave=-3.0, pivot_hz=1000.0)
    change = {f: _band_db(out, f / 1.1, f * 1.1) - _band_db(y, f / 1.1, f * 1.1)
              for f in (250, 500, 1000, 2000, 4000)}
    for f, expected in ((250, 6.0), (500, 3.0), (1000, 0.0), (2000, -3.0), (4000, -6.0)):
        assert abs(change[f] - expected) < 0.5, (f, change[f])
    # linear phase, delay compensated: the clip is not shifted
    lag = np.argmax(np.correlate(out[4000:12000], y[5000:9000], "valid")) - 1000
    assert lag == 0


@pytest.mark.parametrize("color", ["pink", "white"])
def test_noise_is_at_its_snr_of_the_clips_rms(color):
    y = _music()
    out = perturb.noise(y, SR, snr_db=20.0, color=color, rng=clip_rng("noise", 0))
    added = out.astype(np.float64) - y
    assert abs(20 * np.log10(_rms(y) / _rms(added)) - 20.0) < 0.05
    # pink: power density falling 3 dB per octave, so the same power in every octave;
    # white: the same density, so twice the power in the octave above
    slope = _band_db(added, 2000, 4000) - _band_db(added, 1000, 2000)
    assert abs(slope - (0.0 if color == "pink" else 3.0)) < 0.5


def test_a_room_decays_by_60_db_in_its_rt60_with_its_direct_to_reverberant_ratio():
    response = perturb.room_response(SR, rt60_seconds=0.5, drr_db=0.0, rng=clip_rng("room"))
    assert response[0] == 1.0
    tail = response[1:]
    assert abs(10 * np.log10(1.0 / np.sum(tail**2))) < 1e-6
    # Schroeder backward integration: the decay between -5 and -25 dB, extrapolated to 60 dB
    energy = np.cumsum(tail[::-1] ** 2)[::-1]
    decay = 10 * np.log10(energy / energy[0])
    t5, t25 = (np.argmax(decay < level) / SR for level in (-5.0, -25.0))
    assert abs(3 * (t25 - t5) - 0.5) < 0.05


def test_reverb_keeps_the_clips_rms():
    y = _music()
    out = perturb.reverb(y, SR, rt60_seconds=0.5, drr_db=0.0, rng=clip_rng("reverb"))
    assert abs(_rms(out) / _rms(y) - 1.0) < 1e-3
    assert np.corrcoef(out, y)[0, 1] < 0.95


def test_the_8_khz_round_trip_removes_everything_above_4_khz():
    y = _white()
    out = perturb.resample(y, SR, rate=8000)
    assert _band_db(out, 4200, 11025) - _band_db(y, 4200, 11025) < -60
    assert abs(_band_db(out, 100, 3500) - _band_db(y, 100, 3500)) < 0.1


def test_pitch_moves_a_tone_by_its_semitones_and_keeps_the_duration():
    y = _tone(440.0)
    out = perturb.pitch(y, SR, semitones=1.0)
    assert out.shape == y.shape
    spectrum = np.abs(np.fft.rfft(out[SR // 4: -SR // 4]))
    peak = np.fft.rfftfreq(out[SR // 4: -SR // 4].size, 1 / SR)[np.argmax(spectrum)]
    assert abs(peak - 440.0 * 2 ** (1 / 12)) < 2.0


def test_gain_is_exact():
    y = _music()
    out = perturb.gain(y, SR, db=-12.0)
    np.testing.assert_array_equal(out, (y.astype(np.float64) * 10 ** (-12 / 20)).astype(np.float32))


def test_mp3_round_trip_is_aligned_and_lossy():
    y = _music()
    out = perturb.mp3(y, SR, compression_level=0.85, bitrate_mode="average")
    lag = np.argmax(np.correlate(out[4000:16000], y[6000:14000], "valid")) - 2000
    assert lag == 0  # libsndfile's gapless modes: sample for sample
    error = 20 * np.log10(_rms(out - y) / _rms(y))
    assert -40 < error < -3
    assert 15 < perturb.mp3_kbps(y, SR, 0.85, "average") < 50
    with pytest.raises(ValueError, match="constant-bitrate MP3 decodes shifted"):
        perturb.mp3(y, SR, bitrate_mode="constant")
    with pytest.raises(ValueError, match="libsndfile refuses 1.0"):
        perturb.mp3(y, SR, compression_level=1.0)


def test_a_result_beyond_full_scale_is_brought_back_below_it():
    y = _tone(100.0, level=0.9)
    out = perturb.perturb(y, SR, {"kind": "tilt", "db_per_octave": -6.0})  # +20 dB at 100 Hz
    assert np.max(np.abs(out)) == pytest.approx(perturb.HEADROOM, abs=1e-6)


def test_parameters_fill_defaults_and_refuse_unknown_ones():
    assert perturb.parameters({"kind": "noise", "snr_db": 10.0}) == {"snr_db": 10.0, "color": "pink"}
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['snr'\]"):
        perturb.parameters({"kind": "noise", "snr": 10.0})
    with pytest.raises(ValueError, match="known kinds are"):
        perturb.parameters({"kind": "chorus"})
    assert "20 dB SNR" in perturb.describe({"kind": "noise"})


def test_the_schema_defaults_are_the_families_defaults():
    from genreflow.config import validate_config

    blocks = validate_config({})["robustness"]["perturbations"]
    assert set(blocks) == set(FAMILIES)
    for name, block in blocks.items():
        assert {k: v for k, v in block.items() if k != "kind"} == DEFAULTS[block["kind"]], name


def test_image_features_barely_see_a_gain_change():
    """Every default image is gain-invariant up to float rounding of the dB scale: a -12 dB
    copy changes at most one grey level on a handful of pixels (so an image model's
    predictions stay the same; tests/test_robustness_workflow.py checks them)."""
    from genreflow.config import validate_config
    from genreflow.features import FeatureComputer, clip_images
    from genreflow.names import FEATURES

    blocks = {name: validate_config({})["features"][name] for name in FEATURES}
    computer = FeatureComputer(SR, blocks)
    changed = total = 0
    for index in range(3):
        y = _music(6.0, index)
        clean = clip_images(computer, y, 75)
        quiet = clip_images(computer, perturb.gain(y, SR, db=-12.0), 75)
        for name in FEATURES:
            difference = np.abs(clean[name].astype(int) - quiet[name].astype(int))
            assert difference.max() <= 1, name
            changed += int((difference > 0).sum())
            total += difference.size
    assert changed / total < 0.001
