"""segments.compare on the tiny run: whole clips vs 3 s segments, musicnn included."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from genreflow.names import GTZAN_GENRES

pytestmark = pytest.mark.workflow


def selected_models(workdir):
    selection = json.loads((workdir / "results/screening/selection.json").read_text())
    return {(s["backbone"], s["feature"]) for s in selection["selected"]}


def test_every_selected_model_is_compared_at_every_length(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/segments/summary.csv")
    models = selected_models(workdir)
    assert ("musicnn_msd", "audio") in models
    assert set(zip(summary.length, summary.backbone, summary.feature)) == {
        (length, backbone, feature) for length in ("whole", "3s") for backbone, feature in models
    }
    whole, three = summary[summary.length == "whole"], summary[summary.length == "3s"]
    # 6 s clips: two 3 s segments per track, one image (or embedding) per whole clip
    assert (three.test_segments == 2 * three.test_tracks).all()
    assert (whole.test_segments == whole.test_tracks).all()
    # the whole-clip row is the screening run itself, not a second training
    for row in whole.itertuples():
        screened = json.loads(
            (workdir / f"results/screening/{row.backbone}/{row.feature}/metrics.json").read_text())
        assert row.test_macro_f1 == pytest.approx(screened["test_macro_f1"])
    table = (workdir / "results/segments/comparison.md").read_text()
    assert "| model | whole | 3s |" in table and "musicnn_msd + audio" in table


def test_track_scores_average_segment_probabilities_and_tracks_stay_in_one_split(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/segments/summary.csv")
    manifests = {split: set(pd.read_csv(workdir / f"results/splits/{split}.csv")["clip"])
                 for split in ("train", "valid", "test")}
    for backbone, feature in selected_models(workdir):
        predictions = pd.read_csv(
            workdir / f"results/segments/3s/screening/{backbone}/{feature}/predictions.csv")
        # no track's segments in two splits, and each split is its manifest's tracks
        assert (predictions.groupby("clip")["split"].nunique() == 1).all()
        for split in ("valid", "test"):
            assert set(predictions[predictions.split == split]["clip"]) == manifests[split]
        assert sorted(predictions.groupby("clip")["segment"].apply(sorted).map(tuple).unique()) == [(0, 1)]
        test = predictions[predictions.split == "test"]
        columns = [f"p_{genre}" for genre in GTZAN_GENRES]
        tracks = test.groupby("clip").agg({**{c: "mean" for c in columns}, "true": "first"})
        voted = np.array(GTZAN_GENRES)[tracks[columns].to_numpy().argmax(1)]
        expected = f1_score(tracks["true"], voted, average="macro",
                            labels=sorted(set(tracks["true"])), zero_division=0)
        row = summary[(summary.length == "3s") & (summary.backbone == backbone)
                      & (summary.feature == feature)].iloc[0]
        # probabilities are rounded to 6 digits in the CSV: ties aside, the same votes
        assert row.test_macro_f1 == pytest.approx(expected, abs=1e-9)
        segment_f1 = f1_score(test["true"], test["predicted"], average="macro",
                              labels=sorted(set(test["true"])), zero_division=0)
        assert row.test_segment_macro_f1 == pytest.approx(segment_f1)


def test_musicnn_is_a_screening_row_with_the_audio_feature(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/screening/summary.csv")
    row = summary[summary.backbone == "musicnn_msd"]
    assert list(row.feature) == ["audio"] and bool(row.pretrained.iloc[0]) is True
    assert row.weights.iloc[0] == "musicnn 0.1.0 MSD_musicnn"
    log = (workdir / "logs/embed_audio/musicnn_msd/000.log").read_text()
    assert "restored and verified" in log and "(64 variables)" in log
