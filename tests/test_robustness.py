"""The robustness stage's tables without Snakemake: conditions and their files
(genreflow.plan), the summary's scores, paired differences and headline, the HTML table and
the figure (genreflow.robustness.summary, genreflow.plots.robustness)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genreflow import plan
from genreflow.intervals import Bootstrap, paired_difference, score_intervals
from genreflow.names import CLEAN, SECOND_RENDERING
from genreflow.robustness import summary as robustness_summary
from genreflow.robustness.conditions import condition_clip, split_condition_clip

GENRES = ["blues", "jazz", "rock"]
BOOT = Bootstrap(resamples=1000, confidence=0.95, seed=0)
CONDITIONS = [{"name": "noise", "description": "pink noise at 20 dB SNR"},
              {"name": "gain", "description": "gain -12 dB"},
              {"name": SECOND_RENDERING, "description": "the same songs rendered again"}]


def test_the_conditions_are_the_perturbations_then_the_second_rendering_of_the_demo():
    assert plan.robustness_conditions(["mp3", "gain"], True, "synthetic") == [
        "mp3", "gain", SECOND_RENDERING]
    assert plan.robustness_conditions(["mp3", "gain"], True, "gtzan") == ["mp3", "gain"]
    assert plan.robustness_conditions([], False, "synthetic") == []


def test_a_model_is_scored_on_the_inputs_of_its_kind():
    assert plan.robustness_inputs("vgg16", "mel") == {
        "clean": "results/features/mel/index.csv",
        "conditions": "results/robustness/features/mel/index.csv"}
    assert plan.robustness_inputs("baseline_cnn", "stft")["clean"] == "results/features/stft/index.csv"
    assert plan.robustness_inputs("musicnn_msd", "audio") == {
        "clean": "results/embeddings/musicnn_msd/audio.npz",
        "conditions": "results/robustness/embeddings/musicnn_msd/audio.npz"}
    assert plan.robustness_predictions("vgg16", "mel") == (
        "results/robustness/models/vgg16/mel/predictions.csv")


def test_condition_clip_ids_round_trip():
    assert split_condition_clip(condition_clip("noise", "blues.00003")) == ("noise", "blues.00003")
    with pytest.raises(ValueError, match="not a <condition>/<clip> id"):
        split_condition_clip("blues.00003")


def _frame(predicted, truth, condition, seed=0, round_=0):
    """A predictions.csv block: one segment per track, probabilities one-hot-ish."""
    rows = []
    for i, (p, t) in enumerate(zip(predicted, truth)):
        probabilities = {f"p_{g}": (0.8 if g == p else 0.1) for g in GENRES}
        rows.append({"round": round_, "seed": seed, "condition": condition, "split": "test",
                     "clip": f"{t}.{i:05d}", "segment": 0, "true": t, "predicted": p,
                     **probabilities})
    return pd.DataFrame(rows)


TRUTH = ["blues"] * 4 + ["jazz"] * 4 + ["rock"] * 4
CLEAN_PRED = ["blues"] * 4 + ["jazz"] * 3 + ["rock"] + ["rock"] * 4
NOISY_PRED = ["blues", "jazz", "jazz", "rock"] + ["jazz"] * 2 + ["rock"] * 2 + ["rock"] * 3 + ["blues"]


def _predictions(round_=0):
    return pd.concat([
        _frame(CLEAN_PRED, TRUTH, CLEAN, round_=round_),
        _frame(NOISY_PRED, TRUTH, "noise", round_=round_),
        _frame(CLEAN_PRED, TRUTH, "gain", round_=round_),
        _frame(NOISY_PRED[::-1], TRUTH, SECOND_RENDERING, round_=round_),
    ], ignore_index=True)


def test_each_condition_is_paired_against_the_same_model_clean():
    rows = {row["condition"]: row for row in robustness_summary.model_rows(
        _predictions(), CONDITIONS, GENRES, BOOT)}
    assert list(rows) == [CLEAN, "noise", "gain", SECOND_RENDERING]
    labels = np.repeat([0, 1, 2], 4)
    index = {g: i for i, g in enumerate(GENRES)}
    clean = np.array([index[g] for g in CLEAN_PRED])
    noisy = np.array([index[g] for g in NOISY_PRED])
    expected = score_intervals(labels, noisy, 3, BOOT)["macro_f1"]
    delta = paired_difference(labels, noisy, clean, 3, BOOT)["macro_f1"]
    noise = rows["noise"]
    assert noise["test_macro_f1"] == pytest.approx(expected.estimate)
    assert (noise["test_macro_f1_low"], noise["test_macro_f1_high"]) == pytest.approx(
        (expected.low, expected.high))
    assert noise["delta_macro_f1"] == pytest.approx(delta.estimate) and delta.estimate < 0
    assert noise["delta_macro_f1_low"] <= delta.estimate <= noise["delta_macro_f1_high"]
    # the same predictions: a difference of exactly 0, and around it only the continuity
    # correction of the two scores (genreflow.intervals: one track's step, 2/12 of macro-F1)
    for name in (CLEAN, "gain"):
        assert (rows[name]["delta_macro_f1"], rows[name]["delta_macro_f1_low"],
                rows[name]["delta_macro_f1_high"]) == pytest.approx((0.0, -2 / 12, 2 / 12))
    assert rows["noise"]["n_tracks"] == 12 and rows["noise"]["n_seeds"] == 1


def test_a_condition_missing_tracks_is_refused():
    predictions = _predictions()
    predictions = predictions[~((predictions["condition"] == "noise")
                                & (predictions["clip"] == "rock.00011"))]
    with pytest.raises(ValueError, match="tested on different tracks"):
        robustness_summary.model_rows(predictions, CONDITIONS, GENRES, BOOT)


def _final_summary():
    return pd.DataFrame([
        {"rank": 1, "chosen": True, "model": "VGG16 + mel", "backbone": "vgg16",
         "feature": "mel", "round": 1, "test_macro_f1_mean": None},
        {"rank": 2, "chosen": False, "model": "VGG16 + mel", "backbone": "vgg16",
         "feature": "mel", "round": 0, "test_macro_f1_mean": None},
    ])


def _summary(tmp_path):
    path = tmp_path / "predictions.csv"
    pd.concat([_predictions(0), _predictions(1)]).to_csv(path, index=False)
    final = _final_summary()
    clean = robustness_summary.model_rows(_predictions(), CONDITIONS, GENRES, BOOT)[0]
    final["test_macro_f1_mean"] = clean["test_macro_f1"]
    return robustness_summary.summary_table([str(path)], [("vgg16", "mel")], final,
                                            CONDITIONS, GENRES, BOOT)


def test_the_summary_follows_table_5_and_the_conditions_order(tmp_path):
    table = _summary(tmp_path)
    assert list(table.columns) == list(robustness_summary.SUMMARY_COLUMNS)
    assert list(table["round"]) == [1] * 4 + [0] * 4
    assert list(table["condition"][:4]) == [CLEAN, "noise", "gain", SECOND_RENDERING]
    assert table["chosen"].tolist() == [True] * 4 + [False] * 4
    assert robustness_summary.clean_mismatches(table) == []
    table.loc[0, "final_test_macro_f1"] = 0.1
    assert "round 1" in robustness_summary.clean_mismatches(table)[0]


def test_the_headline_is_the_chosen_models_worst_perturbation(tmp_path):
    table = _summary(tmp_path)
    top = robustness_summary.headline(table, BOOT)
    assert top["round"] == 1 and top["n_perturbations"] == 2
    noise = table[(table["round"] == 1) & (table["condition"] == "noise")].iloc[0]
    assert top["worst"]["condition"] == "noise"  # not the second rendering: no perturbation
    assert top["worst"]["delta_macro_f1"]["mean"] == pytest.approx(noise["delta_macro_f1"])
    assert top["second_rendering"]["test_macro_f1"]["mean"] == pytest.approx(
        table[(table["round"] == 1) & (table["condition"] == SECOND_RENDERING)]
        ["test_macro_f1"].iloc[0])
    # 4 test tracks per genre: an interval, or (too few tracks wrong) n/a with the reason
    assert (top["clean"]["low"] is not None) != bool(top["clean"]["missing"])


def test_the_html_table_marks_the_chosen_model_and_the_clear_losses(tmp_path):
    table = _summary(tmp_path)
    page = robustness_summary.table_html(table, CONDITIONS, ["SYNTHETIC DEMO CORPUS: x"],
                                         BOOT, "synthetic")
    assert page.count('<tr class="chosen">') == 1 and "(chosen)" in page
    assert "SYNTHETIC DEMO CORPUS" in page and "second_rendering" in page
    assert page.count("<tr") == 3
    noise = table[(table["round"] == 1) & (table["condition"] == "noise")].iloc[0]
    shown = f"{noise['delta_macro_f1']:+.3f}"
    assert shown in page
    excluded = noise["delta_macro_f1_high"] < 0
    assert (f"<b>{shown}" in page) == excluded


def test_the_figure_has_a_row_per_model(tmp_path):
    from genreflow.plots.robustness import plot_robustness

    small, large = tmp_path / "small.png", tmp_path / "large.png"
    table = _summary(tmp_path)
    plot_robustness(table, str(small), ["SYNTHETIC DEMO CORPUS: x"])
    more = pd.concat([table, table.assign(rank=table["rank"] + 2, chosen=False)])
    plot_robustness(more, str(large), [])
    with Image.open(small) as a, Image.open(large) as b:
        assert a.size[0] == b.size[0] and b.size[1] > a.size[1]
