"""The end of a tiny full run: final models, the study's Table 5, figures and the report."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from conftest import snakemake

pytestmark = pytest.mark.workflow
MODELS = [("vgg16", "mel", 0), ("musicnn_msd", "audio", 0), ("baseline_cnn", "mel", 0)]


def test_every_final_model_has_its_files(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    for backbone, feature, n in MODELS:
        folder = workdir / f"results/final/{backbone}/{feature}/round_{n}"
        for name in ("metrics.json", "predictions.csv", "history.csv", "accuracy.png",
                     "loss.png", "confusion_matrix.png"):
            assert (folder / name).stat().st_size > 0, folder / name
        for seed in (0, 1):
            assert (folder / f"seed_{seed}/model.keras").stat().st_size > 0
        for name in ("optimization_history", "param_importances", "parallel_coordinate"):
            assert (workdir / f"results/tuning/{backbone}/{feature}/round_{n}/plots/{name}.png").exists()


def test_summary_f1_equals_sklearn_on_the_predictions(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    assert len(summary) == len(MODELS)
    test_clips = set(pd.read_csv(workdir / "results/splits/test.csv")["clip"])
    for backbone, feature, n in MODELS:
        row = summary[(summary["backbone"] == backbone) & (summary["feature"] == feature)].iloc[0]
        scores = []
        for seed in (0, 1):
            predictions = pd.read_csv(
                workdir / f"results/final/{backbone}/{feature}/round_{n}/seed_{seed}/predictions.csv"
            )
            test = predictions[predictions["split"] == "test"]
            assert set(test["clip"]) == test_clips
            labels = sorted(set(test["true"]))
            scores.append(f1_score(test["true"], test["predicted"], average="macro",
                                   labels=labels, zero_division=0))
            seed_metrics = json.loads((workdir / f"results/final/{backbone}/{feature}/round_{n}/seed_{seed}/metrics.json").read_text())
            assert seed_metrics["test"]["tracks"]["macro_f1"] == pytest.approx(scores[-1])
        assert row["test_macro_f1_mean"] == pytest.approx(sum(scores) / 2)
    table = (workdir / "results/final/table5.md").read_text()
    assert "vgg16" in table.lower() and "baseline" in table.lower() and "NOT PRETRAINED" in table
    assert "musicnn (MSD) + audio" in table


def test_report_zip_holds_every_figure(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    snakemake(workdir, "--report", "report.zip")
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        for expected in ("heatmap.png", "scores.png", "confusion_matrix.png", "accuracy.png",
                         "loss.png", "optimization_history.png", "table5.html", "comparison.png",
                         "comparison.html", "tables.html", "reliability.png"):
            assert any(name.endswith(expected) for name in names), expected
        # Table 5 is a page the report shows (HTML), not a Markdown download: its rows are
        # table rows, one per final model, the chosen one first
        page = archive.read(next(n for n in names if n.endswith("table5.html"))).decode()
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    for row in summary.itertuples():
        assert f"<td>{row.rank}</td><td>{row.model}</td><td>{row.round}</td>" in page


def test_the_musicnn_final_model_is_a_head_on_its_embeddings(tiny_gtzan_run):
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    workdir, _, _ = tiny_gtzan_run
    model = keras.models.load_model(
        workdir / "results/final/musicnn_msd/audio/round_0/seed_0/model.keras")
    assert model.input_shape == (None, 753)
    metrics = json.loads((workdir / "results/final/musicnn_msd/audio/round_0/metrics.json").read_text())
    assert metrics["pretrained"] is True and metrics["weights"] == "musicnn 0.1.0 MSD_musicnn"
    best = json.loads((workdir / "results/tuning/musicnn_msd/audio/round_0/best_trial.json").read_text())
    assert best["params"]["trainable_layers"] == 0


@pytest.mark.parametrize("model", ["vgg16/mel/round_0", "musicnn_msd/audio/round_0",
                                   "baseline_cnn/mel/round_0"])
def test_a_bundle_reproduces_its_final_models_test_predictions(tiny_gtzan_run, model, monkeypatch):
    """A test clip through the exported bundle, outside the workflow (musicnn in a process
    of its own), gives the probabilities the final model's job wrote for it, through the
    bundle's temperature: the bundle's preprocessing is the training pipeline's."""
    from genreflow.evaluation.calibration import temperature_scaled
    from genreflow.predict import load_bundle

    workdir, _, _ = tiny_gtzan_run
    snakemake(workdir, "--cores", "2", f"results/export/{model}/preprocessing.json")
    monkeypatch.chdir(workdir)
    bundle = load_bundle(f"results/export/{model}")
    seed = bundle.preprocessing["model"]["seed"]
    assert bundle.preprocessing["input"] == ("embedding" if "musicnn" in model else "image")
    predictions = pd.read_csv(f"results/final/{model}/seed_{seed}/predictions.csv")
    test = predictions[predictions["split"] == "test"].head(3)
    clips = pd.read_csv("results/corpus/clips.csv").set_index("clip")
    genres = bundle.preprocessing["genres"]
    for row in test.itertuples():
        result = bundle.predict_file(clips.loc[row.clip, "path"])
        assert result["windows"] == 1  # one window of audio.seconds: the training clip
        expected = temperature_scaled([getattr(row, f"p_{genre}") for genre in genres],
                                      bundle.temperature)
        np.testing.assert_allclose([result["probabilities"][g] for g in genres], expected, atol=2e-4)


def test_export_points_at_the_chosen_bundle_readable_by_all(tiny_gtzan_run, monkeypatch):
    """`snakemake export`: results/export/chosen.json names the bundle of the model chosen
    on validation, load_bundle("results/export") loads it, and model.keras has the file
    mode of any other result (it was 0600)."""
    import stat

    from genreflow.predict import load_bundle

    workdir, _, _ = tiny_gtzan_run
    snakemake(workdir, "--cores", "2", "export")
    headline = json.loads((workdir / "results/final/headline.json").read_text())
    chosen = json.loads((workdir / "results/export/chosen.json").read_text())
    model_id = f"{headline['backbone']}/{headline['feature']}/round_{headline['round']}"
    assert chosen["bundle"] == model_id and chosen["model"] == headline["model"]
    monkeypatch.chdir(workdir)
    bundle = load_bundle("results/export")
    assert bundle.path.resolve() == (workdir / "results/export" / model_id).resolve()
    mode = stat.S_IMODE((workdir / "results/export" / model_id / "model.keras").stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH
    readme = (workdir / "results/export" / model_id / "README.md").read_text()
    assert "predict_files" in readme and "requirements.lock" in readme


def test_predicting_with_a_model_the_run_does_not_tune_says_it_trains_it_first(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    tuned = set(zip(summary["backbone"], summary["feature"]))
    untuned = next(f"vgg16/{feature}/round_0" for feature in ("mfcc", "mel")
                   if ("vgg16", feature) not in tuned)
    _, output = snakemake(workdir, "-n", "export", "--config", f"predict={{model: {untuned}}}")
    assert f"predict.model {untuned} is not among the models this run tunes" in output
    assert "tune_round" in output and "train_final" in output
