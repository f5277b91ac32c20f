import os
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from genreflow import GENRES
from genreflow.evaluation import (
    BASELINE,
    check_best_trial,
    combine_seeds,
    final_about,
    format_mean_std,
    backbone_statistics,
    mean_std,
    parse_best_trial_path,
    summarize_final,
    summary_table,
    table5_markdown,
    track_predictions,
    train_final,
)
from genreflow.io import read_json, write_json
from genreflow.models import backbone_spec, build_classifier, seed_everything
from genreflow.screening import SPLITS, caveats

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)

SIZE = 32
HEAD_KEYS = ("dense_layers", "units", "dropout", "activation", "batch_norm",
             "trainable_layers", "learning_rate")
RUN_ABOUT = {"corpus": "synthetic", "weights": "none", "pretrained": False}


# ----------------------------------------------------------------------------- helpers


def _corpus(root, segments):
    """10 genres x 3 clips (one per split), `segments` images per clip, 32x32 PNGs whose
    brightness depends on the genre, the feature index and the split manifests."""
    rng = np.random.default_rng(0)
    rows, manifests = [], {split: [] for split in SPLITS}
    for g, genre in enumerate(GENRES):
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
    index = root / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    paths = {}
    for split, members in manifests.items():
        paths[split] = str(root / f"{split}.csv")
        pd.DataFrame(members).to_csv(paths[split], index=False)
    return str(index), paths


def _best_trial(path, backbone, feature="mel", round_=1, epochs=2, **params):
    best = {
        "backbone": backbone, "feature": feature, "round": round_,
        "params": {"batch_size": 8, "epochs": epochs, **params},
        "inherited": {}, "fixed": {}, "value": 0.5, "objective": "valid_macro_f1",
        "trial_number": 3, "n_complete": 4, "n_pruned": 1, "n_failed": 0,
        "sampler": "TPE", "seed": 0,
    }
    write_json(path, best)
    return str(path)


def small_classifier(best, image_size, weights_path, n_classes, stats=None):
    """Stand-in for genreflow.tuning.build_model_from_best: a randomly initialised
    VGG16 at 32 px with the best trial's head."""
    head = {key: value for key, value in best["params"].items() if key in HEAD_KEYS}
    return build_classifier(best["backbone"], image_size, weights_path, head,
                            n_classes=n_classes, stats=stats)


def tiny_cnn(best, image_size, weights_path, n_classes, stats=None):
    """Stand-in for the baseline CNN, with one gray input channel as the contract says.

    Its output does not depend on training (learning rate 0): softmax over minus the
    squared distance of the image's mean level to each genre's level in `_corpus`, i.e.
    logits linear in the mean. Its predictions are therefore known, whatever the seed.
    """
    inputs = keras.Input(shape=(image_size, image_size, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    centres = (20 + 22 * np.arange(n_classes)) / 255.0
    sharpness = 300.0
    dense = keras.layers.Dense(n_classes, activation="softmax")
    model = keras.Model(inputs, dense(mean))
    dense.set_weights([(2 * sharpness * centres)[None, :].astype("float32"),
                       (-sharpness * centres**2).astype("float32")])
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _gray_unit(rgb):
    return rgb[..., :1] / 255.0


def small_data(best, index_csv, manifests, image_size, genres, seed, batch_size=8):
    """Stand-in for genreflow.tuning.training_data: the split datasets, as each model
    wants its input (backbone preprocess_input; one gray channel in 0..1 for the baseline)."""
    from genreflow.data import examples_for_split, image_dataset

    backbone = best["backbone"]
    preprocess = (_gray_unit if backbone == BASELINE
                  else backbone_spec(backbone).preprocess_input)
    examples = {split: examples_for_split(index_csv, manifests[split]) for split in SPLITS}
    datasets = {
        split: image_dataset(list(frame["image"]), frame["label"].to_numpy(), image_size,
                             batch_size, split == "train", seed, preprocess)
        for split, frame in examples.items()
    }
    return SimpleNamespace(**datasets, examples=examples)


def _train_seeds(folder, best_json, index, manifests, about, seeds, build_model,
                 patience=3, build_data=small_data):
    outputs = {"metrics": [], "predictions": [], "history": []}
    for seed in seeds:
        seed_dir = folder / f"seed_{seed}"
        paths = {name: str(seed_dir / name) for name in
                 ("metrics.json", "predictions.csv", "history.csv", "model.keras")}
        train_final(
            best_json, seed, index, manifests, SIZE, None, GENRES, about,
            {"epochs": None, "patience": patience},
            paths["metrics.json"], paths["predictions.csv"], paths["history.csv"],
            paths["model.keras"], build_model=build_model, build_data=build_data,
            log=lambda message: None,
        )
        outputs["metrics"].append(paths["metrics.json"])
        outputs["predictions"].append(paths["predictions.csv"])
        outputs["history"].append(paths["history.csv"])
    combined = {name: str(folder / name) for name in
                ("metrics.json", "predictions.csv", "history.csv")}
    combine_seeds(outputs["metrics"], outputs["predictions"], outputs["history"], GENRES,
                  combined["metrics.json"], combined["predictions.csv"],
                  combined["history.csv"], log=lambda message: None)
    return combined


def _sklearn_scores(frame):
    labels = list(GENRES)
    return (
        f1_score(frame["true"], frame["predicted"], labels=labels, average="macro",
                 zero_division=0),
        accuracy_score(frame["true"], frame["predicted"]),
    )


@pytest.fixture(scope="module")
def vgg_run(tmp_path_factory):
    """VGG16 (random init, 32 px) final model, two seeds, whole clips."""
    root = tmp_path_factory.mktemp("vgg_run")
    index, manifests = _corpus(root, segments=1)
    best = _best_trial(root / "best_trial.json", "vgg16", epochs=6, dense_layers=1, units=8,
                       dropout=0.1, learning_rate=1e-2, trainable_layers=0)
    about = final_about(RUN_ABOUT, "vgg16", "mel", 1)
    combined = _train_seeds(root / "final", best, index, manifests, about, (0, 1),
                            small_classifier)
    summary = root / "summary.csv"
    summarize_final([combined["metrics.json"]], RUN_ABOUT, str(summary),
                    str(root / "table5.md"), str(root / "scores.png"),
                    log=lambda message: None)
    return root, combined, pd.read_csv(summary), manifests


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory):
    """Baseline stand-in, one seed, clips cut into 3 segments."""
    root = tmp_path_factory.mktemp("segment_run")
    index, manifests = _corpus(root, segments=3)
    best = _best_trial(root / "best_trial.json", BASELINE, round_=2, epochs=1)
    about = final_about(RUN_ABOUT, BASELINE, "mel", 2)
    combined = _train_seeds(root / "final", best, index, manifests, about, (7,), tiny_cnn)
    summary = root / "summary.csv"
    summarize_final([combined["metrics.json"]], RUN_ABOUT, str(summary),
                    str(root / "table5.md"), str(root / "scores.png"),
                    log=lambda message: None)
    return root, combined, pd.read_csv(summary)


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
    valid = predictions[predictions["split"] == "valid"]
    valid_f1 = [_sklearn_scores(group)[0] for _, group in valid.groupby("seed")]
    assert row["valid_macro_f1_mean"] == pytest.approx(np.mean(valid_f1), abs=1e-12)
    # Whole clips: no segment-level scores.
    assert pd.isna(row["test_segment_macro_f1_mean"])


def test_final_model_files(vgg_run):
    root, combined, summary, manifests = vgg_run
    metrics = read_json(combined["metrics.json"])
    assert metrics["seeds"] == [0, 1] and metrics["n_seeds"] == 2
    assert metrics["model"] == "VGG16 + mel spectrogram"
    assert metrics["pretrained"] is False and metrics["corpus"] == "synthetic"
    assert metrics["tuning"]["value"] == 0.5 and metrics["params"]["units"] == 8
    per_class = metrics["test"]["tracks"]["per_class"]
    assert set(per_class) == set(GENRES)
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
    assert (root / "scores.png").stat().st_size > 0
    assert summary.loc[0, "seeds"] == "0 1"


def test_saved_model_reproduces_its_predictions(vgg_run):
    from genreflow.models import predict_proba

    root, combined, _, manifests = vgg_run
    model = keras.models.load_model(root / "final" / "seed_1" / "model.keras")
    best = read_json(root / "best_trial.json")
    data = small_data(best, str(root / "index.csv"), manifests, SIZE, GENRES, seed=0)
    probabilities = predict_proba(model, data.test)
    saved = pd.read_csv(root / "final" / "seed_1" / "predictions.csv", dtype={"clip": str})
    saved = saved[saved["split"] == "test"]
    np.testing.assert_allclose(
        saved[[f"p_{genre}" for genre in GENRES]].to_numpy(), probabilities, atol=2e-6
    )


def test_seeds_give_different_runs(vgg_run):
    root, _, _, manifests = vgg_run
    first = pd.read_csv(root / "final" / "seed_0" / "history.csv")
    second = pd.read_csv(root / "final" / "seed_1" / "history.csv")
    assert not np.allclose(first["loss"], second["loss"])


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
    tracks = track_predictions(test, GENRES)
    assert (track_f1 := _sklearn_scores(tracks)[0]) != segment_f1  # the levels differ here
    track_f1, track_accuracy = _sklearn_scores(tracks)
    assert row["test_macro_f1_mean"] == pytest.approx(track_f1, abs=1e-12)
    assert row["test_accuracy_mean"] == pytest.approx(track_accuracy, abs=1e-12)
    assert pd.isna(row["test_macro_f1_std"])  # one seed: no spread
    metrics = read_json(combined["metrics.json"])
    assert metrics["segmented"] is True and metrics["round"] == 2
    assert "pretrained" not in metrics  # the baseline has no backbone to pretrain
    table = (root / "table5.md").read_text()
    assert "test macro-F1 (tracks)" in table and "test macro-F1 (segments)" in table
    assert "one seed, so no spread" in table


# ------------------------------------------------------------ track-level aggregation


def test_track_predictions_average_segment_probabilities():
    genres = ("blues", "jazz", "rock")
    # Track a: two of three segments vote jazz, but the averaged probabilities pick
    # blues (0.567 vs 0.433); track b has a single segment.
    frame = pd.DataFrame({
        "seed": 0, "split": "test",
        "clip": ["a", "a", "a", "b"],
        "segment": [0, 1, 2, 0],
        "true": ["blues", "blues", "blues", "rock"],
        "predicted": ["blues", "jazz", "jazz", "jazz"],
        "p_blues": [0.9, 0.4, 0.4, 0.1],
        "p_jazz": [0.1, 0.6, 0.6, 0.5],
        "p_rock": [0.0, 0.0, 0.0, 0.4],
    })
    tracks = track_predictions(frame, genres)
    assert list(tracks["clip"]) == ["a", "b"]
    assert list(tracks["predicted"]) == ["blues", "jazz"]
    assert list(tracks["true"]) == ["blues", "rock"]
    np.testing.assert_allclose(tracks.loc[0, ["p_blues", "p_jazz", "p_rock"]].to_numpy(
        dtype=float), [1.7 / 3, 1.3 / 3, 0.0])
    assert set(tracks["seed"]) == {0} and set(tracks["split"]) == {"test"}


def test_track_predictions_refuse_disagreeing_labels():
    frame = pd.DataFrame({"clip": ["a", "a"], "true": ["blues", "jazz"],
                          "p_blues": [0.5, 0.5], "p_jazz": [0.5, 0.5]})
    with pytest.raises(ValueError, match="disagree"):
        track_predictions(frame, ("blues", "jazz"))


# ------------------------------------------------------------------- small pieces


def test_mean_std():
    assert mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    stats = mean_std([0.6, 0.8, 0.7])
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["std"] == pytest.approx(0.1)
    assert format_mean_std(0.7, 0.1) == "0.700 ± 0.100"
    assert format_mean_std(0.7, None) == "0.700"


def _record(path, backbone, feature, round_, f1s, segmented=False):
    record = {
        "backbone": backbone, "feature": feature, "round": round_,
        "model": f"{backbone} + {feature}", "seeds": list(range(len(f1s))),
        "n_seeds": len(f1s), "corpus": "gtzan", "weights": "imagenet", "pretrained": True,
        "tuning": {"objective": "valid_macro_f1", "value": 0.9},
        "test_macro_f1_mean": float(np.mean(f1s)),
        "test_macro_f1_std": mean_std(f1s)["std"],
        "test_accuracy_mean": 0.5, "test_accuracy_std": None,
        "valid_macro_f1_mean": 0.5, "valid_macro_f1_std": None,
        "valid_accuracy_mean": 0.5, "valid_accuracy_std": None,
    }
    if segmented:
        record |= {"test_segment_macro_f1_mean": 0.4, "test_segment_macro_f1_std": 0.01}
    write_json(path, record)
    return str(path)


def test_summary_table_and_table5_best_first(tmp_path):
    paths = [
        _record(tmp_path / "a.json", "vgg16", "mel", 1, [0.70, 0.72]),
        _record(tmp_path / "b.json", "vgg16", "mel", 2, [0.80, 0.84]),
        _record(tmp_path / "c.json", BASELINE, "mel", 1, [0.40, 0.50]),
    ]
    summary = summary_table(paths)
    assert list(summary["round"]) == [2, 1, 1]
    assert list(summary["backbone"]) == ["vgg16", "vgg16", BASELINE]
    table = table5_markdown(summary, [])
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == "| rank | model | round | test macro-F1 | test accuracy | seeds |"
    assert lines[1].startswith("| 1 | vgg16 + mel | 2 | 0.820 ± 0.028 |")
    assert lines[3].startswith(f"| 3 | {BASELINE} + mel | 1 | 0.450 ± 0.071 |")
    assert "mean ± sample sd over 2 seeds" in table
    assert ">" not in table  # no caveats for a pretrained GTZAN run


def test_table5_with_segments(tmp_path):
    summary = summary_table([_record(tmp_path / "a.json", "vgg16", "mel", 1, [0.7, 0.8],
                                     segmented=True)])
    table = table5_markdown(summary, caveats({"corpus": "synthetic"}))
    assert table.startswith("> **SYNTHETIC DEMO CORPUS")
    assert "| 1 | vgg16 + mel | 1 | 0.750 ± 0.071 | 0.400 ± 0.010 | 0.500 | 2 |" in table


def test_combine_seeds_refuses_mixed_models(tmp_path):
    a = _record(tmp_path / "a.json", "vgg16", "mel", 1, [0.7])
    b = _record(tmp_path / "b.json", "vgg16", "mel", 2, [0.7])
    with pytest.raises(ValueError, match="different models"):
        combine_seeds([a, b], [], [], GENRES, "m", "p", "h")


def test_check_best_trial_matches_the_job():
    best = {"backbone": "vgg16", "feature": "mel", "round": 2, "params": {}}
    check_best_trial(best, {"backbone": "vgg16", "feature": "mel", "round": 2}, "x")
    with pytest.raises(ValueError, match="round is 2"):
        check_best_trial(best, {"backbone": "vgg16", "feature": "mel", "round": 1}, "x")


def test_parse_best_trial_path():
    assert parse_best_trial_path(
        "results/tuning/baseline_cnn/mel/round_3/best_trial.json"
    ) == (BASELINE, "mel", 3)
    with pytest.raises(ValueError):
        parse_best_trial_path("results/tuning/vgg16/mel/best_trial.json")


def test_final_about_and_caveats():
    about = final_about(RUN_ABOUT, "vgg16", "mel", 1)
    assert about["pretrained"] is False and about["round"] == 1
    assert [note.split(":")[0] for note in caveats(about)] == [
        "IMAGE BACKBONES NOT PRETRAINED", "SYNTHETIC DEMO CORPUS"]
    baseline = final_about(RUN_ABOUT, BASELINE, "mel", 1)
    assert baseline["weights"] == "from scratch"
    assert [note.split(":")[0] for note in caveats(baseline)] == ["SYNTHETIC DEMO CORPUS"]


def test_backbone_statistics_come_from_the_models_own_backbone(vgg_run):
    root, _, _, _ = vgg_run
    images = sorted(str(path) for path in (root / "images").glob("*.png"))[:6]
    best = read_json(root / "best_trial.json")
    seed_everything(5)
    probe = small_classifier(best, SIZE, None, 10)
    mean, variance = backbone_statistics(probe, "vgg16", images, SIZE, batch_size=4)
    assert mean.shape == variance.shape == (512,)
    # The same seed draws the same random backbone, so the statistics fit the rebuilt model.
    seed_everything(5)
    again = small_classifier(best, SIZE, None, 10, stats=(mean, variance))
    for a, b in zip(probe.get_layer("backbone").get_weights(),
                    again.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert backbone_statistics(tiny_cnn(best, SIZE, None, 10), BASELINE, images, SIZE) is None


@pytest.mark.parametrize("backbone", ["vgg16", BASELINE])
def test_default_builders_are_the_tuning_stages(tmp_path, backbone):
    """The contract with genreflow.tuning: its model and data builders, unchanged."""
    pytest.importorskip("genreflow.tuning")
    index, manifests = _corpus(tmp_path, segments=1)
    params = (
        {"dense_layers": 1, "units": 8, "dropout": 0.1, "activation": "relu",
         "batch_norm": False, "trainable_layers": 0, "learning_rate": 1e-3}
        if backbone == "vgg16" else
        {"conv_layers": 1, "kernels": 4, "dense_layers": 1, "units": 8}
    )
    best = _best_trial(tmp_path / "best_trial.json", backbone, epochs=1, **params)
    out = {name: str(tmp_path / name) for name in
           ("metrics.json", "predictions.csv", "history.csv", "model.keras")}
    train_final(best, 3, index, manifests, SIZE, None, GENRES,
                final_about(RUN_ABOUT, backbone, "mel", 1), {"epochs": None, "patience": 2},
                out["metrics.json"], out["predictions.csv"], out["history.csv"],
                out["model.keras"], log=lambda message: None)
    metrics = read_json(out["metrics.json"])
    assert metrics["epochs_run"] == 1 and metrics["seed"] == 3
    predictions = pd.read_csv(out["predictions.csv"])
    assert len(predictions) == 20 and set(predictions["split"]) == {"valid", "test"}
