"""Snakemake itself on a tiny config: what it makes, what it reruns, what it refuses."""

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow
FEATURES = ["mel", "mfcc", "stft", "spectrogram", "chroma"]


def test_bad_files_are_rejected_with_reasons_and_the_rest_go_on(tiny_gtzan_run):
    workdir, expected, _ = tiny_gtzan_run
    rejected = pd.read_csv(workdir / "results/corpus/rejected.csv")
    assert sorted(rejected["clip"]) == sorted(expected)
    for row in rejected.itertuples():
        assert expected[row.clip] in row.reason, (row.clip, row.reason)
        assert Path(row.path).name.startswith(row.clip)
    clips = pd.read_csv(workdir / "results/corpus/clips.csv")
    assert len(clips) == 10 * 3 + 3
    odd = clips.set_index("clip")
    assert odd.loc["country.80000", "source_sample_rate"] == 44100
    assert odd.loc["country.80000", "source_channels"] == 2
    assert odd.loc["classical.80000", "path"].endswith(".au")
    # beyond full scale: kept, its peak in clips.csv and a warning in the log
    assert odd.loc["rock.80000", "peak_dbfs"] == pytest.approx(20 * np.log10(8 * 0.6), abs=0.05)
    assert (odd.drop(index="rock.80000")["peak_dbfs"] <= 0).all()
    shard_logs = "".join(p.read_text() for p in (workdir / "logs/check_clips").glob("*.log"))
    assert "rock.80000.wav: samples up to 4.80 (+13.6 dBFS) beyond full scale" in shard_logs


def test_every_file_under_a_genre_folder_is_accepted_or_rejected(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    files = [path for path in (workdir / "corpus/genres_original").glob("*/*")
             if path.is_file() or path.is_symlink()]
    clips = pd.read_csv(workdir / "results/corpus/clips.csv")
    rejected = pd.read_csv(workdir / "results/corpus/rejected.csv")
    listed = sorted([*clips["path"], *rejected["path"]])
    assert len(listed) == len(files) and sorted(str(p) for p in files) == sorted(
        str(workdir / path) for path in listed)


def test_every_accepted_clip_has_five_images_and_indexes(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    clips = set(pd.read_csv(workdir / "results/corpus/clips.csv")["clip"])
    for feature in FEATURES:
        index = pd.read_csv(workdir / f"results/features/{feature}/index.csv")
        assert list(index.columns) == ["clip", "segment", "genre", "image"]
        assert set(index["clip"]) == clips and (index["segment"] == 0).all()
        for path in index["image"].sample(5, random_state=0):
            pixels = np.asarray(Image.open(workdir / path))
            assert pixels.shape == (32, 32) and pixels.dtype == np.uint8
            assert pixels.max() > pixels.min()
    mel = pd.read_csv(workdir / "results/features/mel/index.csv").set_index("clip")
    assert mel.loc["classical.80000", "genre"] == "classical"


def test_splits_are_stratified_disjoint_and_cover_the_accepted_clips(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    parts = {s: pd.read_csv(workdir / f"results/splits/{s}.csv") for s in ("train", "valid", "test")}
    sets = {s: set(p["clip"]) for s, p in parts.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"] or sets["valid"] & sets["test"])
    accepted = set(pd.read_csv(workdir / "results/corpus/clips.csv")["clip"])
    assert set().union(*sets.values()) == accepted
    for split, part in parts.items():
        assert part["genre"].nunique() == 10, split


# genreflow's own lines: `[<rule> <wildcards> <seconds>s] ...` (genreflow.jobs.JobLog)
GENREFLOW_LINE = re.compile(r"^\[[a-z_]+(?: \S+)? +\d+\.\ds\] ")
# what Snakemake prints before its log file is open, and its timestamps (formatted again for
# the log file, so a second may pass between the two copies)
SNAKEMAKE_PREAMBLE = re.compile(
    r"^(Using workflow specific profile |Config file .* is extended by "
    r"|\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]$)")


def test_the_console_holds_only_snakemake_and_genreflow_lines(tiny_gtzan_run):
    """The tiny run (TensorFlow, musicnn, a damaged mp3 among its clips) printed nothing on
    the console that came from neither Snakemake (its log file holds every line it printed)
    nor genreflow: TensorFlow's C++ start-up lines, musicnn's deprecations and libmpg123's
    notes are in the jobs' logs, and genreflow's lines name the job's model."""
    from collections import Counter

    workdir, _, output = tiny_gtzan_run
    first_run = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))[0]
    printed_by_snakemake = Counter(first_run.read_text().splitlines())
    lines = output.splitlines()
    other = []
    for line in lines:
        if not line.strip() or GENREFLOW_LINE.match(line) or SNAKEMAKE_PREAMBLE.match(line):
            continue
        if printed_by_snakemake[line]:
            printed_by_snakemake[line] -= 1
            continue
        other.append(line)
    assert other == [], f"{len(other)} of {len(lines)} console lines:\n" + "\n".join(other[:40])
    assert "Shell command: None" not in output
    # genreflow's progress lines name the model, so that parallel jobs can be told apart
    assert re.search(r"^\[tune_round vgg16/mel/round_0/worker_0 +\d", output, re.M)
    assert re.search(r"^\[train_final musicnn_msd/audio/round_0/seed_1 +\d", output, re.M)
    assert re.search(r"^\[make_images mel/shard_000 +\d", output, re.M)
    # what the libraries said is kept, in the job's own log
    logs = {path: path.read_text() for path in (workdir / "logs").rglob("*.log")}
    assert any("oneDNN custom operations" in text for path, text in logs.items()
               if "embed_images" in path.parts)
    assert any("is deprecated" in text for path, text in logs.items() if "embed_audio" in path.parts)


def test_a_finished_run_has_nothing_left_to_do(tiny_gtzan_run):
    workdir, _, _ = tiny_gtzan_run
    _, output = snakemake(workdir, "-n")
    assert planned_jobs(output) == [], output


def test_changing_one_feature_reruns_only_that_feature(tiny_gtzan_run, tmp_path):
    workdir, _, _ = tiny_gtzan_run
    config = copy.deepcopy(TINY_CONFIG)
    config["features"]["mel"] = {"n_mels": 64}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    _, output = snakemake(workdir, "-n", "--configfile", str(changed))
    jobs = planned_jobs(output)
    shards = sorted(p.name for p in (workdir / "results/features/mel/images").iterdir())
    assert [job for job in jobs if job[0] == "make_images"] == [
        ("make_images", f"feature=mel, shard={shard}") for shard in shards
    ], output
    per_feature = [job for job in jobs if "feature=" in job[1]]
    assert all("feature=mel" in wildcards for _, wildcards in per_feature), output
    assert ("index_images", "feature=mel") in jobs
    # nothing upstream of the images, and nothing of another feature, runs again
    upstream = {"make_synthetic_corpus", "check_clips", "collect_corpus", "make_splits"}
    assert not upstream & {rule for rule, _ in jobs}, output


def test_reordering_config_keys_reruns_nothing(tiny_gtzan_run, tmp_path):
    workdir, _, _ = tiny_gtzan_run
    validated = yaml.safe_load((workdir / "config.yaml").read_text())
    reordered = {key: validated[key] for key in reversed(list(validated))}
    reordered["features"] = {
        **{k: v for k, v in reversed(list(validated["features"].items()))},
        "mel": {"top_db": 80.0, "n_mels": 128, "hop_length": 512, "n_fft": 2048},
    }
    path = tmp_path / "reordered.yaml"
    path.write_text(yaml.safe_dump(reordered, sort_keys=False))
    _, output = snakemake(workdir, "-n", "--configfile", str(path))
    assert planned_jobs(output) == [], output


@pytest.mark.parametrize(
    "change, key",
    [
        ({"features": {"melody": {"n_fft": 512}}}, "features: Additional properties are not allowed ('melody'"),
        ({"features": {"mel": {"n_mels": -1}}}, "features.mel.n_mels: -1 is less than the minimum of 1"),
        ({"features": {"mel": {"fmin": "1e-3"}}}, "features.mel.fmin: '1e-3' is not of type 'number'"),
        ({"dataset": {"kind": "gtzan", "root": "no/such/dir"}}, "dataset.root: folder 'no/such/dir' does not exist"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, change, key):
    config = copy.deepcopy(TINY_CONFIG)
    for section, values in change.items():
        config[section] = {**config.get(section, {}), **values}
    write_config(tmp_path, config)
    code, output = snakemake(tmp_path, "--cores", "1", check=False)
    assert code != 0
    assert key in output, output
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_on_bad_file_fail_stops_with_every_bad_file_listed(tmp_path):
    from conftest import make_faulty_files, make_tiny_gtzan

    folder = make_tiny_gtzan(tmp_path / "corpus", clips_per_genre=1, seconds=4.0)
    make_faulty_files(folder, seconds=4.0)
    config = copy.deepcopy(TINY_CONFIG)
    config["audio"] = {"seconds": 4.0, "min_seconds": 3.0, "on_bad_file": "fail"}
    config["features"]["shard_size"] = 100
    write_config(tmp_path, config)
    code, output = snakemake(tmp_path, "--cores", "1", "results/corpus/clips.csv", check=False)
    assert code != 0
    assert "9 bad file(s) and audio.on_bad_file is 'fail'" in output
    assert "jazz.00054.wav: damaged WAV header: no 'RIFF' id" in output
    assert not (tmp_path / "results/corpus/checked/000.csv").exists()


def test_synthetic_segments_keep_tracks_in_one_split(tmp_path):
    config = {
        "dataset": {"kind": "synthetic", "synthetic": {"clips_per_genre": 3, "seconds": 4.0}},
        "audio": {"seconds": 4.0, "min_seconds": 2.0},
        "segments": {"seconds": 1.5},
        "features": {"image_size": 32, "shard_size": 15},
        "backbones": {"names": ["vgg16"], "weights": "none"},
    }
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "results/features/chroma/index.csv", "results/splits/test.csv")
    wavs = sorted((tmp_path / "resources/synthetic/genres_original").glob("*/*.wav"))
    assert len(wavs) == 30 and wavs[0].name == "blues.00000.wav"
    index = pd.read_csv(tmp_path / "results/features/chroma/index.csv")
    assert len(index) == 30 * 2  # 4 s cut into 1.5 s segments: two, remainder dropped
    assert sorted(index["segment"].unique()) == [0, 1]
    assert index["image"].str.endswith(".seg01.png").sum() == 30
    split_of = {}
    for split in ("train", "valid", "test"):
        for clip in pd.read_csv(tmp_path / f"results/splits/{split}.csv")["clip"]:
            split_of[clip] = split
    assert set(split_of) == set(index["clip"])


def test_lint_format_and_dry_run_are_clean():
    import subprocess
    import sys

    lint = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--directory", str(REPO), "-s", str(REPO / "Snakefile")],
        capture_output=True, text=True,
    )
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", str(REPO / "Snakefile"), str(REPO / "rules")],
        capture_output=True, text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_tensorflow_jobs_take_training_threads(tmp_path):
    """One thread per TensorFlow job by default (most jobs are mostly start-up, so more jobs
    side by side beat more threads per job on a CPU), training.threads otherwise."""
    write_config(tmp_path, {})  # the demo config

    def threads_of(*config):
        _, output = snakemake(tmp_path, "-n", "--cores", "4", *config)
        blocks = re.findall(r"^rule embed_images:\n((?:    .*\n)+)", output, flags=re.M)
        assert blocks, output
        # Snakemake prints no threads line for one thread
        return {int(re.search(r"threads: (\d+)", block)[1]) if "threads:" in block else 1
                for block in blocks}

    assert threads_of() == {1}
    assert threads_of("--config", "training={threads: 3}") == {3}
