"""Tests for the synthetic demo corpus (genreflow.synthetic)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
import soundfile as sf

from genreflow.names import GTZAN_GENRES
from genreflow.synthetic import clip_relpath, render_clip, write_corpus

SR = 22050


def _digest(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest()


def test_same_arguments_give_identical_samples():
    first = render_clip("jazz", 3, 2.0, seed=7)
    second = render_clip("jazz", 3, 2.0, seed=7)
    np.testing.assert_array_equal(first, second)


def test_index_seed_and_genre_change_the_clip():
    base = render_clip("rock", 0, 2.0)
    for other in (render_clip("rock", 1, 2.0), render_clip("rock", 0, 2.0, seed=1), render_clip("metal", 0, 2.0)):
        assert other.shape == base.shape
        assert not np.array_equal(base, other)


def test_identical_in_a_fresh_process():
    # hash() is salted per process and the wavetable cache is shared by all clips in a process;
    # neither may leak into the samples.
    code = (
        "import hashlib, numpy as np; from genreflow.synthetic import render_clip; "
        "a = render_clip('reggae', 5, 1.5, sample_rate=16000, seed=3); "
        "print(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )
    assert out.stdout.strip() == _digest(render_clip("reggae", 5, 1.5, sample_rate=16000, seed=3))


@pytest.mark.parametrize("genre", GTZAN_GENRES)
def test_shape_dtype_range_and_level(genre):
    seconds, sample_rate = 1.37, 16000
    audio = render_clip(genre, 2, seconds, sample_rate=sample_rate)
    assert audio.dtype == np.float32
    assert audio.shape == (round(seconds * sample_rate),)
    assert np.isfinite(audio).all()
    peak = float(np.abs(audio).max())
    # Peak-normalised to between -4 and -1 dBFS: never clipping, never near-silent.
    assert 10 ** (-4.1 / 20) <= peak <= 10 ** (-0.9 / 20)


@pytest.mark.parametrize("genre", GTZAN_GENRES)
def test_no_silent_stretches(genre):
    audio = render_clip(genre, 4, 3.0)
    frames = audio[: len(audio) // 2205 * 2205].reshape(-1, 2205)  # 100 ms frames
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    assert rms.min() > 1e-3, f"{genre}: a 100 ms frame is silent"


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        render_clip("polka", 0, 1.0)
    with pytest.raises(ValueError):
        render_clip("blues", 0, 0.0)


def test_clip_relpath_is_gtzan_layout():
    assert clip_relpath("blues", 3) == "genres_original/blues/blues.00003.wav"
    assert clip_relpath("hiphop", 99) == "genres_original/hiphop/hiphop.00099.wav"


def test_write_corpus_layout_and_format(tmp_path):
    messages = []
    paths = write_corpus(tmp_path, clips_per_genre=1, seconds=3.0, seed=0, log=messages.append)

    expected = sorted(tmp_path / clip_relpath(g, 0) for g in GTZAN_GENRES)
    assert paths == expected
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        p.relative_to(tmp_path).as_posix() for p in expected
    ], "temporary files left behind or unexpected files written"
    assert [p.parent.name for p in paths] == sorted(GTZAN_GENRES)
    assert messages and messages[-1].startswith("synthetic corpus: 10/10")

    for path in paths:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
        assert info.frames == 3 * SR
    genre = paths[0].parent.name
    on_disk, _ = sf.read(paths[0], dtype="float32")
    np.testing.assert_allclose(on_disk, render_clip(genre, 0, 3.0), atol=1.0 / 32768 + 1e-7)


# --------------------------------------------------------------------------- separability

CLIPS_PER_GENRE = 6
SECONDS = 5.0


@pytest.fixture(scope="module")
def small_corpus():
    audio, labels = [], []
    for label, genre in enumerate(GTZAN_GENRES):
        for index in range(CLIPS_PER_GENRE):
            audio.append(render_clip(genre, index, SECONDS))
            labels.append(label)
    return audio, np.array(labels)


def _leave_one_out_nearest_centroid(features: np.ndarray, labels: np.ndarray) -> float:
    correct = 0
    for held_out in range(len(labels)):
        train = np.arange(len(labels)) != held_out
        mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-9
        z_train = (features[train] - mean) / std
        centroids = np.stack([z_train[labels[train] == c].mean(axis=0) for c in range(len(GTZAN_GENRES))])
        distances = np.linalg.norm(centroids - (features[held_out] - mean) / std, axis=1)
        correct += int(np.argmin(distances) == labels[held_out])
    return correct / len(labels)


def test_genres_are_learnable_but_not_trivial(small_corpus):
    audio, labels = small_corpus
    features = np.stack([librosa.feature.mfcc(y=a, sr=SR, n_mfcc=20).mean(axis=1) for a in audio])

    accuracy = _leave_one_out_nearest_centroid(features, labels)
    # The same features with shuffled labels show where chance sits for this tiny corpus,
    # so the lower bound below is known to separate signal from luck.
    shuffled = np.random.default_rng(0).permutation(labels)
    chance = _leave_one_out_nearest_centroid(features, shuffled)

    assert chance < 0.25 < accuracy, f"accuracy {accuracy:.2f}, shuffled-label accuracy {chance:.2f}"
    # Well below perfect: the corpus must be a test bed, not a lookup table.
    assert accuracy < 0.9, f"accuracy {accuracy:.2f}: genres are too easy to tell apart"


def test_metal_is_busier_than_classical(small_corpus):
    audio, labels = small_corpus

    def onsets_per_second(genre):
        clips = [a for a, c in zip(audio, labels) if GTZAN_GENRES[c] == genre]
        return np.mean([len(librosa.onset.onset_detect(y=a, sr=SR)) / SECONDS for a in clips])

    assert onsets_per_second("metal") > 1.4 * onsets_per_second("classical")


def test_classical_has_no_drums(small_corpus):
    audio, labels = small_corpus

    def percussive_fraction(genre):
        clips = [a for a, c in zip(audio, labels) if GTZAN_GENRES[c] == genre][:3]
        fractions = []
        for clip in clips:
            stft = librosa.stft(clip[: 3 * SR])  # 3 s is plenty and keeps HPSS cheap
            _, percussive = librosa.decompose.hpss(stft)
            fractions.append(np.sum(np.abs(percussive) ** 2) / np.sum(np.abs(stft) ** 2))
        return float(np.mean(fractions))

    classical = percussive_fraction("classical")
    for genre in ("disco", "metal", "rock"):
        assert percussive_fraction(genre) > 2.0 * classical, genre


# ------------------------------------------------------------------ the second rendering
def test_rendering_zero_is_the_corpus():
    np.testing.assert_array_equal(render_clip("jazz", 3, 2.0, seed=7, rendering=0),
                                  render_clip("jazz", 3, 2.0, seed=7))
    with pytest.raises(ValueError, match="rendering 2"):
        render_clip("jazz", 3, 2.0, rendering=2)


def test_every_instrument_has_a_second_synthesis():
    from genreflow import synthetic

    first = {name for name in synthetic._TIMBRES if not name.startswith(synthetic._SECOND)}
    assert set(synthetic._SECOND_TIMBRES) == first


def test_the_second_rendering_is_the_same_song_recorded_another_way():
    """Same notes and rhythm: its chromagram follows the first rendering's (and not another
    song's of the genre); other instruments and room: its MFCC timbre is as far from the
    first rendering's as another song's is."""
    def chroma(y):
        return librosa.feature.chroma_stft(y=y, sr=SR, hop_length=2048)

    def timbre(y):
        return librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20).mean(axis=1)[1:]

    same, other, timbre_same, timbre_other = [], [], [], []
    for genre in ("blues", "disco", "jazz", "metal", "pop", "reggae"):
        first = render_clip(genre, 1, 6.0)
        second = render_clip(genre, 1, 6.0, rendering=1)
        another = render_clip(genre, 2, 6.0)
        assert second.shape == first.shape and not np.array_equal(first, second)
        same.append(np.corrcoef(chroma(first).ravel(), chroma(second).ravel())[0, 1])
        other.append(np.corrcoef(chroma(first).ravel(), chroma(another).ravel())[0, 1])
        timbre_same.append(np.linalg.norm(timbre(first) - timbre(second)))
        timbre_other.append(np.linalg.norm(timbre(first) - timbre(another)))
    assert np.mean(same) > 0.65 and min(same) > 0.4
    assert all(s > o + 0.2 for s, o in zip(same, other))
    assert np.mean(other) < 0.3
    assert np.mean(timbre_same) > 0.5 * np.mean(timbre_other)


def test_write_songs_writes_the_second_rendering_of_the_songs_asked_for(tmp_path):
    from genreflow.synthetic import write_songs

    paths = write_songs(tmp_path, [("rock", 4), ("blues", 0)], 1.0, rendering=1,
                        log=lambda message: None)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        clip_relpath("blues", 0), clip_relpath("rock", 4)]
    audio, rate = sf.read(paths[1], dtype="float32")
    assert rate == SR
    expected = render_clip("rock", 4, 1.0, rendering=1)
    np.testing.assert_allclose(audio, expected, atol=1 / 32768)
