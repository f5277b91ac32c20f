"""Audio checks on real faulty files, made here."""

import numpy as np
import pytest
import soundfile

from genreflow.audio import AudioSettings, BadClip, load_clip, segment_bounds

SR = 22050
SETTINGS = AudioSettings(sample_rate=SR, seconds=4.0, min_seconds=2.0)


def tone(seconds, sr=SR, channels=1, freq=330.0):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.4 * np.sin(2 * np.pi * freq * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def write(path, y, sr=SR, **kw):
    soundfile.write(path, y, sr, **kw)
    return path


def test_good_clip_is_padded_to_length(tmp_path):
    y, info = load_clip(write(tmp_path / "a.wav", tone(3.0)), SETTINGS)
    assert y.shape == (4 * SR,) and y.dtype == np.float32
    assert np.all(y[3 * SR :] == 0) and np.abs(y[: 3 * SR]).max() > 0.3
    assert info.source_seconds == 3.0 and info.source_channels == 1


def test_long_clip_keeps_its_first_seconds(tmp_path):
    y, _ = load_clip(write(tmp_path / "a.wav", tone(6.0)), SETTINGS)
    np.testing.assert_allclose(y, tone(6.0)[: 4 * SR], atol=1e-4)


def test_stereo_44k_is_accepted_mixed_and_resampled(tmp_path):
    stereo = tone(5.0, sr=44100, channels=2)
    stereo[:, 1] *= 0.5
    y, info = load_clip(write(tmp_path / "s.wav", stereo, sr=44100), SETTINGS)
    assert info.source_sample_rate == 44100 and info.source_channels == 2
    assert y.shape == (4 * SR,)
    # mono mix of (0.4, 0.2) amplitude channels: 0.3 peak, pitch kept at 330 Hz
    assert abs(np.abs(y).max() - 0.3) < 0.01
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.fft.rfftfreq(y.size, 1 / SR)[spectrum.argmax()] - 330.0) < 1.0


def test_au_file_is_accepted(tmp_path):
    path = write(tmp_path / "jazz.00001.au", tone(3.0), format="AU", subtype="PCM_16")
    y, info = load_clip(path, SETTINGS)
    assert info.source_seconds == 3.0 and np.abs(y).max() > 0.3


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not audio\n" * 100), "not readable as audio"),
        (lambda p: p.write_bytes((tone(3.0) * 32767).astype("<i2").tobytes()), "not readable as audio"),
    ],
    ids=["zero-bytes", "text-named-wav", "headerless-raw-pcm"],
)
def test_unusable_files_are_rejected_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(BadClip, match=reason):
        load_clip(path, SETTINGS)


def test_truncated_header_is_rejected(tmp_path):
    good = write(tmp_path / "good.wav", tone(3.0), subtype="PCM_16")
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:30])  # cut inside the 44-byte header
    with pytest.raises(BadClip, match="not readable as audio"):
        load_clip(bad, SETTINGS)


def test_missing_riff_id_like_gtzan_jazz_00054(tmp_path):
    good = write(tmp_path / "good.wav", tone(3.0), subtype="PCM_16")
    bad = tmp_path / "jazz.00054.wav"
    bad.write_bytes(b"\x00" * 4 + good.read_bytes()[4:])
    with pytest.raises(BadClip, match="not readable as audio"):
        load_clip(bad, SETTINGS)


def test_silent_clip_is_rejected(tmp_path):
    with pytest.raises(BadClip, match="silent: peak -inf dBFS"):
        load_clip(write(tmp_path / "s.wav", np.zeros(3 * SR)), SETTINGS)


def test_too_short_clip_is_rejected(tmp_path):
    with pytest.raises(BadClip, match=r"too short: 1.00 s < audio.min_seconds 2 s"):
        load_clip(write(tmp_path / "s.wav", tone(1.0)), SETTINGS)


def test_segments_drop_the_remainder():
    assert segment_bounds(10 * SR, SR, None) == [(0, 10 * SR)]
    bounds = segment_bounds(10 * SR, SR, 3.0)
    assert bounds == [(0, 3 * SR), (3 * SR, 6 * SR), (6 * SR, 9 * SR)]


def test_a_long_file_is_read_only_as_far_as_the_clip_needs(tmp_path, monkeypatch):
    """Memory follows the clip, not the file: of a 5-minute 44.1 kHz stereo file only the
    first audio.seconds (plus the resampler's few milliseconds) are decoded, and the clip
    is the same as from decoding the whole file."""
    import soxr

    from genreflow import audio

    rate, minutes = 44100, 5
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, 2, subtype="PCM_16") as handle:
        for _ in range(minutes * 6):
            handle.write(rng.normal(0, 0.1, (rate * 10, 2)))
    frames_read = []
    real_read = soundfile.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        data = real_read(self, frames, *args, **kwargs)
        frames_read.append(len(data))
        return data

    monkeypatch.setattr(soundfile.SoundFile, "read", counting_read)
    y, info = load_clip(path, SETTINGS)
    expected = int(np.ceil((SETTINGS.seconds + audio.RESAMPLER_MARGIN_SECONDS) * rate))
    assert frames_read == [expected]
    assert info.source_seconds == minutes * 60.0 and info.source_channels == 2
    monkeypatch.undo()
    whole, _ = soundfile.read(path, dtype="float32", always_2d=True)
    reference = soxr.resample(whole.mean(axis=1), rate, SR, quality="HQ")[: SETTINGS.n_samples]
    np.testing.assert_array_equal(y, reference)


def test_a_header_promising_more_frames_than_the_file_holds(tmp_path):
    path = write(tmp_path / "cut.wav", tone(6.0), subtype="PCM_16")
    data = path.read_bytes()
    (tmp_path / "short.wav").write_bytes(data[: 44 + 2 * int(1.5 * SR)])  # 1.5 s of samples
    with pytest.raises(BadClip, match="too short: 1.50 s"):
        load_clip(tmp_path / "short.wav", SETTINGS)


def test_samples_beyond_full_scale_are_kept_and_their_peak_reported(tmp_path):
    loud = write(tmp_path / "loud.wav", 8 * tone(3.0), subtype="FLOAT")
    y, info = load_clip(loud, SETTINGS)
    assert info.peak_dbfs == pytest.approx(20 * np.log10(8 * 0.4), abs=0.01)
    assert np.abs(y).max() == pytest.approx(3.2, abs=0.01)  # kept as is
    _, normal = load_clip(write(tmp_path / "n.wav", tone(3.0)), SETTINGS)
    assert normal.peak_dbfs < 0
