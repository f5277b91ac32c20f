"""The DAG's planning (genreflow.plan) without Snakemake: which jobs exist, where their
files are. tests/test_workflow.py and the stage workflow tests check that the rules use it."""

import pytest

from genreflow import plan


def test_screening_pairs_are_image_backbones_by_features_then_audio_backbones_on_audio():
    assert plan.screening_pairs(["vgg16", "resnet50"], ["musicnn_msd"], ["mel", "stft"]) == [
        ("vgg16", "mel"), ("vgg16", "stft"), ("resnet50", "mel"), ("resnet50", "stft"),
        ("musicnn_msd", "audio"),
    ]
    assert plan.screening_pairs([], ["musicnn_msd"], ["mel"]) == [("musicnn_msd", "audio")]


def test_the_baseline_cnn_joins_the_chains_on_the_best_image_feature():
    chosen = [("musicnn_msd", "audio"), ("vgg16", "chroma"), ("resnet50", "mel")]
    on = {"enabled": True, "feature": "best"}
    assert plan.tuning_pairs(chosen, on) == [*chosen, ("baseline_cnn", "chroma")]
    assert plan.tuning_pairs(chosen, {**on, "feature": "mfcc"})[-1] == ("baseline_cnn", "mfcc")
    assert plan.tuning_pairs(chosen, {**on, "enabled": False}) == chosen


def test_a_best_baseline_feature_without_an_image_model_is_a_plan_error():
    with pytest.raises(plan.PlanError, match="names no image type; lower screening.min_f1"):
        plan.tuning_pairs([("musicnn_msd", "audio")], {"enabled": True, "feature": "best"})


def test_every_round_of_every_chain_is_a_final_model():
    rounds = {"vgg16": 3, "baseline_cnn": 2}
    models = plan.final_models([("vgg16", "mel"), ("baseline_cnn", "mel")], rounds.get)
    assert models == [("vgg16", "mel", 0), ("vgg16", "mel", 1), ("vgg16", "mel", 2),
                      ("baseline_cnn", "mel", 0), ("baseline_cnn", "mel", 1)]


def test_model_inputs_by_family():
    assert plan.model_inputs("vgg16", "mel") == {
        "index": "results/features/mel/index.csv",
        "embeddings": "results/embeddings/vgg16/mel.npz",
    }
    assert plan.model_inputs("musicnn_msd", "audio") == {
        "embeddings": "results/embeddings/musicnn_msd/audio.npz"
    }
    assert plan.model_inputs("baseline_cnn", "stft") == {
        "index": "results/features/stft/index.csv"
    }


def test_weights_inputs():
    assert plan.weights_input("imagenet", "resnet50") == {
        "weights": "resources/weights/resnet50/imagenet_notop.h5"
    }
    assert plan.weights_input("/models/mine.h5", "vgg16") == {"weights": "/models/mine.h5"}
    for weights, backbone in [("none", "vgg16"), ("imagenet", "musicnn_msd"),
                              ("imagenet", "baseline_cnn")]:
        assert plan.weights_input(weights, backbone) == {}


def test_segment_rows_reuse_the_main_runs_screening_at_its_own_length():
    rows = plan.segment_rows(["whole", "3s"], [("vgg16", "mel"), ("musicnn_msd", "audio")])
    assert [(r["length"], r["backbone"]) for r in rows] == [
        ("whole", "vgg16"), ("whole", "musicnn_msd"), ("3s", "vgg16"), ("3s", "musicnn_msd")]
    assert plan.segment_file(rows[0], "whole", "metrics.json") == (
        "results/screening/vgg16/mel/metrics.json")
    assert plan.segment_file(rows[2], "whole", "metrics.json") == (
        "results/segments/3s/screening/vgg16/mel/metrics.json")
    assert plan.segment_file(rows[0], "3s", "metrics.json") == (
        "results/segments/whole/screening/vgg16/mel/metrics.json")


def test_file_layout():
    assert plan.split_manifests() == {split: f"results/splits/{split}.csv"
                                      for split in ("train", "valid", "test")}
    assert plan.round_file("vgg16", "mel", 2, "best_trial.json") == (
        "results/tuning/vgg16/mel/round_2/best_trial.json")
    folder = plan.final_folder("vgg16", "mel", 1)
    assert folder == "results/final/vgg16/mel/round_1"
    assert plan.seed_files(folder, [0, 7], "model.keras") == [
        "results/final/vgg16/mel/round_1/seed_0/model.keras",
        "results/final/vgg16/mel/round_1/seed_7/model.keras",
    ]
    assert plan.bundle_folder(plan.model_id("vgg16", "mel", 1)) == (
        "results/export/vgg16/mel/round_1")
