import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
from PIL import Image

from genreflow.io import write_json
from genreflow.names import GTZAN_GENRES
from genreflow.plots import final as final_plots, style, tuning as tuning_plots
from genreflow.run_info import caveats

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "workflow_scripts" / "genreflow" / "report"
NOT_PRETRAINED_DEMO = {"pretrained": False, "corpus": "synthetic", "weights": "none"}
NOTES = caveats(NOT_PRETRAINED_DEMO)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _pixels(size):
    return (round(size[0] * style.DPI), round(size[1] * style.DPI))


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _no_temp_files(folder):
    assert not [p.name for p in Path(folder).iterdir() if p.name.endswith(".part")]


def _history(seeds=(0, 1)):
    frames = []
    for seed in seeds:
        epochs = np.arange(1, 6 + seed)
        frames.append(pd.DataFrame({
            "seed": seed, "epoch": epochs,
            "loss": 2.0 / epochs, "accuracy": 1 - 0.8 / epochs,
            "val_loss": 2.2 / epochs + 0.05 * epochs, "val_accuracy": 0.9 - 0.8 / epochs,
        }))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------- final-model plots


def test_caveat_lines_shorten_the_caveats():
    assert style.caveat_lines(NOTES) == [
        "IMAGE BACKBONES NOT PRETRAINED: backbones.weights is 'none' (random "
        "initialisation)",
        "SYNTHETIC DEMO CORPUS: these are not GTZAN results",
    ]
    assert style.caveat_lines([]) == []
    every = caveats({"pretrained": False, "corpus": "gtzan", "split": "random",
                     "weights_source": "file", "weights": "file x.h5 (md5 0)"})
    lines = style.caveat_lines(every)
    assert "RANDOM SPLIT OF GTZAN: artist repetition inflates every score" in lines
    assert "USER WEIGHTS FILE: not Keras' published ImageNet weights" in lines
    assert all(len(line) <= 100 for line in lines)


@pytest.mark.parametrize("seeds", [(0, 1), None])
def test_training_curves_have_fixed_size(tmp_path, seeds):
    history = _history() if seeds else _history((0,)).drop(columns="seed")
    accuracy, loss = tmp_path / "accuracy.png", tmp_path / "loss.png"
    final_plots.plot_training_curves(history, accuracy, loss, "VGG16 + mel spectrogram, round 1",
                               NOTES if seeds else [])
    assert _png_size(accuracy) == _png_size(loss) == _pixels(style.CURVE_SIZE)
    _no_temp_files(tmp_path)


def test_curve_rejects_unknown_metric(tmp_path):
    with pytest.raises(ValueError, match="metric"):
        final_plots.plot_curve(_history(), "f1", tmp_path / "x.png", "t")


def test_confusion_matrix_size_and_rates(tmp_path):
    matrix = np.eye(10, dtype=int) * 4
    matrix[0, 1] = 4
    matrix[3] = 0  # a genre absent from the test split
    out = tmp_path / "confusion.png"
    final_plots.plot_confusion_matrix(matrix, GTZAN_GENRES, out, "Confusion matrix", NOTES)
    assert _png_size(out) == _pixels(style.CONFUSION_SIZE)
    rates = final_plots.row_rates(matrix)
    assert rates[0, 0] == rates[0, 1] == 0.5 and rates[3].sum() == 0 and rates[1, 1] == 1
    with pytest.raises(ValueError, match="shape"):
        final_plots.plot_confusion_matrix(matrix[:3, :3], GTZAN_GENRES, out, "x")


@pytest.mark.parametrize("n_models", [1, 4])
def test_final_scores_size_grows_with_models(tmp_path, n_models):
    test = np.linspace(0.9, 0.5, n_models)
    summary = pd.DataFrame({
        "rank": np.arange(1, n_models + 1), "chosen": np.arange(n_models) == 0,
        "model": [f"model {i}" for i in range(n_models)], "round": 1,
        "valid_macro_f1_mean": np.linspace(0.95, 0.6, n_models),
        "test_macro_f1_mean": test, "test_macro_f1_low": test - 0.07,
        "test_macro_f1_high": test + 0.06, "n_seeds": 3,
    })
    out = tmp_path / "scores.png"
    final_plots.plot_final_scores(summary, out, NOTES)
    assert _png_size(out) == _pixels(final_plots.scores_figure_size(n_models))


def test_plot_final_from_combined_files(tmp_path):
    matrix = np.eye(10, dtype=int) * 2
    write_json(tmp_path / "metrics.json", {
        **NOT_PRETRAINED_DEMO, "backbone": "vgg16", "feature": "mel", "round": 2,
        "model": "VGG16 + mel spectrogram", "level": "tracks", "segmented": False,
        "n_seeds": 2, "seeds": [0, 1],
        "test": {"tracks": {"confusion_matrix_pooled": matrix.tolist()}},
    })
    _history().to_csv(tmp_path / "history.csv", index=False)
    outs = [tmp_path / name for name in ("a.png", "l.png", "c.png")]
    final_plots.plot_final(str(tmp_path / "metrics.json"), str(tmp_path / "history.csv"),
                     *map(str, outs), GTZAN_GENRES, log=lambda message: None)
    assert [_png_size(out) for out in outs] == [
        _pixels(style.CURVE_SIZE), _pixels(style.CURVE_SIZE), _pixels(style.CONFUSION_SIZE)]


# ------------------------------------------------------------------ tuning rounds


def _journal_study(path, objective, n_trials, name="vgg16-mel-round_1"):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))
    )
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    return study


def _search(trial):
    learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    units = trial.suggest_categorical("units", [64, 128, 256])
    dense_layers = trial.suggest_int("dense_layers", 1, 3)
    trial.suggest_categorical("batch_size", [32])  # fixed in this round
    if trial.number == 3:
        raise optuna.TrialPruned()
    return float(-abs(np.log10(learning_rate) + 3) + units / 1000 + 0.01 * dense_layers)


@pytest.fixture
def placeholders(monkeypatch):
    """Records the placeholder figures drawn (and still draws them)."""
    drawn = []
    original = style.placeholder_figure

    def spy(message, out_png, *args, **kwargs):
        drawn.append((Path(out_png).name, message))
        original(message, out_png, *args, **kwargs)

    monkeypatch.setattr(tuning_plots, "placeholder_figure", spy)
    return drawn


def _plot_round(tmp_path, journal):
    write_json(tmp_path / "best_trial.json", {"objective": "valid_macro_f1", "sampler": "TPE"})
    outs = {name: tmp_path / f"{name}.png" for name in ("history", "importances", "parallel")}
    about = {**NOT_PRETRAINED_DEMO, "backbone": "vgg16", "feature": "mel", "round": 1}
    tuning_plots.plot_tuning_round(str(journal), str(tmp_path / "best_trial.json"), about,
                            *(str(out) for out in outs.values()), log=lambda message: None)
    for out in outs.values():
        assert _png_size(out) == _pixels(style.TUNING_SIZE)
    _no_temp_files(tmp_path)
    return outs


def test_tuning_round_plots(tmp_path, placeholders):
    journal = tmp_path / "study.journal"
    study = _journal_study(journal, _search, n_trials=8)
    assert tuning_plots.varying_params(study) == ["dense_layers", "learning_rate", "units"]
    assert tuning_plots.trial_counts(study)["pruned"] == 1
    _plot_round(tmp_path, journal)
    assert placeholders == []


def test_tuning_round_with_one_completed_trial_gets_placeholders(tmp_path, placeholders):
    journal = tmp_path / "study.journal"
    _journal_study(journal, _search, n_trials=1)
    _plot_round(tmp_path, journal)
    assert [name for name, _ in placeholders] == ["importances.png", "parallel.png"]
    assert "at least 2 completed trials" in placeholders[0][1]


def test_tuning_round_without_completed_trials(tmp_path, placeholders):
    def pruned(trial):
        trial.suggest_float("x", 0, 1)
        raise optuna.TrialPruned()

    journal = tmp_path / "study.journal"
    _journal_study(journal, pruned, n_trials=2)
    _plot_round(tmp_path, journal)
    assert [name for name, _ in placeholders] == [
        "history.png", "importances.png", "parallel.png"]
    assert "2 pruned" in placeholders[0][1]


def test_tuning_round_without_varying_params(tmp_path, placeholders):
    def constant(trial):
        trial.suggest_categorical("units", [128])
        return 0.5

    journal = tmp_path / "study.journal"
    _journal_study(journal, constant, n_trials=3)
    _plot_round(tmp_path, journal)
    assert [name for name, _ in placeholders] == ["importances.png", "parallel.png"]
    assert "same hyperparameters" in placeholders[0][1]


def test_load_study_by_name_or_the_only_one(tmp_path):
    missing = tmp_path / "absent.journal"
    with pytest.raises(FileNotFoundError):
        tuning_plots.load_study(missing)
    assert not missing.exists()  # Optuna would have created an empty journal
    journal = tmp_path / "two.journal"
    _journal_study(journal, _search, 1, name="a")
    _journal_study(journal, _search, 1, name="b")
    with pytest.raises(ValueError, match="2 studies"):
        tuning_plots.load_study(journal)
    assert tuning_plots.load_study(journal, "b").study_name == "b"
    with pytest.raises(ValueError, match="no study 'c'"):
        tuning_plots.load_study(journal, "c")


def test_tuning_round_plots_the_study_its_best_trial_names(tmp_path, placeholders):
    journal = tmp_path / "study.journal"
    _journal_study(journal, _search, n_trials=1, name="old-config")
    _journal_study(journal, _search, n_trials=6, name="current")
    write_json(tmp_path / "best_trial.json", {"objective": "valid_accuracy",
                                              "study_name": "current"})
    about = {**NOT_PRETRAINED_DEMO, "backbone": "vgg16", "feature": "mel", "round": 0}
    tuning_plots.plot_tuning_round(str(journal), str(tmp_path / "best_trial.json"), about,
                            *(str(tmp_path / f"{n}.png") for n in "hip"),
                            log=lambda message: None)
    assert placeholders == []  # the one-trial study would have needed placeholders


def test_plotting_leaves_global_style_alone(tmp_path):
    import matplotlib

    before = dict(matplotlib.rcParams)
    study = _journal_study(tmp_path / "s.journal", _search, n_trials=4)
    tuning_plots.plot_optimization_history(study, tmp_path / "h.png", "t")
    final_plots.plot_curve(_history(), "loss", tmp_path / "l.png", "t")
    changed = {key for key, value in matplotlib.rcParams.items()
               if str(before.get(key)) != str(value)}
    assert not changed


# ----------------------------------------------------------------- report captions


def _render(text, **context):
    from docutils.core import publish_parts
    from jinja2 import Environment

    # Snakemake renders captions with this Jinja environment, then docutils.
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(
        **context
    )
    return rst, publish_parts(rst, writer="html",
                              settings_overrides={"report_level": 2, "halt_level": 2})["body"]


def _fake_job(about):
    return SimpleNamespace(
        wildcards=SimpleNamespace(backbone="vgg16", feature="mel", round="2"),
        params=SimpleNamespace(about=about, notes=caveats(about), seeds=[0, 1, 2],
                               protocol={"requested": "kfold", "used": "kfold"}, bins=10,
                               unfamiliar_rate=0.05,
                               conditions=[{"name": "noise", "description": "pink noise at 20 dB SNR"},
                                           {"name": "gain", "description": "a -12 dB gain"}]),
        config={"evaluation": {"seeds": [0, 1]}, "robustness": {"second_rendering": True}},
    )


CAPTIONS = sorted(path for path in REPORT.glob("*.rst") if path.name != "workflow.rst")


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda path: path.stem)
@pytest.mark.parametrize("about", [NOT_PRETRAINED_DEMO,
                                   {"pretrained": True, "corpus": "gtzan",
                                    "weights": "imagenet"}])
def test_captions_render_and_carry_the_caveats(caption, about):
    rst, html = _render(caption.read_text(), snakemake=_fake_job(about))
    for note in caveats(about):
        assert f"**{note}**" in rst
    if about["corpus"] == "gtzan":
        assert "NOT PRETRAINED" not in html and "SYNTHETIC" not in html
    assert about["corpus"] in html
    assert "{{" not in rst and "{%" not in rst
    words = " ".join(rst.split())
    assert "test split" in words or "validation split" in words


HEADLINE = {
    "model": "VGG16 + mel spectrogram", "round": 2, "n_models": 7,
    "chosen_by": "validation macro-F1 (mean over seeds), ties by validation loss",
    "test_macro_f1": {"mean": 0.712, "low": 0.645, "high": 0.781},
    "test_accuracy": {"mean": 0.72, "low": 0.653, "high": 0.787},
    "interval": "95% stratified bootstrap interval over test tracks (2000 resamples, seed 0)",
}


NO_INTERVAL = {**HEADLINE, "test_macro_f1": {"mean": 0.5, "low": None, "high": None,
                                              "missing": "a genre has 2 test tracks (fewer than 4)"}}
CALIBRATED = {**HEADLINE, "calibration": {
    "temperatures": [1.8312, 2.2], "bins": 10, "test_ece_before": 0.214, "test_ece_after": 0.061,
    "test_brier_before": 0.52, "test_brier_after": 0.47}}


@pytest.mark.parametrize("weights", ["none", "imagenet"])
@pytest.mark.parametrize("kind", ["synthetic", "gtzan"])
@pytest.mark.parametrize("headline", [None, HEADLINE, NO_INTERVAL, CALIBRATED],
                         ids=["before final", "after final", "no interval", "calibrated"])
def test_workflow_description_uses_the_caveats_wording(weights, kind, headline):
    from genreflow.run_info import run_about

    config = {
        "dataset": {"kind": kind, "genres": list(GTZAN_GENRES)},
        "features": {"image_size": 75}, "segments": {"seconds": None},
        "backbones": {"names": ["vgg16"], "weights": weights},
        "splits": {"lists": None, "seed": 42},
        "robustness": {"perturbations": {"noise": {}, "gain": {}}, "second_rendering": True},
    }
    about = run_about(config)
    config["report_front_page"] = {"caveats": caveats(about), "weights": about["weights"],
                                   "headline": headline}
    rst, html = _render((REPORT / "workflow.rst").read_text(),
                        snakemake=SimpleNamespace(config=config))
    expected = caveats(about)
    if kind == "gtzan":
        assert any(note.startswith("RANDOM SPLIT OF GTZAN") for note in expected)
    found = re.findall(r"^\*\*(.*?)\*\*$", rst, flags=re.MULTILINE | re.DOTALL)
    assert found[: len(expected)] == expected
    assert "stratified by genre, seed 42" in html
    words = " ".join(html.split())
    if headline is NO_INTERVAL:
        # the reason once, not after every score of the page
        assert "Test macro-F1 0.500 (n/a)" in words
        assert words.count("a genre has 2 test tracks (fewer than 4)") == 1, words
        assert "No interval (n/a) on this run, said once for every score on this page: a genre has 2 test tracks" in words
    elif headline:
        assert ("The chosen model: VGG16 + mel spectrogram, tuning round 2. Test macro-F1 0.712 "
                "(95% interval 0.645 to 0.781), test accuracy 0.720") in words
        assert "played no part in the choice" in words
        if headline is CALIBRATED:
            assert ("temperature fitted on the validation split (T = 1.83, 2.2, one per seed): "
                    "expected calibration error on the test tracks 0.214 before, 0.061 after "
                    "(10 confidence bins") in words
        else:
            assert "calibration error" not in words
    else:
        assert "chosen model" not in html


def test_rules_name_existing_captions():
    rules = "".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    captions = re.findall(r'caption="([^"]+)"', rules)
    assert len(captions) == len(set(captions)) == len(CAPTIONS)
    for caption in captions:
        assert (REPO / "rules" / caption).resolve().is_file(), caption
    assert sorted({Path(c).name for c in captions}) == sorted(p.name for p in CAPTIONS)


@pytest.mark.parametrize("model", [None, "vgg16/mel/round_2"])
def test_a_predictions_only_report_describes_only_its_predictions(model):
    """`snakemake --report report.html predict`: the front page says what that report holds
    and how to get the study's, instead of describing categories it does not contain."""
    from genreflow.run_info import run_about

    config = {
        "dataset": {"kind": "synthetic", "genres": list(GTZAN_GENRES)},
        "features": {"image_size": 75}, "segments": {"seconds": None, "compare": [None, 3]},
        "backbones": {"names": ["vgg16"], "weights": "none"},
        "splits": {"lists": None, "seed": 42}, "predict": {"model": model},
        "robustness": {"perturbations": {"noise": {}}, "second_rendering": True},
    }
    about = run_about(config)
    config["report_front_page"] = {"caveats": caveats(about), "weights": about["weights"],
                                   "headline": HEADLINE, "predictions_only": True}
    rst, html = _render((REPORT / "workflow.rst").read_text(),
                        snakemake=SimpleNamespace(config=config))
    words = " ".join(rst.split())
    assert "**Predictions**" in words and "snakemake --report report.html all predict" in words
    for category in ("**Screening**", "**Tuning**", "**Segments**", "**Robustness**"):
        assert category not in words
    assert (model or HEADLINE["model"]) in words
    for note in caveats(about):
        assert f"**{note}**" in rst
