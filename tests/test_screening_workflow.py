"""Screening through Snakemake: metrics that agree with scikit-learn, the selection rule,
and ImageNet weights read from resources/weights/ (never downloaded by a training job)."""

import copy
import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import (
    TINY_CONFIG,
    make_tiny_gtzan,
    planned_jobs,
    snakemake,
    write_config,
    write_legacy_h5,
)
from sklearn.metrics import accuracy_score, f1_score

pytestmark = pytest.mark.workflow


def test_screening_metrics_agree_with_sklearn_on_the_predictions(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    for backbone in ("vgg16", "efficientnetb0"):
        for feature in ("mel", "mfcc"):
            folder = workdir / "results/screening" / backbone / feature
            metrics = json.loads((folder / "metrics.json").read_text())
            predictions = pd.read_csv(folder / "predictions.csv")
            for split in ("valid", "test"):
                rows = predictions[predictions["split"] == split]
                expected = set(pd.read_csv(workdir / f"results/splits/{split}.csv")["clip"])
                assert set(rows["clip"]) == expected
                assert metrics[f"{split}_macro_f1"] == pytest.approx(
                    f1_score(rows["true"], rows["predicted"], average="macro",
                             labels=sorted(set(rows["true"])), zero_division=0)
                )
                assert metrics[f"{split}_accuracy"] == pytest.approx(
                    accuracy_score(rows["true"], rows["predicted"])
                )
            assert metrics["backbone"] == backbone and metrics["feature"] == feature
            assert metrics["pretrained"] is False and metrics["weights"] == "none"
            assert 1 <= metrics["epochs_run"] <= 3
            history = pd.read_csv(folder / "history.csv")
            assert list(history["epoch"]) == list(range(1, metrics["epochs_run"] + 1))


def test_screening_summary_selection_and_heatmap(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    summary = pd.read_csv(workdir / "results/screening/summary.csv")
    assert sorted(zip(summary["backbone"], summary["feature"])) == [
        ("efficientnetb0", "mel"), ("efficientnetb0", "mfcc"), ("musicnn_msd", "audio"),
        ("vgg16", "mel"), ("vgg16", "mfcc"),
    ]
    selection = json.loads((workdir / "results/screening/selection.json").read_text())
    best = summary.sort_values(["valid_macro_f1", "feature"], ascending=[False, True]).drop_duplicates("backbone")
    assert {(s["backbone"], s["feature"]) for s in selection["selected"]} == set(
        zip(best["backbone"], best["feature"])
    )
    assert any("NOT PRETRAINED" in note for note in selection["caveats"])
    tables = (workdir / "results/screening/tables.md").read_text()
    assert "### vgg16" in tables and "NOT PRETRAINED" in tables
    assert (workdir / "results/screening/heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    embeddings = np.load(workdir / "results/embeddings/vgg16/mel.npz")
    index = pd.read_csv(workdir / "results/features/mel/index.csv")
    assert embeddings["embeddings"].shape == (len(index), 512)


def imagenet_config():
    config = copy.deepcopy(TINY_CONFIG)
    config["backbones"] = {"names": ["vgg16"], "weights": "imagenet"}
    config["screening"] = {"features": ["mel"], "epochs": 2, "patience": 1}
    config["tuning"]["combinations"] = [{"backbone": "vgg16", "feature": "mel"}]
    config["segments"] = {"compare": None}
    return config


@pytest.fixture(scope="module")
def imagenet_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("imagenet")
    make_tiny_gtzan(workdir / "corpus", clips_per_genre=3, seconds=4.0)
    config = imagenet_config()
    config["audio"] = {"seconds": 4.0, "min_seconds": 3.0}
    write_config(workdir, config)
    return workdir


def test_missing_imagenet_weights_without_internet_name_url_and_path(imagenet_workdir):
    # a closed local port as proxy: the download fails at once, even on a machine online
    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    code, output = snakemake(imagenet_workdir, "--cores", "1", "resources/weights/vgg16/imagenet_notop.h5",
                             check=False, env=env)
    assert code != 0
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in output
    assert "put it at resources/weights/vgg16/imagenet_notop.h5" in output
    assert not (imagenet_workdir / "resources/weights/vgg16/imagenet_notop.h5").exists()


def _test_made_vgg16_file(path):
    """A weights file made here, in the layout of Keras' published ImageNet files."""
    from genreflow.models.backbones import build_backbone

    source = build_backbone("vgg16", 32, None)
    rng = np.random.default_rng(3)
    source.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in source.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_legacy_h5(source, path)
    return path


def test_a_hand_placed_imagenet_file_that_is_not_the_published_one_is_refused(imagenet_workdir):
    """backbones.weights: imagenet reads resources/weights/<backbone>/imagenet_notop.h5 and
    never downloads; a file there that is not Keras' published one stops the job, naming
    both md5s, instead of being trained on as if it were ImageNet."""
    from genreflow.io import file_md5
    from genreflow.models.backbones import BACKBONES

    target = _test_made_vgg16_file(imagenet_workdir / "resources/weights/vgg16/imagenet_notop.h5")
    _, output = snakemake(imagenet_workdir, "-n", "results/screening/selection.json")
    assert "fetch_weights" not in {rule for rule, _ in planned_jobs(output)}
    code, output = snakemake(imagenet_workdir, "--cores", "2", "results/embeddings/vgg16/mel.npz",
                             check=False)
    assert code != 0
    log = (imagenet_workdir / "logs/embed_images/vgg16/mel.log").read_text()
    assert file_md5(target) in log and BACKBONES["vgg16"].weights_md5 in log
    assert "snakemake --cores 1 resources/weights/vgg16/imagenet_notop.h5" in log  # runs as written
    assert not (imagenet_workdir / "results/embeddings/vgg16/mel.npz").exists()


def test_a_weights_file_of_another_training_is_used_and_says_what_it_is(tmp_path):
    from genreflow.io import file_md5
    from genreflow.models.backbones import BackboneWeights, compute_embeddings

    workdir = tmp_path
    make_tiny_gtzan(workdir / "corpus", clips_per_genre=3, seconds=4.0)
    weights = _test_made_vgg16_file(workdir / "mine" / "vgg16_finetuned.h5")
    config = imagenet_config()
    config["backbones"]["weights"] = "mine/vgg16_finetuned.h5"
    config["audio"] = {"seconds": 4.0, "min_seconds": 3.0}
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2", "results/screening/selection.json")
    cache = np.load(workdir / "results/embeddings/vgg16/mel.npz")
    index = pd.read_csv(workdir / "results/features/mel/index.csv")
    paths = [str(workdir / path) for path in index["image"]]
    md5 = file_md5(weights)
    expected = compute_embeddings("vgg16", 32, BackboneWeights("file", str(weights), md5), paths,
                                  batch_size=8)
    np.testing.assert_allclose(cache["embeddings"], expected, rtol=1e-5, atol=1e-6)
    metrics = json.loads((workdir / "results/screening/vgg16/mel/metrics.json").read_text())
    assert metrics["weights"] == f"file mine/vgg16_finetuned.h5 (md5 {md5})"
    assert metrics["weights_source"] == "file" and metrics["pretrained"] is True
    tables = (workdir / "results/screening/tables.md").read_text()
    assert "**USER WEIGHTS FILE: not Keras' published ImageNet weights; the image backbones start from file mine/vgg16_finetuned.h5" in tables


def test_the_gtzan_filtered_preset_plans_the_lists_and_the_imagenet_weights(tmp_path):
    """On a GTZAN-layout corpus the artist-filtered preset fetches its split lists and
    every backbone's ImageNet file; the preset also holds under --configfile (the config
    file is not an override of the preset, --config is)."""
    folder = tmp_path / "gtzan" / "genres_original"
    from genreflow.names import GTZAN_GENRES

    for genre in GTZAN_GENRES:
        (folder / genre).mkdir(parents=True)
        for index in range(3):
            (folder / genre / f"{genre}.{index:05d}.wav").write_bytes(b"")
    write_config(tmp_path, {})
    _, output = snakemake(tmp_path, "-n", "--config", "preset=gtzan_filtered",
                          "dataset={kind: gtzan, root: gtzan}")
    planned = planned_jobs(output)
    assert ("fetch_split_lists", "") in planned
    assert sorted(w for rule, w in planned if rule == "fetch_weights") == [
        f"backbone={name}" for name in ("efficientnetb0", "inceptionv3", "resnet50", "vgg16")]
    assert "resources/splits/fault_filtered/train_filtered.txt" in output
    assert sum(rule == "embed_audio" for rule, _ in planned) == 2  # the preset's two taggers


def test_offline_the_split_lists_say_where_to_put_each_file(tmp_path):
    from genreflow.splits import FAULT_FILTERED_LISTS

    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    make_tiny_gtzan(tmp_path / "corpus", clips_per_genre=3, seconds=4.0)
    config = imagenet_config()
    config["splits"] = {"lists": "fault_filtered"}
    config["audio"] = {"seconds": 4.0, "min_seconds": 3.0}
    write_config(tmp_path, config)
    code, output = snakemake(tmp_path, "--cores", "1", "fetch_split_lists", check=False, env=env)
    assert code != 0
    for published in FAULT_FILTERED_LISTS.values():
        assert published.url in output and f"put it at {published.target}" in output
    assert not (tmp_path / "resources/splits/fault_filtered").exists() or not any(
        (tmp_path / "resources/splits/fault_filtered").iterdir())


def test_kfold_screening_chooses_without_the_test_tracks(tmp_path):
    """screening.protocol kfold cuts its folds from the train and validation tracks only:
    with the test tracks' audio replaced by noise, the screening reruns (the test columns
    move) and selection.json stays byte-identical. When the test tracks were pooled into
    the folds (HEAR's way), the noise moved the validation scores that choose."""
    import soundfile

    make_tiny_gtzan(tmp_path / "corpus", clips_per_genre=5, seconds=4.0)
    config = copy.deepcopy(TINY_CONFIG)
    config["audio"] = {"seconds": 4.0, "min_seconds": 3.0}
    config["backbones"] = {"names": ["vgg16"], "weights": "none"}
    config["screening"] = {"features": ["mel", "mfcc"], "epochs": 3, "patience": 2,
                           "protocol": "kfold", "folds": 3}
    config["tuning"]["combinations"] = [{"backbone": "vgg16", "feature": "mel"}]
    config["segments"] = {"compare": None}
    write_config(tmp_path, config)
    target = "results/screening/selection.json"
    snakemake(tmp_path, "--cores", "2", target)
    selection = (tmp_path / target).read_bytes()
    summary = pd.read_csv(tmp_path / "results/screening/summary.csv")
    assert set(summary["protocol"]) == {"kfold"} and set(summary["folds"]) == {3}
    folds = pd.read_csv(tmp_path / "results/screening/vgg16/mel/folds.csv")
    test_clips = set(pd.read_csv(tmp_path / "results/splits/test.csv", dtype={"clip": str})["clip"])
    assert (folds["n_test"] == len(test_clips)).all()
    assert folds["n_valid"].sum() == len(pd.read_csv(tmp_path / "results/splits/train.csv")) + len(
        pd.read_csv(tmp_path / "results/splits/valid.csv"))

    before = pd.read_csv(tmp_path / "results/screening/vgg16/mel/predictions.csv")
    clips = pd.read_csv(tmp_path / "results/corpus/clips.csv", dtype={"clip": str})
    rng = np.random.default_rng(0)
    for path in clips.loc[clips["clip"].isin(test_clips), "path"]:
        audio, rate = soundfile.read(tmp_path / path)
        soundfile.write(tmp_path / path, 0.3 * rng.standard_normal(audio.shape), rate)
    _, output = snakemake(tmp_path, "--cores", "2", target)
    assert "train_screening" in output  # the noise reached the screening jobs
    moved = pd.read_csv(tmp_path / "results/screening/summary.csv")
    after = pd.read_csv(tmp_path / "results/screening/vgg16/mel/predictions.csv")
    assert not np.allclose(after.filter(like="p_")[after["split"] == "test"],
                           before.filter(like="p_")[before["split"] == "test"])
    for column in ("valid_macro_f1", "valid_macro_f1_std", "valid_accuracy", "valid_loss"):
        np.testing.assert_array_equal(moved[column], summary[column])
    assert (tmp_path / target).read_bytes() == selection
