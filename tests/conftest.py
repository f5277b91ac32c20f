import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def snakemake(workdir, *args, check=True, timeout=900, env=None):
    """Run this repo's workflow in `workdir` (its own results/, logs/, .snakemake/)."""
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(Path(workdir) / "config.yaml"),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({done.returncode}):\n{output[-6000:]}")
    return done.returncode, output


def planned_jobs(dry_run_output):
    """(rule, wildcards) of every job a dry run would execute."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", dry_run_output):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            wildcards = re.search(r"wildcards: (.*)", block)
            jobs.append((head.group(1), wildcards.group(1) if wildcards else ""))
    return sorted(jobs)


def write_config(workdir, config):
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def tone(seconds, sr=22050, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.4 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def make_faulty_files(folder, seconds=6.0):
    """The bad files a real corpus holds, each in a genre folder; returns name -> expected reason."""
    folder = Path(folder)
    good = folder / "blues" / "_good.wav"
    soundfile.write(good, tone(seconds), 22050, subtype="PCM_16")
    header_bytes = good.read_bytes()
    good.unlink()
    (folder / "blues" / "blues.90000.wav").write_bytes(b"")
    (folder / "jazz" / "jazz.00054.wav").write_bytes(b"\x00\x00\x00\x00" + header_bytes[4:])
    (folder / "rock" / "rock.90000.wav").write_text("not audio\n" * 50)
    (folder / "pop" / "pop.90000.wav").write_bytes(header_bytes[:30])
    (folder / "disco" / "disco.90000.wav").write_bytes((tone(seconds) * 32767).astype("<i2").tobytes())
    soundfile.write(folder / "metal" / "metal.90000.wav", np.zeros(int(seconds * 22050)), 22050)
    soundfile.write(folder / "reggae" / "reggae.90000.wav", tone(1.0), 22050)
    # an mp3 whose download stopped at 40% (its header still promises the whole clip), and
    # random bytes under an mp3 name (libsndfile calls both "File does not exist")
    mp3 = folder / "country" / "_whole.mp3"
    soundfile.write(mp3, tone(seconds), 22050, format="MP3")
    (folder / "country" / "country.90000.mp3").write_bytes(mp3.read_bytes()[: int(0.4 * mp3.stat().st_size)])
    mp3.unlink()
    garbage = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    (folder / "hiphop" / "hiphop.90001.mp3").write_bytes(garbage)
    # what else a real collection holds: a link to a file that is gone, a text file
    (folder / "hiphop" / "hiphop.90000.wav").symlink_to("gone.wav")
    (folder / "classical" / "liner_notes.txt").write_text("recorded live\n")
    # each reason says what is wrong with the file; the decoder's words come after it
    return {
        "blues.90000": "empty file",
        "jazz.00054": "damaged WAV header: no 'RIFF' id",
        "rock.90000": 'not an audio file: no audio format\'s header (it is text, starting "not audio")',
        "pop.90000": "truncated WAV file: its header gives",
        "disco.90000": "not an audio file: no audio format's header (it starts with bytes",
        "country.90000": "truncated MP3 file: its header gives",
        "hiphop.90001": "not an audio file: no audio format's header (it starts with bytes",
        "metal.90000": "silent",
        "reggae.90000": "too short",
        "hiphop.90000": "broken symbolic link",
        "liner_notes": "not an audio file name (suffix .txt",
    }


def make_tiny_gtzan(root, clips_per_genre=3, seconds=6.0):
    """A corpus in the Kaggle GTZAN layout from the synthetic generator, plus odd but valid
    files: a stereo 44.1 kHz WAV and an .au file. Returns the folder of genre folders."""
    from genreflow.names import GTZAN_GENRES
    from genreflow.synthetic import write_corpus

    write_corpus(root, clips_per_genre, seconds, log=lambda message: None)
    folder = Path(root) / "genres_original"
    stereo = tone(seconds, sr=44100, channels=2)
    soundfile.write(folder / "country" / "country.80000.wav", stereo, 44100)
    soundfile.write(folder / "classical" / "classical.80000.au", tone(seconds), 22050, format="AU", subtype="PCM_16")
    # a float file 8x beyond full scale: accepted, with its peak reported
    soundfile.write(folder / "rock" / "rock.80000.wav", 8 * tone(seconds), 22050, subtype="FLOAT")
    assert sorted(p.name for p in folder.iterdir()) == sorted(GTZAN_GENRES)
    return folder


TINY_CONFIG = {
    "dataset": {"kind": "gtzan", "root": "corpus"},
    "audio": {"seconds": 6.0, "min_seconds": 3.0},
    "features": {"image_size": 32, "shard_size": 8},
    "backbones": {"names": ["vgg16", "efficientnetb0", "musicnn_msd"], "weights": "none"},
    # whole clips vs 3 s segments for every selected model (musicnn's audio included)
    "segments": {"compare": [None, 3]},
    "screening": {"features": ["mel", "mfcc"], "epochs": 3, "patience": 2},
    # one cheap round per chain (head on cached embeddings) and a two-trial baseline CNN, so
    # that the full run covers tuning, final models and the report in a few minutes
    "tuning": {
        "combinations": [{"backbone": "vgg16", "feature": "mel"},
                         {"backbone": "musicnn_msd", "feature": "audio"}],
        "pruner": {"kind": "none"},
        "defaults": {"epochs": 2, "batch_size": 8, "units": 16},
        "rounds": [
            {
                "nuisance": {"learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True}},
                "fixed": {"trainable_layers": 0},
                "sampler": "qmc",
                "n_trials": 2,
            }
        ],
        "baseline": {
            "enabled": True,
            "feature": "mel",
            "defaults": {"conv_layers": 2, "kernels": 8, "units": 16, "epochs": 2, "batch_size": 8},
            "rounds": [
                {
                    "nuisance": {"learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True}},
                    "sampler": "random",
                    "n_trials": 2,
                }
            ],
        },
    },
    "evaluation": {"seeds": [0, 1], "epochs": 2, "patience": 2},
}


@pytest.fixture(scope="session")
def tiny_gtzan_run(tmp_path_factory):
    """One full run of the workflow on a tiny GTZAN-shaped corpus with faulty files."""
    workdir = tmp_path_factory.mktemp("tiny_gtzan")
    folder = make_tiny_gtzan(workdir / "corpus")
    expected_rejects = make_faulty_files(folder)
    write_config(workdir, TINY_CONFIG)
    # as a user runs it: TensorFlow's C++ logging at its default level (the console test)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    _, output = snakemake(workdir, "--cores", "2", env=env)
    return workdir, expected_rejects, output


def write_legacy_h5(model, path):
    """Write weights in the Keras 2 layout of the published ImageNet notop files."""
    import h5py
    import keras

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = handle.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{v.name}:0".encode() for v in variables]
            group.attrs["weight_names"] = names
            for name, variable in zip(names, variables):
                group.create_dataset(
                    name.decode(), data=keras.ops.convert_to_numpy(variable)
                )
