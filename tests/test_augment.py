"""Augmented training views without Snakemake: the families draw within their ranges,
seeded and reproducible, and do what they say (measured on noise and music); which family
draws which view; the views of a family's job are of training tracks only; and a model
trains on the views of its own training tracks only, never on a copy of a track it is
validated or tested on, with a holdout split and with cross-validation folds."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml
from conftest import REPO
from test_tuning import TRANSFER_DEFAULTS, separable_embeddings

from genreflow import plan
from genreflow.audio import AudioSettings
from genreflow.augment import families
from genreflow.augment.clips import perturb_training_clips
from genreflow.augment.families import DEFAULTS, assign_families, draw, make_view
from genreflow.config import ConfigError, validate_config
from genreflow.models import views as model_views
from genreflow.models.views import check_training_rows, check_view_tracks, track_of, view_clip

SR = 22050


def _music(seconds=4.0, genre="rock", index=0):
    from genreflow.synthetic import render_clip

    return render_clip(genre, index, seconds)


def _white(seconds=4.0, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(
        np.float32)


def _band_db(y, low, high):
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(y.size, 1 / SR)
    return 10 * np.log10(spectrum[(frequencies >= low) & (frequencies < high)].sum())


# ------------------------------------------------------------------ drawing views
@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_a_view_is_seeded_reproducible_and_its_own(kind):
    y = _music()
    spec = {"kind": kind}
    first, drawn = make_view(y, SR, "f", spec, 0, "rock.00000", 0)
    again, drawn_again = make_view(y, SR, "f", spec, 0, "rock.00000", 0)
    np.testing.assert_array_equal(first, again)  # the same audio in every run
    assert drawn == drawn_again and drawn["kind"] == kind
    assert first.dtype == np.float32 and first.shape == y.shape
    assert np.max(np.abs(first)) <= 1.0 and not np.array_equal(first, y)
    # another view, track, family name or seed draws another view
    for other in (("f", 1, "rock.00000", 0), ("f", 0, "rock.00001", 0),
                  ("g", 0, "rock.00000", 0), ("f", 0, "rock.00000", 1)):
        assert not np.array_equal(make_view(y, SR, other[0], spec, *other[1:])[0], first)


def test_draws_stay_within_the_ranges_and_cover_them():
    specs = {
        "eq": {"kind": "eq", "max_db": 4.0, "bands": 5},
        "bandlimit": {"kind": "bandlimit", "lowpass_hz": [3000.0, 8000.0],
                      "highpass_hz": [50.0, 200.0], "order": 3},
        "noise": {"kind": "noise", "snr_db": [12.0, 24.0], "slope": [0.5, 1.5]},
        "room": {"kind": "room", "rt60_seconds": [0.3, 0.9], "drr_db": [-2.0, 6.0]},
    }
    drawn = {kind: [draw(spec, SR, families.view_rng(kind, v, "x", 0)) for v in range(300)]
             for kind, spec in specs.items()}
    gains = np.array([d["gains_db"] for d in drawn["eq"]])
    assert gains.shape == (300, 5) and np.abs(gains).max() <= 4.0 and np.abs(gains).max() > 3.8
    assert drawn["eq"][0]["frequencies_hz"][0] == 60.0
    assert drawn["eq"][0]["frequencies_hz"][-1] == pytest.approx(0.45 * SR, abs=0.1)

    def spans(values, low, high):
        values = np.asarray(values)
        assert values.min() >= low and values.max() <= high
        # the draws cover the range: both ends' tenths are reached
        assert values.min() < low + 0.1 * (high - low) and values.max() > high - 0.1 * (high - low)

    spans([d["lowpass_hz"] for d in drawn["bandlimit"]], 3000.0, 8000.0)
    spans([d["highpass_hz"] for d in drawn["bandlimit"]], 50.0, 200.0)
    assert {d["order"] for d in drawn["bandlimit"]} == {3}
    # cutoffs are log-uniform: as many below the geometric mean as above
    lows = np.array([d["lowpass_hz"] for d in drawn["bandlimit"]])
    assert 0.4 < np.mean(lows < np.sqrt(3000.0 * 8000.0)) < 0.6
    spans([d["snr_db"] for d in drawn["noise"]], 12.0, 24.0)
    spans([d["slope"] for d in drawn["noise"]], 0.5, 1.5)
    spans([d["rt60_seconds"] for d in drawn["room"]], 0.3, 0.9)
    spans([d["drr_db"] for d in drawn["room"]], -2.0, 6.0)
    fixed = draw({"kind": "noise", "snr_db": [15.0, 15.0], "slope": [1.0, 1.0]}, SR,
                 families.view_rng("n", 0, "x", 0))
    assert (fixed["snr_db"], fixed["slope"]) == (15.0, 1.0)


def test_bandlimits_stay_below_the_rate_they_are_drawn_for():
    spec = {"kind": "bandlimit", "lowpass_hz": [9000.0, 20000.0], "highpass_hz": [40.0, 80.0]}
    for v in range(50):
        drawn = draw(spec, 16000, families.view_rng("b", v, "x", 0))
        assert drawn["lowpass_hz"] <= 0.45 * 16000


def test_bad_families_are_refused_naming_the_parameter():
    with pytest.raises(ValueError, match="is not a \\[low, high\\] range"):
        families.parameters({"kind": "noise", "snr_db": [30.0, 10.0]})
    with pytest.raises(ValueError, match="has no parameter\\(s\\) \\['cutoff_hz'\\]"):
        families.parameters({"kind": "bandlimit", "cutoff_hz": 4000.0})
    with pytest.raises(ValueError, match="known kinds are"):
        families.parameters({"kind": "mp3"})


# ------------------------------------------------------------------ what the families do
def test_the_eq_view_follows_its_drawn_curve():
    y = _white(8.0)
    drawn = {"kind": "eq", "frequencies_hz": [60.0, 300.0, 1500.0, 7500.0],
             "gains_db": [0.0, 6.0, -6.0, 3.0]}
    out = families.apply(y, SR, drawn, np.random.default_rng(0))
    for frequency, gain in zip(drawn["frequencies_hz"][1:], drawn["gains_db"][1:]):
        band = (frequency / 1.05, frequency * 1.05)
        assert _band_db(out, *band) - _band_db(y, *band) == pytest.approx(gain, abs=0.7)


def test_the_bandlimit_view_cuts_both_ends():
    y = _white(8.0)
    drawn = {"kind": "bandlimit", "lowpass_hz": 4000.0, "highpass_hz": 200.0, "order": 4}
    out = families.apply(y, SR, drawn, np.random.default_rng(0))
    assert _band_db(out, 8000, 11025) - _band_db(y, 8000, 11025) < -22
    assert _band_db(out, 20, 100) - _band_db(y, 20, 100) < -22
    assert abs(_band_db(out, 600, 2000) - _band_db(y, 600, 2000)) < 0.3


@pytest.mark.parametrize("slope", [0.0, 1.0, 2.0])
def test_the_noise_view_is_at_its_snr_and_slope(slope):
    y = _music(8.0)
    drawn = {"kind": "noise", "snr_db": 18.0, "slope": slope}
    out = families.apply(y, SR, drawn, np.random.default_rng(3)).astype(np.float64)
    added = out - y
    assert 20 * np.log10(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(added**2))) == pytest.approx(
        18.0, abs=0.01)
    # power per octave band falls slope x 3 dB per octave, less the octave's doubling width
    per_octave = _band_db(added, 1000, 2000) - _band_db(added, 500, 1000)
    assert per_octave == pytest.approx(3.0 - 3.0 * slope, abs=0.6)


def test_the_room_view_keeps_the_level_and_smears_time():
    y = np.zeros(SR * 2, np.float32)
    y[SR // 2] = 0.5  # a click
    drawn = {"kind": "room", "rt60_seconds": 0.6, "drr_db": 0.0}
    out = families.apply(y, SR, drawn, np.random.default_rng(0))
    assert np.sqrt(np.mean(out**2.0)) == pytest.approx(np.sqrt(np.mean(y**2.0)), rel=1e-4)
    tail = out[SR // 2 + int(0.05 * SR): SR // 2 + int(0.3 * SR)]
    assert np.sqrt(np.mean(tail**2.0)) > 1e-3  # the room rings after the click


# ------------------------------------------------------------------ which family draws a view
def test_a_tracks_views_go_round_the_families_from_a_drawn_place():
    names = ["eq", "bandlimit", "noise", "room"]
    clips = [f"rock.{i:05d}" for i in range(400)]
    assigned = {clip: assign_families(clip, 4, names, 0) for clip in clips}
    for got in assigned.values():
        assert sorted(got) == sorted(names)  # K = number of families: each once
        start = names.index(got[0])
        assert got == [names[(start + v) % 4] for v in range(4)]
    firsts = pd.Series([got[0] for got in assigned.values()]).value_counts()
    assert set(firsts.index) == set(names) and firsts.min() > 70  # starting places drawn evenly
    assert assign_families("rock.00000", 2, names, 0) == assigned["rock.00000"][:2]
    # another seed draws other places; the families' parameters are not an argument at all
    assert any(assign_families(c, 4, names, 1) != assigned[c] for c in clips[:20])
    with pytest.raises(ValueError, match="needs at least one family"):
        assign_families("rock.00000", 2, [], 0)


# ------------------------------------------------------------------ one family's job
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six synthetic clips of two genres, their table and a train/valid/test split."""
    from genreflow.synthetic import write_songs

    root = tmp_path_factory.mktemp("corpus")
    songs = [(genre, i) for genre in ("rock", "jazz") for i in range(3)]
    paths = write_songs(root, songs, 4.0, log=lambda m: None)
    rows = [{"clip": p.stem, "genre": p.parent.name, "path": str(p)} for p in sorted(paths)]
    pd.DataFrame(rows).to_csv(root / "clips.csv", index=False)
    split = {"train": ["rock.00000", "rock.00001", "jazz.00000", "jazz.00001"],
             "valid": ["rock.00002"], "test": ["jazz.00002"]}
    manifests = {}
    for name, clips in split.items():
        manifests[name] = str(root / f"{name}.csv")
        pd.DataFrame({"clip": clips, "genre": [c.split(".")[0] for c in clips]}).to_csv(
            manifests[name], index=False)
    return root, manifests


def _views_of(root, manifests, family, spec, out, views=3, splits=("train",)):
    perturb_training_clips(
        clips_csv=str(root / "clips.csv"), manifests={s: manifests[s] for s in splits},
        family=family, spec=spec, families=["eq", "noise"], views=views, seed=0,
        audio=AudioSettings(sample_rate=SR, seconds=4.0, min_seconds=2.0),
        out_folder=str(out / "clips"), out_table=str(out / "clips.csv"), log=lambda m: None)
    return pd.read_csv(out / "clips.csv", dtype={"clip": str, "source_clip": str})


def test_a_familys_job_draws_its_share_of_the_training_tracks_views(corpus, tmp_path):
    root, manifests = corpus
    eq = _views_of(root, manifests, "eq", {"kind": "eq"}, tmp_path / "eq")
    noise = _views_of(root, manifests, "noise", {"kind": "noise"}, tmp_path / "noise")
    both = pd.concat([eq, noise])
    train = pd.read_csv(manifests["train"])["clip"]
    # every training track has its 3 views, each drawn by the family assign_families names
    assert sorted(both["source_clip"]) == sorted(list(train) * 3)
    for row in both.itertuples():
        assert assign_families(row.source_clip, 3, ["eq", "noise"], 0)[row.view] == row.family
        assert row.clip == view_clip(row.family, row.view, row.source_clip)
        assert track_of([row.clip])[0] == row.source_clip
        assert json.loads(row.parameters)["kind"] == row.family
        audio, rate = soundfile.read(row.path)
        assert rate == SR and len(audio) == 4 * SR
    # a view's audio is make_view's of its track (FLAC 24-bit: to 2^-23)
    row = eq.iloc[0]
    paths = pd.read_csv(root / "clips.csv").set_index("clip")["path"]
    clean, _ = soundfile.read(paths[row.source_clip], dtype="float32")
    expected, _ = make_view(clean, SR, "eq", {"kind": "eq"}, int(row.view), row.source_clip, 0)
    np.testing.assert_allclose(soundfile.read(row.path)[0], expected, atol=2.0**-22)
    # a family's job never reads another family's block: new eq ranges leave noise's views
    again = _views_of(root, manifests, "noise", {"kind": "noise"}, tmp_path / "noise2")
    assert list(again["parameters"]) == list(noise["parameters"])


def test_views_are_drawn_from_the_splits_given_never_from_test(corpus, tmp_path):
    root, manifests = corpus
    pooled = _views_of(root, manifests, "eq", {"kind": "eq"}, tmp_path / "a", views=2,
                       splits=("train", "valid"))
    assert "rock.00002" in set(pooled["source_clip"])  # validation tracks under cv_folds
    assert "jazz.00002" not in set(pooled["source_clip"])
    with pytest.raises(ValueError, match="never drawn from test tracks"):
        _views_of(root, manifests, "eq", {"kind": "eq"}, tmp_path / "b", splits=("test",))


# ------------------------------------------------------------------ what models train on
def test_view_ids_name_their_track():
    assert view_clip("room", 2, "blues.00012") == "room/2/blues.00012"
    assert model_views.split_view_clip("room/2/blues.00012") == ("room", 2, "blues.00012")
    assert list(track_of(["eq/0/a", "noise/1/b/c"])) == ["a", "b/c"]
    with pytest.raises(ValueError, match="is not a <family>/<view>/<clip> view id"):
        track_of(["blues.00012"])


def test_a_cache_with_views_of_test_tracks_is_refused(corpus):
    _, manifests = corpus
    check_view_tracks(np.array(["rock.00000", "rock.00002"]), manifests, "views.npz")
    with pytest.raises(ValueError, match="views.npz holds views of test tracks \\['jazz.00002'\\]"):
        check_view_tracks(np.array(["rock.00000", "jazz.00002"]), manifests, "views.npz")
    with pytest.raises(ValueError, match="views of tracks in no split"):
        check_view_tracks(np.array(["pop.00000"]), manifests, "views.npz")
    with pytest.raises(RuntimeError, match="training rows of held-out tracks \\['b'\\]"):
        check_training_rows(np.array(["a", "b"]), {"b", "c"}, "x")


def with_views(data, k=2, tracks_of=("train", "valid")):
    """`data` with k views per track of the given splits; a view's embedding is its
    track's plus a small shift, its first feature 1000 + the track's number, so that every
    training row says which track it came from."""
    rows, x = [], []
    for split in tracks_of:
        for clip, label, vector in zip(data.embedding_rows[split]["clip"],
                                       data.embedding_rows[split]["label"],
                                       data.embeddings[split]):
            for v in range(k):
                marked = vector + 0.05 * (v + 1)
                marked[0] = 1000 + int(clip)
                rows.append((view_clip("eq", v, clip), clip, label))
                x.append(marked)
    data.view_embeddings = np.array(x, np.float32)
    data.view_rows = {"clip": np.array([r[0] for r in rows]), "track": np.array([r[1] for r in rows]),
                      "segment": np.zeros(len(rows), int),
                      "label": np.array([r[2] for r in rows], np.int32)}
    return data


def test_a_holdout_model_trains_on_its_training_tracks_views_only():
    from genreflow.models.build import build_model

    data = with_views(separable_embeddings())  # views of valid tracks too, as under cv
    built = build_model(data, {**TRANSFER_DEFAULTS, "augment": "audio"}, seed=0)
    x, labels = built.train_data
    train = set(data.embedding_rows["train"]["clip"])
    assert built.n_views == 2 * len(train) and len(x) == 3 * len(train)
    assert set(built.train_tracks) == train
    marked = x[:, 0] >= 1000  # the actual rows: every view's track is a training track
    assert marked.sum() == built.n_views
    assert {str(int(v) - 1000) for v in x[marked, 0]} <= train
    # the views' labels are their tracks'
    by_track = dict(zip(data.embedding_rows["train"]["clip"], data.embedding_rows["train"]["label"]))
    assert all(by_track[str(int(v) - 1000)] == y for v, y in zip(x[marked, 0], labels[marked]))
    # the validation rows stay clean
    assert len(built.validation.inputs) == len(data.embeddings["valid"])
    assert (built.validation.inputs[:, 0] < 1000).all()
    # without augment, the views are not used
    plain = build_model(data, {**TRANSFER_DEFAULTS, "augment": "none"}, seed=0)
    assert plain.n_views == 0 and len(plain.train_data[0]) == len(train)


def test_a_model_asked_for_views_it_was_not_given_stops():
    from genreflow.models.build import build_model

    with pytest.raises(ValueError, match="training.augment.views must be > 0"):
        build_model(separable_embeddings(), {**TRANSFER_DEFAULTS, "augment": "audio"}, seed=0)


def test_cross_validated_folds_train_on_their_own_tracks_views(monkeypatch, tmp_path):
    """Under tuning.cv_folds a view is in its track's fold: asserted on the rows every fold
    actually trained on, decoded from the views' marks."""
    import optuna

    from genreflow.journal import journal_storage
    from genreflow.splits import track_folds
    from genreflow.tuning.space import RoundPlan
    from genreflow.tuning.study import claim_trial
    from genreflow.tuning.trial import TrialRule, cv_pool
    from genreflow.tuning.worker import RoundContext, run_trial

    import genreflow.models.train as train_module

    data = with_views(separable_embeddings())
    seen, real_train = [], train_module.train

    def spy(model, train_data, validation, **kwargs):
        seen.append((train_data, validation))
        return real_train(model, train_data, validation, **kwargs)

    # the trial imports train where it calls it, so it calls the spy
    monkeypatch.setattr(train_module, "train", spy)
    study = optuna.create_study(storage=journal_storage(tmp_path / "s.journal", lambda m: None),
                                study_name="s", direction="maximize")
    plan_ = RoundPlan.from_config({"fixed": {"learning_rate": 0.02, "augment": "audio"},
                                   "n_trials": 1}, "transfer")
    context = RoundContext(plan_, TRANSFER_DEFAULTS, {}, TrialRule(plan_.objective, 8, 3),
                           data=data)
    run_trial(study, claim_trial(study, 1, 0, "x"), context, log=lambda m: None)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    _, rows, fold = cv_pool(data, 3, data.fold_seed)
    fold_of = dict(zip(rows["clip"], fold))
    assert len(seen) == 3
    for k, ((x, _), validation) in enumerate(seen):
        held = {clip for clip, f in fold_of.items() if f == k}
        assert set(validation.clips) == held and (validation.inputs[:, 0] < 1000).all()
        view_tracks = {str(int(v) - 1000) for v in x[x[:, 0] >= 1000, 0]}
        kept = set(fold_of) - held
        assert view_tracks == kept  # every training track's views, and only theirs
        assert (x[:, 0] >= 1000).sum() == 2 * len(kept)
    np.testing.assert_array_equal(fold, track_folds(rows["clip"], rows["label"], 3,
                                                    data.fold_seed))


# ------------------------------------------------------------------ config and plan
def _demo():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_augment_needs_views_and_families_that_make_sense():
    config = _demo()
    config["tuning"]["rounds"][0]["scientific"]["augment"] = {"type": "categorical",
                                                              "choices": ["none", "audio"]}
    with pytest.raises(ConfigError, match="config key tuning: its defaults or rounds train "
                                          "with augment \\['audio'\\], but training.augment."
                                          "views is 0"):
        validate_config(config)
    config["training"]["augment"] = {"views": 2, "families": {"hiss": {"kind": "noise",
                                                                       "snr_db": [30.0, 5.0]}}}
    with pytest.raises(ConfigError, match="training.augment.families.hiss: augmentation family "
                                          "'noise' snr_db"):
        validate_config(config)
    config["training"]["augment"]["families"]["hiss"]["snr_db"] = [5.0, 30.0]
    assert validate_config(config)["training"]["augment"]["families"]["hiss"]["slope"] == [0.0, 2.0]
    config["tuning"]["rounds"][0]["scientific"]["augment"]["choices"] = ["none", "masks"]
    with pytest.raises(ConfigError, match="'masks' is not a valid augment"):
        validate_config(config)


def test_only_models_that_may_train_on_views_read_them():
    config = validate_config(_demo())
    tuning = config["tuning"]
    assert plan.augment_values(tuning) == {"none"}
    assert not plan.trains_on_views(tuning, 2)
    tuning["rounds"][1]["nuisance"]["augment"] = {"type": "categorical",
                                                  "choices": ["none", "audio"]}
    assert plan.trains_on_views(tuning, 2) and not plan.trains_on_views(tuning, 0)
    assert not plan.trains_on_views(tuning["baseline"], 2)
    assert plan.model_inputs("vgg16", "mel", views=True) == {
        "index": "results/features/mel/index.csv",
        "embeddings": "results/embeddings/vgg16/mel.npz",
        "view_index": "results/augment/features/mel/index.csv",
        "view_embeddings": "results/augment/embeddings/vgg16/mel.npz"}
    assert plan.model_inputs("musicnn_msd", "audio", views=True)["view_embeddings"] == (
        "results/augment/embeddings/musicnn_msd/audio.npz")
    assert plan.model_inputs("baseline_cnn", "mel", views=True) == {
        "index": "results/features/mel/index.csv",
        "view_index": "results/augment/features/mel/index.csv"}
    assert plan.model_inputs("vgg16", "mel") == plan.model_inputs("vgg16", "mel", views=False)
    assert plan.augment_splits(1) == ["train"] and plan.augment_splits(5) == ["train", "valid"]
