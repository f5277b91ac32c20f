"""Any genre set, not only GTZAN's ten: a corpus of three genres with names of its own runs
from the corpus to Table 5, labelled by dataset.genres everywhere."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile
from sklearn.metrics import f1_score

from conftest import snakemake, write_config

pytestmark = pytest.mark.workflow

# three of the synthetic generator's genres, renamed: nothing may fall back to GTZAN's names
RENAMED = {"classical": "ambient", "metal": "drone", "reggae": "zydeco"}
GENRES = ["zydeco", "ambient", "drone"]  # label order is the config's, not alphabetical
CONFIG = {
    "dataset": {"kind": "gtzan", "root": "collection", "genres": GENRES},
    "audio": {"seconds": 4.0, "min_seconds": 3.0},
    "features": {"image_size": 32, "shard_size": 8},
    "backbones": {"names": ["vgg16"], "weights": "none"},
    "segments": {"compare": None},
    "screening": {"features": ["mel"], "epochs": 8, "patience": 4},
    "tuning": {
        "combinations": [{"backbone": "vgg16", "feature": "mel"}],
        "pruner": {"kind": "none"},
        "defaults": {"epochs": 8, "batch_size": 4, "units": 16},
        "rounds": [{"nuisance": {"learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-2,
                                                   "log": True}},
                    "fixed": {"trainable_layers": 0}, "sampler": "qmc", "n_trials": 2}],
        "baseline": {"enabled": False},
    },
    "evaluation": {"seeds": [0]},
    "bootstrap": {"resamples": 1000},
}


@pytest.fixture(scope="module")
def own_genres_run(tmp_path_factory):
    from genreflow.synthetic import render_clip

    workdir = tmp_path_factory.mktemp("own_genres")
    for source, genre in RENAMED.items():
        folder = workdir / "collection" / genre
        folder.mkdir(parents=True)
        for index in range(6):
            soundfile.write(folder / f"{genre} track {index}.wav",
                            render_clip(source, index, 4.0), 22050, subtype="PCM_16")
    write_config(workdir, CONFIG)
    snakemake(workdir, "--cores", "2")
    return workdir


def test_three_own_genres_run_from_the_corpus_to_table5(own_genres_run):
    workdir = own_genres_run
    clips = pd.read_csv(workdir / "results/corpus/clips.csv")
    assert sorted(clips["genre"].unique()) == sorted(GENRES) and len(clips) == 18
    predictions = pd.read_csv(workdir / "results/final/vgg16/mel/round_0/predictions.csv")
    assert [c for c in predictions.columns if c.startswith("p_")] == [f"p_{g}" for g in GENRES]
    test = predictions[predictions["split"] == "test"]
    metrics = json.loads((workdir / "results/final/vgg16/mel/round_0/metrics.json").read_text())
    per_class = metrics["test"]["tracks"]["per_class"]
    assert sorted(per_class) == sorted(GENRES)  # (metrics.json keys are sorted)
    assert np.asarray(metrics["test"]["tracks"]["confusion_matrix_pooled"]).shape == (3, 3)
    # the labels are positions in dataset.genres: the macro-F1 is over these three classes
    expected = f1_score(test["true"], test["predicted"], labels=GENRES, average="macro", zero_division=0)
    assert metrics["test_macro_f1_mean"] == pytest.approx(expected)
    embeddings = np.load(workdir / "results/embeddings/vgg16/mel.npz")
    index = pd.read_csv(workdir / "results/features/mel/index.csv")
    assert list(embeddings["label"]) == [GENRES.index(genre) for genre in index["genre"]]
    table = (workdir / "results/final/table5.md").read_text()
    assert "| 1 | VGG16 + mel spectrogram | 0 |" in table
    # not GTZAN (other genres), so no caveat about GTZAN's random split; not the demo either
    assert "RANDOM SPLIT OF GTZAN" not in table and "SYNTHETIC" not in table
    assert "NOT PRETRAINED" in table
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    assert summary.loc[0, "corpus"] == "folder"


@pytest.fixture(scope="module")
def own_music(own_genres_run):
    """Fresh clips of the three genres (not in the corpus), as wav, flac, ogg and mp3, a 70 s
    track, and files that cannot be used; then `snakemake predict` on the folder."""
    from genreflow.synthetic import render_clip

    workdir = own_genres_run
    folder = workdir / "my music"
    (folder / "album").mkdir(parents=True)
    truth = {}
    formats = [("wav", {}), ("flac", {}), ("ogg", {}), ("mp3", {"format": "MP3"})]
    for source, genre in RENAMED.items():
        for index, (suffix, kwargs) in enumerate(formats):
            path = folder / "album" / f"{genre} new {index}.{suffix}"
            soundfile.write(path, render_clip(source, 20 + index, 4.0), 22050, **kwargs)
            truth[str(path.relative_to(workdir))] = genre
    long = np.concatenate([render_clip("metal", 30, 4.0)] * 18)[: 70 * 22050]
    soundfile.write(folder / "long drone.wav", long, 22050)
    truth["my music/long drone.wav"] = "drone"
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio\n" * 50)
    soundfile.write(folder / "silence.flac", np.zeros(5 * 22050), 22050)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8")
    snakemake(workdir, "--cores", "2", "predict", "--config", "predict={input: 'my music', shard_size: 5}")
    return workdir, truth


def test_predict_classifies_your_own_music_better_than_chance(own_music):
    workdir, truth = own_music
    predictions = pd.read_csv(workdir / "results/predict/my_music/predictions.csv")
    assert sorted(predictions["file"]) == sorted(truth)
    assert list(predictions.columns) == ["file", "duration_s", "windows", "genre", "probability",
                                         "second_genre", "second_probability", "third_genre",
                                         "third_probability", "unfamiliar", "unfamiliarity",
                                         *(f"p_{genre}" for genre in GENRES)]
    assert (predictions["probability"] >= predictions["second_probability"]).all()
    assert (predictions["second_probability"] >= predictions["third_probability"]).all()
    correct = (predictions["genre"] == predictions["file"].map(truth)).mean()
    assert correct > 1 / 3 + 0.2, predictions  # chance is 1/3
    long = predictions.set_index("file").loc["my music/long drone.wav"]
    assert long["windows"] == 17 and long["duration_s"] == 70.0  # 70 s in 4 s windows
    rejected = pd.read_csv(workdir / "results/predict/my_music/rejected.csv")
    reasons = dict(zip(rejected["file"].map(lambda f: f.split("/")[-1]), rejected["reason"]))
    assert reasons["empty.wav"].startswith("empty file")
    assert reasons["notes.mp3"].startswith("not an audio file: no audio format's header (it is text")
    assert reasons["silence.flac"].startswith("silent")
    assert reasons["cover.jpg"].startswith("not an audio file name")
    assert (workdir / "results/predict/my_music/probabilities.png").read_bytes()[:4] == b"\x89PNG"
    # 16 audio files (12 songs, the long track and three bad ones) in shards of 5
    assert len(list((workdir / "results/predict/my_music/shards").glob("*.rejected.csv"))) == 4


def test_the_exported_bundle_gives_the_rules_numbers_outside_the_workflow(own_music, monkeypatch):
    from genreflow.predict import load_bundle

    workdir, truth = own_music
    monkeypatch.chdir(workdir)
    bundle = load_bundle("results/export/vgg16/mel/round_0")
    assert bundle.preprocessing["genres"] == GENRES and bundle.preprocessing["feature"] == "mel"
    predictions = pd.read_csv("results/predict/my_music/predictions.csv").set_index("file")
    for path in list(truth)[:4] + ["my music/long drone.wav"]:
        result = bundle.predict_file(path)
        for genre in GENRES:
            assert result["probabilities"][genre] == pytest.approx(predictions.loc[path, f"p_{genre}"], abs=1e-6)
        assert result["windows"] == predictions.loc[path, "windows"]


@pytest.fixture(scope="module")
def renderings(own_genres_run):
    """Fresh songs of the three genres as rendered (the first rendering) and the same songs
    rendered a second time (genreflow.synthetic's rendering 1: other instruments, another
    room, EQ and noise), classified by `snakemake predict`."""
    from genreflow.synthetic import render_clip
    from odd_audio import write

    workdir = own_genres_run
    folder = workdir / "renderings"
    truth = {}
    for source, genre in RENAMED.items():
        for index in range(20, 26):
            for rendering, audio in (("first", render_clip(source, index, 4.0)),
                                     ("second", render_clip(source, index, 4.0, rendering=1))):
                (folder / rendering).mkdir(parents=True, exist_ok=True)
                path = write(folder / rendering / f"{genre}.{index}.wav", audio)
                truth[os.path.relpath(path, workdir)] = (rendering, genre)
    snakemake(workdir, "--cores", "2", "predict", "--config",
              "predict={input: renderings, name: renderings}")
    predictions = pd.read_csv(workdir / "results/predict/renderings/predictions.csv")
    predictions["rendering"] = predictions["file"].map(lambda f: truth[f][0])
    predictions["right"] = predictions["genre"] == predictions["file"].map(lambda f: truth[f][1])
    return predictions


def test_the_second_rendering_is_flagged_more_and_flagged_files_are_right_less_often(renderings):
    predictions = renderings
    by_rendering = predictions.groupby("rendering")[["unfamiliar", "right"]].mean()
    assert by_rendering.loc["second", "unfamiliar"] > by_rendering.loc["first", "unfamiliar"], by_rendering
    assert by_rendering.loc["first", "right"] > 1 / 3 + 0.2, by_rendering  # the model works here
    by_flag = predictions.groupby("unfamiliar")["right"].mean()
    assert by_flag.loc[True] < by_flag.loc[False], by_flag
