"""Classifying your own music without Snakemake: windows of a track, the files of a folder,
and bundles (made here from a small model) that turn audio into the model's input exactly
as the training images were made, and refuse an edited preprocessing.json."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile

from genreflow.audio import AudioSettings, BadClip, load_clip, load_track, track_windows
from genreflow.predict import load_bundle
from genreflow.predict.bundle import BundleError
from genreflow.predict.export import export_bundle
from genreflow.predict.workflow import list_music
from odd_audio import mostly_silence, white_noise

SR = 22050
GENRES = ["ambient", "drone", "zydeco"]
AUDIO = {"sample_rate": SR, "seconds": 4.0, "min_seconds": 3.0, "silence_dbfs": -60.0}
MEL = {"n_fft": 1024, "hop_length": 256, "n_mels": 64, "fmin": 0.0, "fmax": None, "top_db": 80.0}


def music(seconds, seed=0, rate=SR, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * (220 + 110 * seed) * t) + 0.05 * rng.normal(size=t.size)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def test_windows_of_a_track():
    assert track_windows(70 * SR, SR, 30.0, 25.0) == [(0, 30 * SR), (30 * SR, 60 * SR)]
    assert track_windows(70 * SR, SR, 3.0, 5.0)[-1] == (66 * SR, 69 * SR)  # 23 segments
    assert len(track_windows(70 * SR, SR, 3.0, 5.0)) == 23
    assert track_windows(27 * SR, SR, 30.0, 25.0) == [(0, 30 * SR)]  # one, zero-padded
    assert track_windows(20 * SR, SR, 30.0, 25.0) == []


def test_a_whole_track_is_the_clip_the_corpus_stage_would_cut_and_more(tmp_path):
    path = tmp_path / "t.wav"
    soundfile.write(path, music(9.0, rate=44100, channels=2), 44100)
    settings = AudioSettings.from_config(AUDIO)
    track, info = load_track(path, settings, block_seconds=2.0)  # several blocks
    clip, _ = load_clip(path, settings)
    assert track.size == 9 * SR and info.source_seconds == 9.0 and info.source_channels == 2
    np.testing.assert_array_equal(track[: clip.size], clip)


def test_list_music_walks_the_folder_and_says_what_it_leaves_out(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.wav", "a/b/two.FLAC", "three.mp3"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "cover.jpg").write_bytes(b"x")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    audio, others = list_music(tmp_path)
    assert [os.path.relpath(p, tmp_path) for p in audio] == ["a/b/two.FLAC", "a/one.wav", "three.mp3"]
    reasons = {os.path.basename(row["file"]): row["reason"] for row in others}
    assert reasons["cover.jpg"].startswith("not an audio file name")
    assert reasons["gone.wav"].startswith("broken symbolic link")


TEMPERATURE = 1.7


def mel_inputs(clips):
    """The baseline CNN's input for each 4 s window of `clips` (as the bundle makes it)."""
    from genreflow.features import FeatureComputer, clip_images

    computer = FeatureComputer(SR, {"mel": MEL})
    windows = [clip[start:start + 4 * SR] for clip in clips
               for start in range(0, clip.size - 4 * SR + 1, 4 * SR)]
    return np.stack([clip_images(computer, w.astype(np.float32), 32)["mel"] for w in windows])[..., None] / 255.0


def like_training(seconds, seed):
    """A clip of the kind the fixture's statistics are fitted on: one of three pitches."""
    return music(seconds, seed=seed % 3) + 0.02 * np.random.default_rng(seed).normal(size=int(seconds * SR))


def write_confidence(model, folder):
    """What export takes from the final model besides model.keras: a calibration.json
    (temperature TEMPERATURE for seed 0) and the unfamiliar score's statistics, fitted on
    the model's representations of clips `like_training` (training: 12 clips, one label
    per pitch; validation: 12 others, rate 10%)."""
    from genreflow.io import write_json
    from genreflow.models.unfamiliar import (
        Representations,
        describe,
        fit_statistics,
        representation_name,
        with_threshold,
    )

    represent = Representations(model)
    _, features = represent(mel_inputs([like_training(8.0, s) for s in range(12)]))
    stats = fit_statistics(features, np.repeat(np.arange(12) % 3, 2))
    valid = [stats.window_scores(represent(mel_inputs([like_training(4.0, s)]))[1]).mean()
             for s in range(12, 24)]
    stats = with_threshold(stats, valid, 0.1)
    stats.save(folder / "unfamiliarity.npz")
    write_json(folder / "unfamiliarity.json", {
        **describe(stats, representation_name(model)), "seed": 0,
        "valid": {"flagged_share": 0.083}, "test": {"flagged_share": 0.0}})
    write_json(folder / "calibration.json", {
        "method": "temperature scaling", "bins": 10,
        "per_seed": [{"seed": 0, "temperature": TEMPERATURE, "valid": {"n_tracks": 12},
                      "test": {"ece_before": 0.3, "ece_after": 0.1}}]})


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A bundle of a small (untrained) baseline CNN on 32 px mel images, as export writes it."""
    from genreflow.io import write_json
    from genreflow.models.assemble import save_model_atomic
    from genreflow.models.baseline import build_baseline_cnn

    from genreflow.models.train import seed_everything

    folder = tmp_path_factory.mktemp("bundle_source")
    seed_everything(0)  # the same (untrained) network in every run
    model = build_baseline_cnn({"conv_layers": 1, "kernels": 4, "dense_layers": 1, "units": 8},
                               32, len(GENRES))
    save_model_atomic(model, folder / "seed_0.keras")
    write_json(folder / "seed_0.json", {"seed": 0, "valid": {"tracks": {"macro_f1": 0.5, "loss": 1.0}},
                                        "test": {"tracks": {"macro_f1": 0.4}}})
    write_confidence(model, folder)
    out = tmp_path_factory.mktemp("bundle")
    settings = {
        "genres": GENRES, "audio": AUDIO, "window_seconds": 4.0, "feature": "mel",
        "feature_block": MEL, "image_size": 32, "backbone": "baseline_cnn", "input": "image",
        "scaling": "baseline", "musicnn": None, "about": {"weights": "from scratch"},
        "caveats": ["SYNTHETIC DEMO CORPUS: test"],
        "model": {"backbone": "baseline_cnn", "feature": "mel", "round": 0, "label": "Baseline CNN + mel"},
    }
    export_bundle([str(folder / "seed_0.json")], [str(folder / "seed_0.keras")],
                  str(folder / "calibration.json"), str(folder / "unfamiliarity.npz"),
                  str(folder / "unfamiliarity.json"), settings,
                  str(out / "model.keras"), str(out / "unfamiliarity.npz"),
                  str(out / "preprocessing.json"), str(out / "README.md"),
                  log=lambda message: None)
    return out


def test_a_bundle_classifies_files_of_any_format_and_length(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    # 16-bit samples: the lossless formats then hold exactly the same ones
    y = np.round(music(10.0, seed=1) * 32767).astype(np.int16)
    paths = {}
    for name, kwargs in (("song.wav", {}), ("song.flac", {}), ("song.ogg", {}),
                         ("song.mp3", {"format": "MP3"})):
        paths[name] = tmp_path / name
        soundfile.write(paths[name], y, SR, **kwargs)
    results = {name: bundle.predict_file(path) for name, path in paths.items()}
    for result in results.values():
        assert set(result["probabilities"]) == set(GENRES)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["windows"] == 2  # 10 s in 4 s windows
    # lossless formats decode to the same samples, so to the same probabilities
    assert results["song.flac"]["probabilities"] == pytest.approx(results["song.wav"]["probabilities"], abs=1e-6)
    long = tmp_path / "long.wav"
    soundfile.write(long, music(70.0, seed=2), SR)
    assert bundle.predict_file(long)["windows"] == 17  # 70 s in 4 s windows
    assert "Baseline CNN + mel" in (bundle_dir / "README.md").read_text()


def test_unusable_files_are_rejected_with_reasons_and_the_rest_go_on(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.mp3").write_text("not audio at all\n" * 40)
    soundfile.write(tmp_path / "silence.wav", np.zeros(6 * SR), SR)
    soundfile.write(tmp_path / "short.wav", music(2.0), SR)
    soundfile.write(tmp_path / "good.wav", music(6.0), SR)
    paths = [str(tmp_path / name) for name in ("empty.wav", "notes.mp3", "silence.wav", "short.wav", "good.wav")]
    predictions, rejected = bundle.predict_files(paths, log=lambda message: None)
    assert list(predictions["file"]) == [paths[-1]]
    reasons = dict(zip(rejected["file"], rejected["reason"]))
    assert reasons[paths[0]].startswith("empty file")
    assert reasons[paths[1]].startswith("not an audio file: no audio format's header (it is text")
    assert reasons[paths[2]].startswith("silent")
    assert reasons[paths[3]].startswith("too short")
    with pytest.raises(BadClip, match="silent"):
        bundle.predict_file(paths[2])


def test_the_bundle_makes_the_input_the_training_images_were(bundle_dir, tmp_path):
    """What the model saw in training: the feature stage's PNG, read by genreflow.models.images's
    pipeline. The bundle's in-memory input for the same window must be identical."""
    from genreflow.features import FeatureComputer, clip_images, png_bytes
    from genreflow.models.backbones import backbone_spec
    from genreflow.models.baseline import baseline_dataset
    from genreflow.models.images import image_dataset

    y = music(4.0, seed=3).astype(np.float32)
    image = clip_images(FeatureComputer(SR, {"mel": MEL}), y, 32)["mel"]
    png = tmp_path / "x.png"
    png.write_bytes(png_bytes(image))
    bundle = load_bundle(bundle_dir)
    ours = bundle.image_inputs(y[None])
    theirs = next(iter(baseline_dataset([png], None, 32, 1, False, 0)))
    np.testing.assert_array_equal(ours, np.asarray(theirs))
    # the same for a backbone's input (VGG16's preprocessing of the gray image as RGB)
    bundle.preprocessing = {**bundle.preprocessing, "scaling": "backbone", "backbone": "vgg16"}
    theirs = next(iter(image_dataset([png], None, 32, 1, False, 0, backbone_spec("vgg16").preprocess_input)))
    np.testing.assert_array_equal(bundle.image_inputs(y[None]), np.asarray(theirs))


def test_an_edited_preprocessing_json_is_refused(bundle_dir, tmp_path):
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(bundle_dir, edited)
    preprocessing = json.loads((edited / "preprocessing.json").read_text())
    preprocessing["feature"] = "mfcc"
    (edited / "preprocessing.json").write_text(json.dumps(preprocessing))
    with pytest.raises(BundleError, match="edited after export .*feature 'mfcc'"):
        load_bundle(edited)
    (edited / "model.keras").unlink()
    with pytest.raises(BundleError, match="model.keras is missing"):
        load_bundle(edited)


def test_predictions_are_calibrated_with_the_top_three_genres_and_the_unfamiliar_flag(bundle_dir, tmp_path):
    """Each file: the mean of its windows' probabilities through the bundle's temperature,
    the three likeliest genres in order, and white noise and a clip that is mostly silence
    flagged, far above a song like the training clips (which, like 10% of those, may sit
    near the threshold)."""
    from genreflow.evaluation.calibration import temperature_scaled
    from genreflow.models.train import predict_proba
    from genreflow.predict.bundle import PREDICTION_COLUMNS

    bundle = load_bundle(bundle_dir)
    assert bundle.temperature == TEMPERATURE and bundle.preprocessing["format"] == 2
    song = like_training(8.0, 40)
    paths = {"song": tmp_path / "song.wav", "noise": tmp_path / "noise.wav",
             "silence": tmp_path / "mostly_silence.wav"}
    soundfile.write(paths["song"], song, SR, subtype="FLOAT")  # the samples exactly
    song = soundfile.read(paths["song"], dtype="float32")[0]
    soundfile.write(paths["noise"], white_noise(8.0, 0), SR)
    soundfile.write(paths["silence"], mostly_silence(song, 0.5, 0), SR)
    predictions, _ = bundle.predict_files([str(p) for p in paths.values()], log=lambda m: None)
    assert list(predictions.columns) == [*PREDICTION_COLUMNS, *(f"p_{g}" for g in GENRES)]
    rows = predictions.set_index("file")
    raw = predict_proba(bundle.model, mel_inputs([song])).mean(axis=0)
    expected = temperature_scaled(raw, TEMPERATURE)
    song_row = rows.loc[str(paths["song"])]
    np.testing.assert_allclose([song_row[f"p_{g}"] for g in GENRES], expected, atol=1e-6)
    order = np.argsort(-expected)
    assert [song_row["genre"], song_row["second_genre"], song_row["third_genre"]] == \
        [GENRES[i] for i in order]
    assert song_row["probability"] > song_row["second_probability"] > song_row["third_probability"]
    assert song_row["probability"] == pytest.approx(expected[order[0]], abs=1e-6)
    assert song_row["unfamiliarity"] < 1.5
    for odd in ("noise", "silence"):
        assert rows.loc[str(paths[odd]), "unfamiliar"], rows[["unfamiliar", "unfamiliarity"]]
        assert rows.loc[str(paths[odd]), "unfamiliarity"] > 3 * song_row["unfamiliarity"]
    result = bundle.predict_file(paths["noise"])
    assert result["unfamiliar"] is True and result["top"][0][0] == result["genre"]
    assert len(result["top"]) == 3 and result["unfamiliarity"] > 1.0
    readme = (bundle_dir / "README.md").read_text()
    assert "T = 1.700" in readme and "does not say that the genre is wrong" in readme


def test_a_bundle_exported_before_calibration_loads_with_temperature_one_and_no_flag(bundle_dir, tmp_path):
    """Format 1 (no temperature, no unfamiliar score): it still predicts, with the model's
    own probabilities, empty flag columns, and a warning that says so."""
    import shutil

    from genreflow.models.train import predict_proba
    from genreflow.predict.bundle import fingerprint

    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(bundle_dir / "model.keras", old / "model.keras")
    preprocessing = json.loads((bundle_dir / "preprocessing.json").read_text())
    for key in ("calibration", "unfamiliarity", "fingerprint"):
        preprocessing.pop(key)
    preprocessing["format"] = 1
    preprocessing["fingerprint"] = fingerprint(old / "model.keras", preprocessing)
    (old / "preprocessing.json").write_text(json.dumps(preprocessing))
    with pytest.warns(UserWarning, match="bundle format 1.*temperature 1.*no file is flagged"):
        bundle = load_bundle(old)
    assert bundle.temperature == 1.0 and bundle.unfamiliarity is None and bundle.flag_meaning is None
    y = music(4.0, seed=2)
    path = tmp_path / "song.wav"
    soundfile.write(path, y, SR)
    result = bundle.predict_file(path)
    assert result["unfamiliar"] is None and result["unfamiliarity"] is None
    raw = predict_proba(bundle.model, bundle.image_inputs(y[None].astype(np.float32)))[0]
    np.testing.assert_allclose([result["probabilities"][g] for g in GENRES], raw, atol=1e-5)
    predictions, _ = bundle.predict_files([str(path)], log=lambda m: None)
    assert predictions["unfamiliar"].isna().all() and predictions["unfamiliarity"].isna().all()


def test_a_bundle_whose_score_statistics_were_changed_is_refused(bundle_dir, tmp_path):
    import shutil

    from genreflow.models.unfamiliar import Unfamiliarity

    edited = tmp_path / "edited"
    shutil.copytree(bundle_dir, edited)
    stats = Unfamiliarity.load(edited / "unfamiliarity.npz")
    stats.threshold *= 10  # a threshold that flags nothing
    stats.save(edited / "unfamiliarity.npz")
    with pytest.raises(BundleError, match="does not describe this model.keras and unfamiliarity.npz"):
        load_bundle(edited)
    (edited / "unfamiliarity.npz").unlink()
    with pytest.raises(BundleError, match="unfamiliarity.npz is missing"):
        load_bundle(edited)
