"""The numpy transforms must match librosa's definitions, and images must follow the
documented scaling."""

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from genreflow import features as F

SR = 22050


@pytest.fixture(scope="module")
def tone_mix():
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * 2.0)) / SR
    y = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t)
    return (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_power_stft_matches_librosa(tone_mix):
    ours = F.power_stft(tone_mix, 1024, 256)
    theirs = np.abs(librosa.stft(tone_mix, n_fft=1024, hop_length=256)) ** 2
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * theirs.max())


def test_mel_filterbank_matches_librosa():
    ours = F.mel_filterbank(SR, 2048, 64, 30.0, 8000.0)
    theirs = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=64, fmin=30.0, fmax=8000.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


def test_chroma_filterbank_matches_librosa():
    ours = F.chroma_filterbank(SR, 2048, 12)
    theirs = librosa.filters.chroma(sr=SR, n_fft=2048, n_chroma=12, tuning=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


def test_mfcc_matches_librosa(tone_mix):
    block = {"n_fft": 2048, "hop_length": 512, "n_mels": 40, "n_mfcc": 13, "fmin": 0.0, "fmax": None}
    ours = F.FeatureComputer(SR, {"mfcc": block}).compute(tone_mix)["mfcc"]
    theirs = librosa.feature.mfcc(y=tone_mix, sr=SR, n_fft=2048, hop_length=512, n_mels=40, n_mfcc=13)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=0.05)


def test_chroma_matches_librosa_and_finds_a(tone_mix):
    block = {"n_fft": 2048, "hop_length": 512, "n_chroma": 12}
    ours = F.FeatureComputer(SR, {"chroma": block}).compute(tone_mix)["chroma"]
    theirs = librosa.feature.chroma_stft(y=tone_mix, sr=SR, n_fft=2048, hop_length=512, tuning=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    # 440 Hz is A: pitch class 9 with C at row 0
    assert np.bincount(ours.argmax(axis=0)).argmax() == 9


def test_features_share_one_stft_per_frame_setting(tone_mix, monkeypatch):
    calls = []
    real = F.power_stft
    monkeypatch.setattr(F, "power_stft", lambda *a: calls.append(a[1:]) or real(*a))
    blocks = {
        "mel": {"n_fft": 2048, "hop_length": 512, "n_mels": 32, "fmin": 0.0, "fmax": None, "top_db": 80.0},
        "stft": {"n_fft": 2048, "hop_length": 512, "scaling": "cuberoot"},
        "spectrogram": {"n_fft": 2048, "hop_length": 512, "top_db": 80.0},
        "chroma": {"n_fft": 1024, "hop_length": 512, "n_chroma": 12},
    }
    F.FeatureComputer(SR, blocks).compute(tone_mix)
    assert sorted(calls) == [(1024, 512), (2048, 512)]


def test_db_scaling_maps_top_db_range_to_unit():
    db = np.array([[0.0, -40.0, -80.0, -120.0]])
    unit = F.scale_to_unit("spectrogram", db, {"top_db": 80.0})
    np.testing.assert_allclose(unit, [[1.0, 0.5, 0.0, 0.0]])


def test_cuberoot_scaling():
    magnitude = np.array([[8.0, 1.0, 0.0]])
    unit = F.scale_to_unit("stft", magnitude, {"scaling": "cuberoot"})
    np.testing.assert_allclose(unit, [[1.0, 0.5, 0.0]])


def test_mfcc_minmax_and_rowwise():
    array = np.array([[0.0, 10.0], [5.0, 5.0]])
    np.testing.assert_allclose(F.scale_to_unit("mfcc", array, {"scaling": "minmax"}), [[0, 1], [0.5, 0.5]])
    rowwise = F.scale_to_unit("mfcc", array, {"scaling": "rowwise"})
    np.testing.assert_allclose(rowwise[0], [1 / 3, 2 / 3])


def test_image_puts_low_rows_at_the_bottom_and_has_the_size():
    unit = np.zeros((40, 100))
    unit[:5] = 1.0  # low frequencies loud
    pixels = F.to_image(unit, 32)
    assert pixels.shape == (32, 32) and pixels.dtype == np.uint8
    assert pixels[-1].mean() == 255 and pixels[0].mean() == 0


@pytest.mark.parametrize("name", F.FEATURES)
def test_each_feature_image(name, tone_mix):
    defaults = {
        "mel": {"n_fft": 2048, "hop_length": 512, "n_mels": 128, "fmin": 0.0, "fmax": None, "top_db": 80.0},
        "mfcc": {"n_fft": 2048, "hop_length": 512, "n_mels": 128, "n_mfcc": 20, "fmin": 0.0, "fmax": None, "scaling": "minmax"},
        "stft": {"n_fft": 2048, "hop_length": 512, "scaling": "cuberoot", "top_db": 80.0},
        "spectrogram": {"n_fft": 2048, "hop_length": 512, "top_db": 80.0},
        "chroma": {"n_fft": 2048, "hop_length": 512, "n_chroma": 12},
    }
    computer = F.FeatureComputer(SR, {name: defaults[name]})
    raw = computer.compute(tone_mix)[name]
    rows = {"mel": 128, "mfcc": 20, "stft": 1025, "spectrogram": 1025, "chroma": 12}[name]
    assert raw.shape == (rows, 1 + tone_mix.size // 512)
    image = F.clip_images(computer, tone_mix, 48)[name]
    assert image.shape == (48, 48) and image.dtype == np.uint8
    assert int(image.max()) - int(image.min()) > 50  # uses the range, not a flat grey


def _default_blocks():
    from genreflow.config import validate_config

    features = validate_config({})["features"]
    return {name: features[name] for name in F.FEATURES}


def test_every_default_image_is_gain_invariant(tone_mix):
    """GTZAN's loudness depends on the recording more than on the genre: the same clip 20 dB
    quieter must give the same five images (within one grey level, from rounding)."""
    computer = F.FeatureComputer(SR, _default_blocks())
    loud = F.clip_images(computer, tone_mix, 64)
    quiet = F.clip_images(computer, tone_mix * 10 ** (-20 / 20), 64)
    for name in F.FEATURES:
        difference = np.abs(loud[name].astype(int) - quiet[name].astype(int))
        assert difference.max() <= 1, (name, difference.max())


def test_minmax_mfcc_keeps_the_old_loudness_dependent_scaling(tone_mix):
    block = {**_default_blocks()["mfcc"], "scaling": "minmax"}
    computer = F.FeatureComputer(SR, {"mfcc": block})
    loud = F.clip_images(computer, tone_mix, 64)["mfcc"]
    quiet = F.clip_images(computer, tone_mix * 0.1, 64)["mfcc"]
    assert np.abs(loud.astype(int) - quiet.astype(int)).max() > 10
    # relative and minmax differ only in c0: the other coefficients are the same
    relative = F.FeatureComputer(SR, {"mfcc": {**block, "scaling": "relative"}}).compute(tone_mix)["mfcc"]
    absolute = computer.compute(tone_mix)["mfcc"]
    np.testing.assert_allclose(relative[1:], absolute[1:], rtol=1e-4, atol=1e-3)
