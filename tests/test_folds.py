"""Less noisy model selection: track-level folds, cross-validated trial values, the
tie-breaker of step-valued objectives, and the k-fold screening protocol."""

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState, create_trial
from test_tuning import TRANSFER_DEFAULTS, separable_embeddings

from genreflow.journal import journal_storage
from genreflow.splits import track_folds
from genreflow.tuning.collect import best_trial
from genreflow.tuning.space import RoundPlan
from genreflow.tuning.study import claim_trial
from genreflow.tuning.trial import TrialRule, cv_pool
from genreflow.tuning.worker import RoundContext, cv_folds_for, run_trial

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _segments(n_tracks=40, per_track=3, n_genres=4, seed=0):
    rng = np.random.default_rng(seed)
    genres = rng.integers(0, n_genres, n_tracks)
    clips = np.repeat([f"t{i:03d}" for i in range(n_tracks)], per_track)
    return clips, np.repeat(genres, per_track)


def test_folds_keep_tracks_whole_are_stratified_seeded_and_stable():
    clips, labels = _segments()
    folds = track_folds(clips, labels, 4, seed=3)
    frame = pd.DataFrame({"clip": clips, "label": labels, "fold": folds})
    assert (frame.groupby("clip")["fold"].nunique() == 1).all()  # segments stay with the track
    tracks = frame.drop_duplicates("clip")
    per_fold = tracks.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_fold.max(axis=1) - per_fold.min(axis=1) <= 1).all()  # stratified by genre
    np.testing.assert_array_equal(track_folds(clips, labels, 4, seed=3), folds)
    assert track_folds(clips, labels, 4, seed=3).tobytes() == folds.tobytes()
    assert not np.array_equal(track_folds(clips, labels, 4, seed=4), folds)
    # the order of the rows does not change a track's fold
    order = np.random.default_rng(0).permutation(len(clips))
    np.testing.assert_array_equal(track_folds(clips[order], labels[order], 4, 3), folds[order])
    with pytest.raises(ValueError, match="at least 9 tracks of every genre"):
        track_folds(clips, labels, 9, 3)


def test_the_test_split_never_enters_the_folds():
    data = separable_embeddings()
    data.embeddings["test"] = np.zeros((5, 16), np.float32)
    data.embedding_rows["test"] = {"clip": np.array(["test0", "test1", "test2", "test3", "test4"]),
                                   "segment": np.zeros(5, int), "label": np.zeros(5, np.int32)}
    x, rows, folds = cv_pool(data, 3, seed=0)
    assert len(x) == 260 and not any(clip.startswith("test") for clip in rows["clip"])
    assert sorted(set(folds)) == [0, 1, 2]


def test_a_cross_validated_trial_is_the_mean_of_its_folds(tmp_path):
    data = separable_embeddings()
    study = optuna.create_study(storage=journal_storage(tmp_path / "s.journal", lambda m: None),
                                study_name="s", direction="maximize")
    plan = RoundPlan.from_config({"fixed": {"learning_rate": 0.02}, "n_trials": 1}, "transfer")
    trial = claim_trial(study, 1, 0, "x")
    context = RoundContext(plan, TRANSFER_DEFAULTS, {}, TrialRule(plan.objective, 8, 3), data=data)
    state = run_trial(study, trial, context, log=lambda m: None)
    assert state == TrialState.COMPLETE
    done = study.trials[0]
    folds = done.user_attrs["fold_values"]
    assert len(folds) == 3 and done.value == pytest.approx(np.mean(folds), abs=1e-6)
    assert done.value > 0.5  # separable: the folds learn it
    assert [step for step in sorted(done.intermediate_values)] == [0, 1, 2]  # one report a fold


def test_cv_applies_to_rounds_of_models_on_cached_inputs():
    folds, why = cv_folds_for("vgg16", 5)
    assert folds == 5 and "fine-tuning on cached activations" in why
    assert cv_folds_for("musicnn_msd", 5)[0] == 5
    assert cv_folds_for("baseline_cnn", 5) == (1, "the baseline CNN trains on images")
    assert cv_folds_for("vgg16", 1)[0] == 1


def _done(number, value, loss):
    trial = create_trial(value=value, user_attrs={"valid_loss": loss})
    trial.number = number
    return trial


def test_ties_of_a_step_valued_objective_go_to_the_lower_loss():
    trials = [_done(0, 0.8, 0.9), _done(1, 0.85, 0.7), _done(2, 0.85, 0.4), _done(3, 0.85, 0.6)]
    best, ties, broken_by = best_trial(trials, "valid_accuracy")
    assert best.number == 2 and ties == 3 and broken_by == "lowest validation loss"
    best, ties, broken_by = best_trial(trials[:2], "valid_macro_f1")
    assert best.number == 1 and ties == 1 and broken_by is None
    # a loss is minimised and is its own tie-breaker
    losses = [_done(0, 0.5, 0.5), _done(1, 0.3, 0.3), _done(2, 0.3, 0.3)]
    best, ties, broken_by = best_trial(losses, "valid_loss")
    assert best.number == 1 and ties == 2 and broken_by is None


def _kfold_screen(folder, x, clips, labels, genres):
    from genreflow.io import read_json, save_embeddings
    from genreflow.screening import screen_head

    folder.mkdir(exist_ok=True)
    save_embeddings(folder / "e.npz", x, clips, np.zeros(len(clips), int), labels)
    manifests = {}
    for split, members in (("train", slice(0, 40)), ("valid", slice(40, 50)), ("test", slice(50, 60))):
        manifests[split] = str(folder / f"{split}.csv")
        pd.DataFrame({"clip": clips[members], "genre": [genres[i] for i in labels[members]]}).to_csv(
            manifests[split], index=False)
    out = {name: str(folder / name) for name in ("m.json", "h.csv", "p.csv", "f.csv")}
    training = {"epochs": 20, "patience": 5, "batch_size": 16, "seed": 0, "protocol": "kfold", "folds": 5}
    screen_head(str(folder / "e.npz"), manifests,
                {"dense_layers": 1, "units": 16, "dropout": 0.0, "learning_rate": 0.01},
                training, genres, {"backbone": "vgg16", "feature": "mel"}, out["m.json"], out["h.csv"],
                out["p.csv"], out["f.csv"], log=lambda m: None)
    return read_json(out["m.json"]), pd.read_csv(out["f.csv"]), pd.read_csv(out["p.csv"])


def test_kfold_screening_chooses_on_folds_of_train_and_valid_and_tests_the_holdout_split(tmp_path):
    """The folds pool the train and validation tracks only: every one of them is scored
    once, the validation scores are the means over folds, and the test split is scored by
    the fold heads' mean probabilities. Replacing the test tracks' embeddings by noise
    leaves everything that chooses unchanged (it changed the choice when the test tracks
    were pooled into the folds, HEAR's way)."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    n_tracks, genres = 60, ["a", "b", "c"]
    labels = np.arange(n_tracks) % 3
    centres = rng.normal(0, 3, (3, 8))
    clips = np.array([f"{genres[label]}.{i:05d}" for i, label in enumerate(labels)])
    x = (centres[labels] + rng.normal(0, 1.5, (n_tracks, 8))).astype(np.float32)
    metrics, folds, predictions = _kfold_screen(tmp_path / "clean", x, clips, labels, genres)
    assert metrics["protocol"] == "kfold" and metrics["folds"] == 5 and len(folds) == 5
    for column in ("valid_macro_f1", "valid_accuracy", "valid_loss"):
        assert metrics[column] == pytest.approx(folds[column].mean())
    assert metrics["valid_macro_f1_std"] == pytest.approx(folds["valid_macro_f1"].std(ddof=1))
    valid, test = (predictions[predictions["split"] == split] for split in ("valid", "test"))
    assert sorted(valid["clip"]) == sorted(clips[:50])  # every pooled track scored once
    assert sorted(test["clip"]) == sorted(clips[50:]) and test["fold"].isna().all()
    assert (folds[["n_train", "n_stop", "n_valid"]].sum(axis=1) == 50).all()
    assert (folds["n_test"] == 10).all() and folds["n_valid"].sum() == 50
    assert metrics["valid"]["tracks"]["n"] == 50 and metrics["test"]["tracks"]["n"] == 10
    assert metrics["test_macro_f1"] == pytest.approx(
        f1_score(test["true"], test["predicted"], average="macro", zero_division=0))
    assert metrics["test_macro_f1_std"] is None and metrics["test_macro_f1"] > 0.6

    noise = x.copy()
    noise[50:] = rng.normal(0, 10, noise[50:].shape)
    moved, moved_folds, moved_predictions = _kfold_screen(tmp_path / "noise", noise, clips, labels, genres)
    for key in ("valid_macro_f1", "valid_macro_f1_std", "valid_accuracy", "valid_loss", "valid"):
        assert moved[key] == metrics[key]
    pd.testing.assert_frame_equal(moved_folds.filter(like="valid"), folds.filter(like="valid"))
    pd.testing.assert_frame_equal(moved_predictions[moved_predictions["split"] == "valid"], valid)
    assert moved["test_macro_f1"] < metrics["test_macro_f1"] - 0.2  # the test split did change


def test_the_tables_name_the_protocol_and_say_when_lists_overrule_the_folds():
    from genreflow.intervals import Bootstrap
    from genreflow.screening import markdown_tables

    row = {"backbone": "vgg16", "feature": "mel", "valid_macro_f1": 0.7, "valid_macro_f1_std": 0.05,
           "test_macro_f1": 0.6, "test_macro_f1_std": 0.04, "test_accuracy": 0.62,
           "test_accuracy_std": 0.03, "test_macro_f1_low": 0.5, "test_macro_f1_high": 0.7,
           "test_accuracy_low": 0.52, "test_accuracy_high": 0.72, "test_absent_genres": ""}
    kfold = markdown_tables(pd.DataFrame([{**row, "folds": 10}]), [], Bootstrap(), ["a"],
                            {"requested": "kfold", "used": "kfold"})
    assert "Protocol: 10-fold cross-validation over the train and validation tracks" in kfold
    assert "The test split is in no fold" in kfold
    assert "| mel | 0.700 ± 0.050 | 0.600 ± 0.040 [0.500, 0.700] | 0.620 ± 0.030 [0.520, 0.720] |" in kfold
    lists = markdown_tables(pd.DataFrame([{**row, "folds": 1, "valid_macro_f1_std": None,
                                           "test_macro_f1_std": None, "test_accuracy_std": None}]),
                            [], Bootstrap(), ["a"], {"requested": "kfold", "used": "holdout"})
    assert "screening.protocol kfold does not apply to a split fixed by lists" in lists
    assert "| mel | 0.700 | 0.600 [0.500, 0.700] | 0.620 [0.520, 0.720] |" in lists
