"""`snakemake robustness` on the tiny GTZAN-shaped run: every final model under every
perturbation, scored through model.keras as the bundle feeds it, against its own test
predictions; a gain change costs the image models nothing; one perturbation's parameters
rerun only what reads them."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml

from conftest import TINY_CONFIG, planned_jobs, snakemake

pytestmark = pytest.mark.workflow
MODELS = [("vgg16", "mel", 0), ("musicnn_msd", "audio", 0), ("baseline_cnn", "mel", 0)]
PERTURBATIONS = ["mp3", "lowpass", "highpass", "tilt", "noise", "reverb", "resample", "pitch",
                 "gain"]


@pytest.fixture(scope="module")
def robustness(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    snakemake(workdir, "--cores", "2", "robustness")
    return workdir, pd.read_csv(workdir / "results/robustness/summary.csv")


def test_every_final_model_is_scored_under_every_perturbation(robustness):
    workdir, summary = robustness
    assert len(summary) == len(MODELS) * (1 + len(PERTURBATIONS))
    for backbone, feature, n in MODELS:
        rows = summary[(summary["backbone"] == backbone) & (summary["feature"] == feature)
                       & (summary["round"] == n)]
        # a GTZAN-layout corpus has no second rendering: only the synthetic one renders again
        assert list(rows["condition"]) == ["clean", *PERTURBATIONS], backbone
        assert (rows["n_seeds"] == 2).all()
    test_tracks = len(pd.read_csv(workdir / "results/splits/test.csv"))
    assert (summary["n_tracks"] == test_tracks).all()
    final = pd.read_csv(workdir / "results/final/summary.csv")
    assert summary.drop_duplicates("rank")[["rank", "backbone", "round", "chosen"]].to_dict(
        "records") == final[["rank", "backbone", "round", "chosen"]].to_dict("records")


def test_the_clean_rows_are_the_final_models_own_test_predictions(robustness):
    workdir, summary = robustness
    final = pd.read_csv(workdir / "results/final/summary.csv").set_index(["backbone", "round"])
    for backbone, feature, n in MODELS:
        clean = summary[(summary["backbone"] == backbone) & (summary["condition"] == "clean")]
        assert clean["test_macro_f1"].iloc[0] == pytest.approx(
            final.loc[(backbone, n), "test_macro_f1_mean"], abs=1e-12)
        for bound in ("low", "high"):  # the same interval, or both n/a (one track a genre)
            ours, theirs = (clean[f"test_macro_f1_{bound}"].iloc[0],
                            final.loc[(backbone, n), f"test_macro_f1_{bound}"])
            assert (np.isnan(ours) and np.isnan(theirs)) or ours == pytest.approx(theirs)
        ours = pd.read_csv(workdir / f"results/robustness/models/{backbone}/{feature}/predictions.csv")
        ours = ours[(ours["condition"] == "clean") & (ours["round"] == n)]
        theirs = pd.read_csv(workdir / f"results/final/{backbone}/{feature}/round_{n}/predictions.csv")
        theirs = theirs[theirs["split"] == "test"]
        merged = ours.merge(theirs, on=["seed", "clip", "segment"], suffixes=("", "_final"))
        assert len(merged) == len(theirs) == len(ours)
        assert (merged["predicted"] == merged["predicted_final"]).all(), backbone
        columns = [c for c in theirs.columns if c.startswith("p_")]
        np.testing.assert_allclose(merged[columns].to_numpy(),
                                   merged[[f"{c}_final" for c in columns]].to_numpy(), atol=2e-4)


def test_a_gain_change_costs_the_image_models_nothing(robustness):
    workdir, summary = robustness
    for backbone, feature, _ in MODELS:
        gain = summary[(summary["backbone"] == backbone) & (summary["condition"] == "gain")].iloc[0]
        if backbone == "musicnn_msd":
            continue  # musicnn's log-mel input is not gain-invariant: its row says what it costs
        assert (gain["delta_macro_f1"], gain["delta_accuracy"]) == (0.0, 0.0), backbone
        predictions = pd.read_csv(
            workdir / f"results/robustness/models/{backbone}/{feature}/predictions.csv")
        by = {c: p.sort_values(["seed", "clip", "segment"])["predicted"].tolist()
              for c, p in predictions.groupby("condition")}
        assert by["gain"] == by["clean"], backbone


def test_some_perturbation_moves_some_prediction(robustness):
    workdir, summary = robustness
    predictions = pd.read_csv(workdir / "results/robustness/models/vgg16/mel/predictions.csv")
    clean = predictions[predictions["condition"] == "clean"].set_index(["seed", "clip"])
    columns = [c for c in predictions.columns if c.startswith("p_")]
    for perturbation in ("lowpass", "resample", "noise"):
        moved = predictions[predictions["condition"] == perturbation].set_index(["seed", "clip"])
        assert np.abs(moved[columns] - clean.loc[moved.index, columns]).to_numpy().max() > 1e-3


def test_the_perturbed_clips_are_the_test_clips_perturbed(robustness):
    workdir, _ = robustness
    test = set(pd.read_csv(workdir / "results/splits/test.csv")["clip"])
    clips = pd.read_csv(workdir / "results/corpus/clips.csv").set_index("clip")
    table = pd.read_csv(workdir / "results/robustness/audio/clips.csv")
    assert set(table["condition"]) == set(PERTURBATIONS)
    for condition, rows in table.groupby("condition"):
        assert set(rows["source_clip"]) == test and (rows["status"] == "accepted").all()
    from genreflow.audio import AudioSettings, load_clip

    settings = AudioSettings.from_config({**TINY_CONFIG["audio"], "sample_rate": 22050})
    # (not rock.80000, a float file 8x beyond full scale: its quieter copy is still beyond
    # it and is brought back below it, which only a gain-invariant model may ignore)
    gain = table[(table["condition"] == "gain") & ~table["source_clip"].str.endswith("80000")].iloc[0]
    clean, _ = load_clip(workdir / clips.loc[gain["source_clip"], "path"], settings)
    quieter, rate = soundfile.read(workdir / gain["path"], dtype="float64")
    assert rate == 22050 and quieter.shape == clean.shape
    np.testing.assert_allclose(quieter, clean * 10 ** (-12 / 20), atol=2 ** -23)


def test_the_headline_and_the_report_page(robustness):
    workdir, summary = robustness
    top = json.loads((workdir / "results/robustness/headline.json").read_text())
    chosen = summary[summary["chosen"] & ~summary["condition"].isin(["clean"])]
    worst = chosen.sort_values("delta_macro_f1", kind="mergesort").iloc[0]
    assert top["worst"]["condition"] == worst["condition"]
    assert top["worst"]["delta_macro_f1"]["mean"] == pytest.approx(worst["delta_macro_f1"])
    assert top["second_rendering"] is None
    snakemake(workdir, "--report", "robustness-report.html")
    page = (workdir / "robustness-report.html").read_text()
    assert f"on its worst of {len(PERTURBATIONS)} perturbations" in page
    assert "Robustness" in page


def test_one_perturbations_parameters_rerun_only_what_reads_them(robustness, tmp_path):
    workdir, _ = robustness
    config = copy.deepcopy(TINY_CONFIG)
    perturbations = {name: {"kind": name} for name in PERTURBATIONS}
    perturbations["noise"]["snr_db"] = 10.0
    config["robustness"] = {"perturbations": perturbations}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    _, output = snakemake(workdir, "-n", "--configfile", str(changed))
    jobs = planned_jobs(output)
    assert [job for job in jobs if job[0] == "perturb_test_clips"] == [
        ("perturb_test_clips", "condition=noise")], output
    assert {rule for rule, _ in jobs} == {
        "perturb_test_clips", "collect_robustness_audio", "make_robustness_images",
        "embed_robustness_audio", "score_robustness", "summarize_robustness", "all"}, output
