"""Audio checks on real faulty files, made here."""

import re

import numpy as np
import pytest
import soundfile

from genreflow.audio import AudioSettings, BadClip, load_clip, load_track, segment_bounds

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
        (lambda p: p.write_text("this is not audio\n" * 100),
         r'^not an audio file: no audio format\'s header \(it is text, starting "this is not audio"\); '
         r"libsndfile: Format not recognised$"),
        (lambda p: p.write_bytes((tone(3.0) * 32767).astype("<i2").tobytes()),
         r"^not an audio file: no audio format's header \(it starts with bytes 00 00 [0-9a-f ]+\); "
         r"libsndfile: Format not recognised$"),
        (lambda p: p.write_bytes(b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n"),
         r'^not an audio file: .*it is text, starting "<!DOCTYPE html>"'),
        (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(2000)), r"^not an audio file: .*\(a JPEG image\)"),
    ],
    ids=["zero-bytes", "text-named-wav", "headerless-raw-pcm", "html-page", "jpeg"],
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
    with pytest.raises(BadClip, match=r"^truncated WAV file: its header gives 132344 bytes, the file "
                                      r"has 30; libsndfile: Error in WAV file. No 'data' chunk marker$"):
        load_clip(bad, SETTINGS)


def test_missing_riff_id_like_gtzan_jazz_00054(tmp_path):
    good = write(tmp_path / "good.wav", tone(3.0), subtype="PCM_16")
    bad = tmp_path / "jazz.00054.wav"
    bad.write_bytes(b"\x00" * 4 + good.read_bytes()[4:])
    with pytest.raises(BadClip, match=r"^damaged WAV header: no 'RIFF' id at its start \(bytes 00 00 "
                                      r"00 00\); libsndfile: Format not recognised$"):
        load_clip(bad, SETTINGS)


MP3_CANNOT_PARSE = ("libsndfile: File does not exist or is not a regular file (possibly a pipe?) "
                    "[libsndfile's words for a file it cannot parse; the file is there]")


def test_corrupt_mp3_files_say_what_is_wrong_not_that_they_do_not_exist(tmp_path):
    """libsndfile answers "File does not exist or is not a regular file" for an .mp3 it
    cannot parse; the reason says first what the file is."""
    whole = write(tmp_path / "whole.mp3", tone(3.0), format="MP3")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])  # a download that stopped half-way
    header_only = tmp_path / "header_only.mp3"
    header_only.write_bytes(data[:200])
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp3"
    text.write_text("not audio\n" * 50)
    expected = {
        cut: r"^truncated MP3 file: its header gives 3.00 s, the data ends at 1.\d\d s; too short: "
             r"1.\d\d s < audio.min_seconds 2 s$",
        header_only: r"^truncated or damaged MP3 file: its data cannot be decoded; "
                     + re.escape(MP3_CANNOT_PARSE) + "$",
        garbage: r"^not an audio file: no audio format's header \(it starts with bytes [0-9a-f ]+\); "
                 + re.escape(MP3_CANNOT_PARSE) + "$",
        text: r'^not an audio file: no audio format\'s header \(it is text, starting "not audio"\); '
              + re.escape(MP3_CANNOT_PARSE) + "$",
    }
    for path, reason in expected.items():
        for load in (load_clip, load_track):  # the corpus's and prediction's reading
            with pytest.raises(BadClip, match=reason):
                load(path, SETTINGS)


def test_cut_flac_and_ogg_files_are_truncated_or_damaged(tmp_path):
    for kind in ("FLAC", "OGG"):
        data = write(tmp_path / f"whole.{kind.lower()}", tone(3.0), format=kind).read_bytes()
        cut = tmp_path / f"cut.{kind.lower()}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(BadClip, match=rf"^truncated or damaged {kind} file: its data cannot be "
                                          r"decoded; libsndfile: \w"):
            load_clip(cut, SETTINGS)


def test_formats_libsndfile_cannot_decode_are_named(tmp_path):
    """Music kept as AAC in an MP4 container (iTunes), renamed .mp3, and a MIDI file: the
    reason names the format and says to convert it. The M4A is only its container's first
    box (no AAC encoder here); the reason depends on nothing else."""
    m4a = tmp_path / "song.mp3"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + bytes(4000))
    midi = tmp_path / "song.wav"
    track = b"\x00\x90\x3c\x40\x60\x80\x3c\x40\x00\xff\x2f\x00"  # one note, end of track
    midi.write_bytes(b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0, 96])
                     + b"MTrk" + len(track).to_bytes(4, "big") + track)
    with pytest.raises(BadClip, match=r"^unsupported format MP4/M4A \(AAC or ALAC\): libsndfile cannot "
                                      r"decode it; convert it to WAV or FLAC \(e.g. with ffmpeg\); "
                                      r"libsndfile: File does not exist"):
        load_clip(m4a, SETTINGS)
    with pytest.raises(BadClip, match=r"^unsupported format MIDI \(notes, not sound\)"):
        load_track(midi, SETTINGS)


def test_every_bad_file_kind_of_the_tests_gets_a_reason_that_names_its_problem(tmp_path):
    """The files tests/conftest.py's make_faulty_files puts in a corpus, read as the corpus
    and prediction read them: no reason starts with the decoder's bare words."""
    from conftest import make_faulty_files

    genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
              "reggae", "rock"]
    for genre in genres:
        (tmp_path / genre).mkdir()
    expected = make_faulty_files(tmp_path, seconds=4.0)
    settings = AudioSettings(sample_rate=SR, seconds=4.0, min_seconds=3.0)
    checked = 0
    for path in sorted(tmp_path.glob("*/*")):
        if path.stem not in expected or path.is_symlink() or path.suffix == ".txt":
            continue  # broken links and other names are the corpus listing's (test_workflow)
        for load in (load_clip, load_track):
            with pytest.raises(BadClip) as reason:
                load(path, settings)
            assert str(reason.value).startswith(expected[path.stem]), (path.name, str(reason.value))
            assert "Error opening" not in str(reason.value)
        checked += 1
    assert checked == 9


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
    with pytest.raises(BadClip, match=r"^truncated WAV file: its header gives 264644 bytes, the file "
                                      r"has 66194; too short: 1.50 s"):
        load_clip(tmp_path / "short.wav", SETTINGS)


def test_samples_beyond_full_scale_are_kept_and_their_peak_reported(tmp_path):
    loud = write(tmp_path / "loud.wav", 8 * tone(3.0), subtype="FLOAT")
    y, info = load_clip(loud, SETTINGS)
    assert info.peak_dbfs == pytest.approx(20 * np.log10(8 * 0.4), abs=0.01)
    assert np.abs(y).max() == pytest.approx(3.2, abs=0.01)  # kept as is
    _, normal = load_clip(write(tmp_path / "n.wav", tone(3.0)), SETTINGS)
    assert normal.peak_dbfs < 0
