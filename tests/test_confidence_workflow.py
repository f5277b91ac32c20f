"""Calibration and the "unfamiliar" flag through Snakemake, on the tiny full run: every
final model family (an image backbone's head, a musicnn head, the baseline CNN) gets its
temperature from its validation tracks, and `snakemake predict` flags noise, speech,
silence-padded clips and tones far more often than held-out songs of the corpus's kind,
and the same songs rendered a second time (the synthetic corpus's rendering 1: other
instruments, another room, EQ and noise) more often than as first rendered.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import snakemake
from odd_audio import espeak, odd_clips, write

pytestmark = pytest.mark.workflow
MODELS = [("vgg16", "mel", 0), ("musicnn_msd", "audio", 0), ("baseline_cnn", "mel", 0)]
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
          "rock"]


def test_every_final_model_is_calibrated_on_its_validation_tracks(tiny_gtzan_run):
    from genreflow.evaluation.calibration import fit_temperature, split_tracks

    workdir, _, _ = tiny_gtzan_run
    headline = json.loads((workdir / "results/final/headline.json").read_text())
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    for backbone, feature, n in MODELS:
        folder = workdir / f"results/final/{backbone}/{feature}/round_{n}"
        record = json.loads((folder / "calibration.json").read_text())
        predictions = pd.read_csv(folder / "predictions.csv", dtype={"clip": str})
        assert sorted(record["temperatures"]) == ["0", "1"] and record["bins"] == 10
        for seed in (0, 1):
            # the temperature is the one the seed's validation tracks alone give
            expected, _ = fit_temperature(*split_tracks(predictions, GENRES, seed, "valid"))
            assert record["temperatures"][str(seed)] == pytest.approx(expected, rel=1e-6)
        assert 0.0 <= record["test_ece_after"] <= 1.0 and 0.0 <= record["test_brier_after"] <= 2.0
        assert (folder / "reliability.png").read_bytes()[:4] == b"\x89PNG"
        row = summary[(summary["backbone"] == backbone) & (summary["feature"] == feature)].iloc[0]
        assert row["test_ece_after"] == pytest.approx(record["test_ece_after"])
    chosen = f"results/final/{headline['backbone']}/{headline['feature']}/round_{headline['round']}"
    record = json.loads((workdir / chosen / "calibration.json").read_text())
    assert headline["calibration"]["test_ece_before"] == pytest.approx(record["test_ece_before"])
    assert headline["calibration"]["test_ece_after"] == pytest.approx(record["test_ece_after"])


def odd_music(workdir):
    """The folder `snakemake predict` classifies: held-out songs of the corpus's kind (not in
    it: indices the corpus does not have), the same songs shifted, and odd audio."""
    from genreflow.synthetic import render_clip

    folder = workdir / "odd music"
    if folder.exists():
        return json.loads((workdir / "odd_music.json").read_text())
    kinds = {}
    songs = []
    for genre in GENRES:
        for index in (40, 41):
            y = render_clip(genre, index, 6.0)
            songs.append(y)
            (folder / "held").mkdir(parents=True, exist_ok=True)
            (folder / "shifted").mkdir(parents=True, exist_ok=True)
            kinds[write(folder / "held" / f"{genre}.{index}.wav", y)] = ("held-out", genre)
            second = render_clip(genre, index, 6.0, rendering=1)  # the same song, recorded anew
            kinds[write(folder / "shifted" / f"{genre}.{index}.wav", second)] = ("shifted", genre)
    for path, kind in odd_clips(folder / "odd", 6.0, songs[::3], count=2,
                                with_speech=espeak() is not None).items():
        kinds[path] = ("odd: " + kind, None)
    kinds = {os.path.relpath(path, workdir): value for path, value in kinds.items()}
    (workdir / "odd_music.json").write_text(json.dumps(kinds))
    return kinds


@pytest.fixture(scope="module")
def flagged(tiny_gtzan_run):
    """`snakemake predict` on the odd music with each model family's bundle."""
    workdir, _, _ = tiny_gtzan_run
    if espeak() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("espeak-ng is missing (apt-get install -y espeak-ng): the speech clips "
                        "cannot be made")
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng): no speech clips")
    kinds = odd_music(workdir)
    results = {}
    for backbone, feature, n in MODELS:
        name = f"odd_{backbone}"
        snakemake(workdir, "--cores", "2", "predict", "--config",
                  f"predict={{input: 'odd music', name: {name}, model: {backbone}/{feature}/round_{n}}}")
        predictions = pd.read_csv(workdir / f"results/predict/{name}/predictions.csv")
        predictions["kind"] = predictions["file"].map(lambda f: kinds[f][0])
        predictions["truth"] = predictions["file"].map(lambda f: kinds[f][1])
        results[backbone] = predictions
    return workdir, results


@pytest.mark.parametrize("backbone", [backbone for backbone, _, _ in MODELS])
def test_predict_flags_odd_audio_far_more_often_than_held_out_songs(flagged, backbone):
    workdir, results = flagged
    predictions = results[backbone]
    assert predictions["unfamiliar"].dtype == bool
    rates = predictions.groupby("kind")["unfamiliar"].mean()
    odd = predictions[predictions["kind"].str.startswith("odd")]
    assert set(odd["kind"]) >= {"odd: white noise", "odd: pink noise", "odd: speech",
                                "odd: mostly silence", "odd: sine tone"}
    # tiny models (two epochs on a dozen clips, 10 validation tracks for the threshold):
    # the held-out rate is far from 5%, the odd one still far above it
    assert rates["held-out"] <= 0.35, rates
    assert odd["unfamiliar"].mean() >= max(0.6, rates["held-out"] + 0.35), rates
    assert (predictions["unfamiliar"] == (predictions["unfamiliarity"] > 1.0)).all()
    assert rates["odd: white noise"] == rates["odd: mostly silence"] == 1.0, rates
    assert rates["odd: speech"] >= 0.5, rates
    log = (workdir / f"logs/collect_predictions/odd_{backbone}.log").read_text()
    assert "flagged unfamiliar" in log and "does not say that the genre is wrong" in log


def test_shifted_songs_are_flagged_more_often_than_the_same_songs_as_rendered(flagged):
    # Over the three model families together: 20 songs per kind and model are too few for
    # each model alone. Measured in CI: the musicnn head flagged 1 of 20 second renderings
    # against 3 of 20 first renderings (its input is level-normalised and its embedding
    # was trained on many recordings), while the image head and the baseline flagged more
    # second renderings; benchmarks/confidence.py measures it per model on the demo.
    _, results = flagged
    pooled = pd.concat(results.values())
    rates = pooled.groupby("kind")["unfamiliar"].mean()
    assert rates["shifted"] > rates["held-out"], {
        backbone: predictions.groupby("kind")["unfamiliar"].mean().to_dict()
        for backbone, predictions in results.items()}


def test_the_figure_and_the_report_show_the_flag(flagged):
    workdir, results = flagged
    predictions = results["vgg16"]
    preprocessing = json.loads((workdir / "results/export/vgg16/mel/round_0/preprocessing.json").read_text())
    assert preprocessing["format"] == 2
    assert preprocessing["unfamiliarity"]["rate"] == 0.05
    assert preprocessing["calibration"]["temperature"] == pytest.approx(json.loads(
        (workdir / "results/final/vgg16/mel/round_0/calibration.json").read_text())
        ["temperatures"][str(preprocessing["model"]["seed"])])
    assert list(predictions.columns[:11]) == [
        "file", "duration_s", "windows", "genre", "probability", "second_genre",
        "second_probability", "third_genre", "third_probability", "unfamiliar", "unfamiliarity"]
    assert (workdir / "results/predict/odd_vgg16/probabilities.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((workdir / "results/final/vgg16/mel/round_0/unfamiliarity.json").read_text())
    # the threshold is the 95% quantile of the validation tracks' scores
    scores = pd.read_csv(workdir / "results/final/vgg16/mel/round_0/unfamiliarity.csv")
    valid = scores[scores["split"] == "valid"]["score"].to_numpy()
    assert summary["threshold"] == pytest.approx(np.quantile(valid, 0.95))
    assert summary["valid"]["flagged"] == int((valid > summary["threshold"]).sum()) <= 1
