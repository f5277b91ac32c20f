"""The final evaluation without Snakemake: final models trained by the tuning stage's own
builders and rule, seeds combined, models ranked by validation with intervals on the test
scores."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from genreflow.evaluation.seeds import combine_seeds, format_mean_std, mean_std
from genreflow.evaluation.summary import summarize_final, summary_table, table5_markdown
from genreflow.evaluation.train import check_best_trial, train_final
from genreflow.intervals import Bootstrap
from genreflow.io import read_json, save_embeddings, write_json
from genreflow.models.backbones import compute_embeddings
from genreflow.models.data import ModelInputs, ModelSettings
from genreflow.models.train import predict_proba
from genreflow.names import BASELINE, GTZAN_GENRES, SPLITS
from genreflow.run_info import caveats, final_about
from genreflow.scoring import genre_labels, track_predictions

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)

SIZE = 32
RUN_ABOUT = {"corpus": "synthetic", "split": "random", "weights": "none",
             "weights_source": "none", "pretrained": False}
SETTINGS = ModelSettings(genres=GTZAN_GENRES, image_size=SIZE, patience=3, weights="none",
                         backbone_seed=0)
BOOTSTRAP = {"resamples": 1000, "confidence": 0.95, "seed": 0}


# ----------------------------------------------------------------------------- helpers


def _corpus(root, segments):
    """10 genres x 3 clips (one per split), `segments` images per clip, 32x32 PNGs whose
    brightness depends on the genre, the feature index, the split manifests and the
    embedding cache of a randomly initialised VGG16 (seed 0), as embed_images makes it."""
    rng = np.random.default_rng(0)
    rows, manifests = [], {split: [] for split in SPLITS}
    for g, genre in enumerate(GTZAN_GENRES):
        for c, split in enumerate(SPLITS):
            clip = f"{genre}.0000{c}"
            manifests[split].append({"clip": clip, "genre": genre})
            for segment in range(segments):
                # Segments of a track differ in level, so that they can disagree.
                base = 20 + 22 * g + rng.normal(0, 12)
                pixels = np.clip(base + rng.normal(0, 8, (SIZE, SIZE)), 0, 255)
                path = root / "images" / f"{clip}_{segment}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8), mode="L").save(path)
                rows.append({"clip": clip, "segment": segment, "genre": genre,
                             "image": str(path)})
    index = pd.DataFrame(rows)
    index.to_csv(root / "index.csv", index=False)
    paths = {}
    for split, members in manifests.items():
        paths[split] = str(root / f"{split}.csv")
        pd.DataFrame(members).to_csv(paths[split], index=False)
    embeddings = compute_embeddings("vgg16", SIZE, None, list(index["image"]), batch_size=8, seed=0)
    save_embeddings(root / "vgg16.npz", embeddings, index["clip"], index["segment"],
                    genre_labels(index["genre"], GTZAN_GENRES, "index"))
    return str(root / "index.csv"), str(root / "vgg16.npz"), paths


def _best_trial(path, backbone, feature="mel", round_=1, epochs=2, **params):
    best = {
        "backbone": backbone, "feature": feature, "round": round_,
        "params": {"batch_size": 8, "epochs": epochs, **params},
        "inherited": {}, "fixed": {}, "value": 0.5, "objective": "valid_macro_f1",
        "trial_number": 3, "n_complete": 4, "n_pruned": 1, "n_failed": 0,
        "sampler": "TPE", "seed": 0, "patience": 3,
    }
    write_json(path, best)
    return str(path)


HEAD = {"dense_layers": 1, "units": 16, "dropout": 0.1, "activation": "relu",
        "batch_norm": False, "learning_rate": 1e-2}


def _outputs(files):
    """train_final's `out` from a dict of file name -> path."""
    return {"metrics": files["metrics.json"], "predictions": files["predictions.csv"],
            "history": files["history.csv"], "model": files["model.keras"]}


def _train_seeds(folder, best_json, data, about, seeds, settings=SETTINGS):
    index, embeddings, manifests = data
    outputs = {"metrics": [], "predictions": [], "history": []}
    for seed in seeds:
        seed_dir = folder / f"seed_{seed}"
        paths = {name: str(seed_dir / name) for name in
                 ("metrics.json", "predictions.csv", "history.csv", "model.keras")}
        train_final(
            best_json, seed, ModelInputs(manifests, index, embeddings), settings, about,
            {"epochs": None, "patience": None},
            _outputs(paths),
            log=lambda message: None,
        )
        for name in outputs:
            outputs[name].append(paths[f"{name}.json" if name == "metrics" else f"{name}.csv"])
    combined = {name: str(folder / name) for name in
                ("metrics.json", "predictions.csv", "history.csv")}
    combine_seeds(outputs["metrics"], outputs["predictions"], outputs["history"], GTZAN_GENRES,
                  combined["metrics.json"], combined["predictions.csv"],
                  combined["history.csv"], log=lambda message: None)
    return combined


def _summarize(root, combined):
    from genreflow.evaluation.calibration import calibrate_final

    summary = root / "summary.csv"
    calibration = str(root / "calibration.json")
    calibrate_final(combined["predictions.csv"], GTZAN_GENRES, 10, read_json(combined["metrics.json"]),
                    [], calibration, str(root / "reliability.png"), log=lambda message: None)
    summarize_final([combined["metrics.json"]], [combined["predictions.csv"]], [calibration],
                    RUN_ABOUT, GTZAN_GENRES, BOOTSTRAP, str(summary), str(root / "table5.md"),
                    str(root / "table5.html"), str(root / "scores.png"), str(root / "headline.json"),
                    log=lambda message: None)
    return pd.read_csv(summary)


def _sklearn_scores(frame):
    labels = list(GTZAN_GENRES)
    return (
        f1_score(frame["true"], frame["predicted"], labels=labels, average="macro",
                 zero_division=0),
        accuracy_score(frame["true"], frame["predicted"]),
    )


@pytest.fixture(scope="module")
def vgg_run(tmp_path_factory):
    """VGG16 (random init, 32 px) with a frozen backbone, two seeds, whole clips."""
    root = tmp_path_factory.mktemp("vgg_run")
    data = _corpus(root, segments=1)
    best = _best_trial(root / "best_trial.json", "vgg16", epochs=6, trainable_layers=0, **HEAD)
    about = final_about(RUN_ABOUT, "vgg16", "mel", 1)
    combined = _train_seeds(root / "final", best, data, about, (0, 1))
    return root, combined, _summarize(root, combined), data


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory):
    """The same frozen VGG16, one seed, clips cut into 3 segments."""
    root = tmp_path_factory.mktemp("segment_run")
    data = _corpus(root, segments=3)
    best = _best_trial(root / "best_trial.json", "vgg16", round_=2, epochs=6,
                       trainable_layers=0, **HEAD)
    about = final_about(RUN_ABOUT, "vgg16", "mel", 2)
    combined = _train_seeds(root / "final", best, data, about, (7,))
    return root, combined, _summarize(root, combined)


# ------------------------------------------------------------------- final training


def test_summary_f1_equals_sklearn_on_predictions(vgg_run):
    _, combined, summary, _ = vgg_run
    predictions = pd.read_csv(combined["predictions.csv"], dtype={"clip": str})
    test = predictions[predictions["split"] == "test"]
    per_seed = [_sklearn_scores(group) for _, group in test.groupby("seed")]
    f1s, accuracies = zip(*per_seed)
    row = summary.iloc[0]
    assert sorted(test["seed"].unique()) == [0, 1]
    assert test["predicted"].nunique() > 1  # a model that learnt something
    assert row["test_macro_f1_mean"] == pytest.approx(np.mean(f1s), abs=1e-12)
    assert row["test_macro_f1_std"] == pytest.approx(np.std(f1s, ddof=1), abs=1e-12)
    assert row["test_accuracy_mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    # one test track per genre: a stratified bootstrap cannot resample it, so no interval
    assert pd.isna(row["test_macro_f1_low"]) and pd.isna(row["test_macro_f1_high"])
    valid = predictions[predictions["split"] == "valid"]
    valid_f1 = [_sklearn_scores(group)[0] for _, group in valid.groupby("seed")]
    assert row["valid_macro_f1_mean"] == pytest.approx(np.mean(valid_f1), abs=1e-12)
    # Whole clips: no segment-level scores.
    assert pd.isna(row["test_segment_macro_f1_mean"])


def test_final_model_files(vgg_run):
    root, combined, summary, _ = vgg_run
    metrics = read_json(combined["metrics.json"])
    assert metrics["seeds"] == [0, 1] and metrics["n_seeds"] == 2
    assert metrics["model"] == "VGG16 + mel spectrogram"
    assert metrics["pretrained"] is False and metrics["corpus"] == "synthetic"
    assert metrics["tuning"]["value"] == 0.5 and metrics["params"]["units"] == 16
    assert metrics["trained_on"] == "embeddings" and metrics["patience"] == 3
    per_class = metrics["test"]["tracks"]["per_class"]
    assert set(per_class) == set(GTZAN_GENRES)
    assert set(per_class["jazz"]) == {"precision", "recall", "f1", "support"}
    assert set(per_class["jazz"]["f1"]) == {"mean", "std", "n"}
    pooled = np.asarray(metrics["test"]["tracks"]["confusion_matrix_pooled"])
    assert pooled.sum() == 2 * 10  # two seeds x ten test clips
    history = pd.read_csv(combined["history.csv"])
    assert list(history.columns) == ["seed", "epoch", "loss", "accuracy", "val_loss",
                                     "val_accuracy"]
    assert set(history["seed"]) == {0, 1}
    table = (root / "table5.md").read_text()
    assert "**IMAGE BACKBONES NOT PRETRAINED" in table and "**SYNTHETIC DEMO CORPUS" in table
    assert "| 1 | VGG16 + mel spectrogram | 1 |" in table and " ± " in table
    assert "The test columns were not used to choose" in table
    # the report's page of the same table: rows as HTML table rows, caveats in bold
    page = (root / "table5.html").read_text()
    assert "<td>1</td><td>VGG16 + mel spectrogram</td><td>1</td>" in page
    assert "<b>IMAGE BACKBONES NOT PRETRAINED" in page and "|" not in page.split("<table>")[1]
    assert (root / "scores.png").stat().st_size > 0
    assert summary.loc[0, "seeds"] == "0 1"
    headline = read_json(root / "headline.json")
    assert headline["model"] == "VGG16 + mel spectrogram" and headline["round"] == 1
    # the chosen model's calibration, as its calibration.json says, for the front page
    calibration = read_json(root / "calibration.json")
    assert headline["calibration"]["test_ece_after"] == pytest.approx(calibration["test_ece_after"])
    assert headline["calibration"]["temperatures"] == pytest.approx(
        [calibration["temperatures"][str(seed)] for seed in (0, 1)], abs=1e-4)
    assert headline["test_macro_f1"]["mean"] == pytest.approx(summary.loc[0, "test_macro_f1_mean"])


def _assert_the_saved_model_gives_the_jobs_test_predictions(seed_dir, index, manifests):
    """model.keras takes images: on the test images it gives the job's predictions.csv."""
    from genreflow.models.backbones import backbone_spec
    from genreflow.models.images import image_dataset

    model = keras.models.load_model(seed_dir / "model.keras")
    assert model.input_shape == (None, SIZE, SIZE, 3)
    test = pd.read_csv(manifests["test"])
    images = pd.read_csv(index)
    images = images[images["clip"].isin(test["clip"])].sort_values(["clip", "segment"])
    dataset = image_dataset(list(images["image"]), None, SIZE, 8, False, 0,
                            backbone_spec("vgg16").preprocess_input)
    saved = pd.read_csv(seed_dir / "predictions.csv", dtype={"clip": str})
    saved = saved[saved["split"] == "test"]
    assert list(saved["clip"]) == list(images["clip"])
    np.testing.assert_allclose(
        saved[[f"p_{genre}" for genre in GTZAN_GENRES]].to_numpy(), predict_proba(model, dataset),
        atol=1e-4,
    )


def test_the_saved_full_model_predicts_test_images_as_its_head_on_the_cache(vgg_run):
    """A frozen backbone's head trains on the cached embeddings; model.keras is backbone +
    head and takes images: on the test images it gives the predictions.csv of the job."""
    root, _, _, (index, _, manifests) = vgg_run
    _assert_the_saved_model_gives_the_jobs_test_predictions(root / "final" / "seed_1", index,
                                                            manifests)


def test_seeds_give_different_runs(vgg_run):
    root, _, _, _ = vgg_run
    first = pd.read_csv(root / "final" / "seed_0" / "history.csv")
    second = pd.read_csv(root / "final" / "seed_1" / "history.csv")
    assert not np.allclose(first["loss"], second["loss"])


def test_a_fine_tuned_model_trains_on_cached_activations_and_saves_the_whole_model(
        vgg_run, tmp_path):
    """Its tail trains on the activations below it (float32, the default); model.keras is
    the whole network, which on the test images gives the predictions.csv the job scored."""
    _, _, _, data = vgg_run
    best = _best_trial(tmp_path / "best.json", "vgg16", epochs=2,
                       **{**HEAD, "trainable_layers": "last_block"})
    about = final_about(RUN_ABOUT, "vgg16", "mel", 1)
    combined = _train_seeds(tmp_path / "final", best, data, about, (0,))
    metrics = read_json(combined["metrics.json"])
    assert metrics["trained_on"] == "activations" and metrics["per_seed"][0]["epochs_run"] == 2
    index, _, manifests = data
    _assert_the_saved_model_gives_the_jobs_test_predictions(tmp_path / "final" / "seed_0",
                                                            index, manifests)


def test_segments_give_track_and_segment_scores(segment_run):
    root, combined, summary = segment_run
    predictions = pd.read_csv(combined["predictions.csv"], dtype={"clip": str})
    test = predictions[predictions["split"] == "test"]
    assert len(test) == 30 and test["clip"].nunique() == 10
    assert test["predicted"].nunique() > 1
    row = summary.iloc[0]
    segment_f1, segment_accuracy = _sklearn_scores(test)
    assert row["test_segment_macro_f1_mean"] == pytest.approx(segment_f1, abs=1e-12)
    assert row["test_segment_accuracy_mean"] == pytest.approx(segment_accuracy, abs=1e-12)
    tracks = track_predictions(test, GTZAN_GENRES)
    track_f1, track_accuracy = _sklearn_scores(tracks)
    assert row["test_macro_f1_mean"] == pytest.approx(track_f1, abs=1e-12)
    assert row["test_accuracy_mean"] == pytest.approx(track_accuracy, abs=1e-12)
    assert pd.isna(row["test_macro_f1_std"])  # one seed: no spread
    metrics = read_json(combined["metrics.json"])
    assert metrics["segmented"] is True and metrics["round"] == 2
    table = (root / "table5.md").read_text()
    assert "test macro-F1 (tracks)" in table and "test macro-F1 (segments)" in table
    assert "one seed, so no ± over seeds" in table


@pytest.mark.parametrize("backbone", ["vgg16", BASELINE])
def test_a_final_model_is_its_trials_model(tmp_path, backbone):
    """train_final builds with genreflow.tuning.trial_model: a head on the embeddings for a
    frozen backbone, the baseline CNN on one-channel images."""
    data = _corpus(tmp_path, segments=1)
    params = (
        {**HEAD, "trainable_layers": 0} if backbone == "vgg16" else
        {"conv_layers": 1, "kernels": 4, "kernel_size": 3, "stride": 1, "conv_dropout": 0.0,
         "conv_batch_norm": False, "activation": "relu", "dense_layers": 1, "units": 8,
         "dropout": 0.0, "batch_norm": False, "learning_rate": 1e-3}
    )
    best = _best_trial(tmp_path / "best_trial.json", backbone, epochs=1, **params)
    out = {name: str(tmp_path / name) for name in
           ("metrics.json", "predictions.csv", "history.csv", "model.keras")}
    settings = (SETTINGS if backbone != BASELINE
                else ModelSettings(genres=GTZAN_GENRES, image_size=SIZE, patience=2))
    index, embeddings, manifests = data
    train_final(best, 3,
                ModelInputs(manifests, index, embeddings if backbone != BASELINE else None),
                settings, final_about(RUN_ABOUT, backbone, "mel", 1),
                {"epochs": None, "patience": 2},
                _outputs(out),
                log=lambda message: None)
    metrics = read_json(out["metrics.json"])
    assert metrics["epochs_run"] == 1 and metrics["seed"] == 3 and metrics["patience"] == 2
    channels = 3 if backbone == "vgg16" else 1
    assert keras.models.load_model(out["model.keras"]).input_shape == (None, SIZE, SIZE, channels)
    predictions = pd.read_csv(out["predictions.csv"])
    assert len(predictions) == 20 and set(predictions["split"]) == {"valid", "test"}


# ------------------------------------------------------- choosing on validation, intervals


def _predictions(path, truth, predicted_by_seed, genres=("a", "b")):
    frames = []
    for seed, predicted in enumerate(predicted_by_seed):
        frame = pd.DataFrame({"seed": seed, "split": "test",
                              "clip": [f"t{i:02d}" for i in range(len(truth))], "segment": 0,
                              "true": [genres[i] for i in truth],
                              "predicted": [genres[i] for i in predicted]})
        for k, genre in enumerate(genres):
            frame[f"p_{genre}"] = (np.asarray(predicted) == k).astype(float)
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)
    return str(path)


def _record(path, backbone, round_, valid_f1, valid_loss, test_f1s):
    record = {
        "backbone": backbone, "feature": "mel", "round": round_,
        "model": f"{backbone} + mel", "seeds": list(range(len(test_f1s))),
        "n_seeds": len(test_f1s), "corpus": "gtzan", "weights": "imagenet", "pretrained": True,
        "tuning": {"objective": "valid_macro_f1", "value": 0.9},
        "test_macro_f1_mean": float(np.mean(test_f1s)), "test_macro_f1_std": mean_std(test_f1s)["std"],
        "test_accuracy_mean": 0.5, "test_accuracy_std": None,
        "valid_macro_f1_mean": valid_f1, "valid_macro_f1_std": None,
        "valid_loss_mean": valid_loss, "valid_accuracy_mean": 0.5,
    }
    write_json(path, record)
    return str(path)


TRUTH = [0] * 20 + [1] * 20


def _correct(n_wrong_per_ten):
    """Predictions of TRUTH (20 tracks per class: enough for an interval) with the first
    2n of each class wrong."""
    predicted = list(TRUTH)
    for start in (0, 20):
        for i in range(start, start + 2 * n_wrong_per_ten):
            predicted[i] = 1 - predicted[i]
    return predicted


def test_the_model_is_chosen_on_validation_not_on_test(tmp_path):
    """The test order (b best) differs from the validation order (a best; c ties a on
    validation macro-F1 with a higher loss): a is chosen, and every row carries its test
    interval and its paired difference to a."""
    records = [
        _record(tmp_path / "a.json", "vgg16", 1, 0.90, 0.30, [0.6]),
        _record(tmp_path / "b.json", "vgg16", 2, 0.80, 0.20, [0.9]),
        _record(tmp_path / "c.json", "resnet50", 1, 0.90, 0.40, [0.7]),
    ]
    predictions = [
        _predictions(tmp_path / "a.csv", TRUTH, [_correct(4)]),
        _predictions(tmp_path / "b.csv", TRUTH, [_correct(1)]),
        _predictions(tmp_path / "c.csv", TRUTH, [_correct(3)]),
    ]
    bootstrap = Bootstrap(1000, 0.95, 0)
    summary = summary_table(records, predictions, ("a", "b"), bootstrap)
    assert list(zip(summary["backbone"], summary["round"])) == [("vgg16", 1), ("resnet50", 1),
                                                               ("vgg16", 2)]
    assert list(summary["rank"]) == [1, 2, 3] and list(summary["chosen"]) == [True, False, False]
    assert pd.isna(summary.loc[0, "delta_macro_f1"])
    # b's test macro-F1 is 0.9, a's 0.6: the paired difference and its interval say so
    assert summary.loc[2, "delta_macro_f1"] == pytest.approx(0.9 - 0.6)
    assert 0 < summary.loc[2, "delta_macro_f1_low"] <= 0.3 <= summary.loc[2, "delta_macro_f1_high"]
    table = table5_markdown(summary, [], bootstrap)
    assert "**Chosen on validation: vgg16 + mel, round 1: test macro-F1 0.600 [" in table
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| rank | model | round | validation macro-F1 | test macro-F1 | "
                        "test accuracy | vs chosen (test macro-F1) | seeds |")
    assert lines[1].startswith("| 1 | vgg16 + mel | 1 | 0.900 | 0.600 [")
    assert lines[1].endswith("| (chosen) | 1 |")
    assert lines[3].startswith("| 3 | vgg16 + mel | 2 | 0.800 | 0.900 [")
    assert "+0.300 [" in lines[3]
    assert ">" not in table  # no caveats for a pretrained GTZAN run


def test_combine_seeds_refuses_mixed_models(tmp_path):
    a = _record(tmp_path / "a.json", "vgg16", 1, 0.5, 0.1, [0.7])
    b = _record(tmp_path / "b.json", "vgg16", 2, 0.5, 0.1, [0.7])
    with pytest.raises(ValueError, match="different models"):
        combine_seeds([a, b], [], [], GTZAN_GENRES, "m", "p", "h")


# ------------------------------------------------------------------- small pieces


def test_mean_std():
    assert mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    stats = mean_std([0.6, 0.8, 0.7])
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["std"] == pytest.approx(0.1)
    assert format_mean_std(0.7, 0.1) == "0.700 ± 0.100"
    assert format_mean_std(0.7, None) == "0.700"


def test_check_best_trial_matches_the_job():
    best = {"backbone": "vgg16", "feature": "mel", "round": 2, "params": {}}
    check_best_trial(best, {"backbone": "vgg16", "feature": "mel", "round": 2}, "x")
    with pytest.raises(ValueError, match="round is 2"):
        check_best_trial(best, {"backbone": "vgg16", "feature": "mel", "round": 1}, "x")


def test_final_about_and_caveats():
    about = final_about(RUN_ABOUT, "vgg16", "mel", 1)
    assert about["pretrained"] is False and about["round"] == 1
    assert [note.split(":")[0] for note in caveats(about)] == [
        "IMAGE BACKBONES NOT PRETRAINED", "SYNTHETIC DEMO CORPUS"]
    baseline = final_about(RUN_ABOUT, BASELINE, "mel", 1)
    assert baseline["weights"] == "from scratch"
    assert [note.split(":")[0] for note in caveats(baseline)] == ["SYNTHETIC DEMO CORPUS"]
