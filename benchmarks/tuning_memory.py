"""Resident memory of one tuning process over 50 small trials, with genreflow.tuning's
per-trial cleanup (keras.backend.clear_session, dropping TensorFlow's registered custom
gradients, gc.collect), with Keras' usual advice only (clear_session + gc.collect), and
with none.

Trials alternate between a head trained on cached embeddings and the baseline CNN trained
on images (tf.data pipeline), through the real worker path (journal storage, claims,
run_trial). Each variant runs in its own process; the figure is the growth of RSS from
trial 10 (after warm-up: TensorFlow's one-off allocations) to trial 50.

    .venv/bin/python benchmarks/tuning_memory.py --workdir .      # the demo's results
    .venv/bin/python benchmarks/tuning_memory.py --workdir /tmp/x  # synthetic data made there

With --workdir pointing at a finished demo run it uses results/embeddings/vgg16/<feature>.npz,
results/features/<feature>/index.csv and results/splits/*.csv; otherwise it writes a small
synthetic set of embeddings and 32-pixel images there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from genreflow.names import GTZAN_GENRES  # noqa: E402

GTZAN_GENRES = list(GTZAN_GENRES)
TRANSFER_DEFAULTS = {
    "dense_layers": 1,
    "units": 64,
    "dropout": 0.2,
    "activation": "relu",
    "batch_norm": False,
    "trainable_layers": 0,
    "learning_rate": 1e-3,
    "batch_size": 16,
    "epochs": 3,
}
BASELINE_DEFAULTS = {
    "conv_layers": 2,
    "kernels": 8,
    "kernel_size": 3,
    "stride": 1,
    "conv_dropout": 0.1,
    "conv_batch_norm": True,
    "activation": "relu",
    "dense_layers": 1,
    "units": 32,
    "dropout": 0.2,
    "batch_norm": False,
    "learning_rate": 1e-3,
    "batch_size": 16,
    "epochs": 2,
}


def demo_inputs(workdir: Path, feature: str):
    paths = {
        "index": workdir / f"results/features/{feature}/index.csv",
        "embeddings": workdir / f"results/embeddings/vgg16/{feature}.npz",
        **{split: workdir / f"results/splits/{split}.csv" for split in ("train", "valid", "test")},
    }
    return paths if all(path.exists() for path in paths.values()) else None


def synthetic_inputs(workdir: Path):
    """Embeddings and 32-pixel PNGs of 10 separable classes, in the workflow's file layout."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from genreflow.io import save_embeddings

    rng = np.random.default_rng(0)
    rows = []
    for genre_index, genre in enumerate(GTZAN_GENRES):
        for i in range(8):
            clip = f"{genre}.{i:05d}"
            image = workdir / "synthetic/images" / f"{clip}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 60, (32, 32)) + 20 * genre_index
            Image.fromarray(pixels.astype(np.uint8)).save(image)
            rows.append(
                {
                    "clip": clip,
                    "segment": 0,
                    "genre": genre,
                    "image": str(image),
                    "label": genre_index,
                }
            )
    index = pd.DataFrame(rows)
    paths = {
        "index": workdir / "synthetic/index.csv",
        "embeddings": workdir / "synthetic/embeddings.npz",
    }
    index[["clip", "segment", "genre", "image"]].to_csv(paths["index"], index=False)
    means = rng.normal(0, 2, (10, 64))
    embeddings = means[index["label"]] + rng.normal(0, 1, (len(index), 64))
    save_embeddings(
        paths["embeddings"], embeddings, index["clip"], index["segment"], index["label"]
    )
    position = index.groupby("genre").cumcount()
    for split, members in (
        ("train", position < 6),
        ("valid", position == 6),
        ("test", position == 7),
    ):
        paths[split] = workdir / f"synthetic/{split}.csv"
        index.loc[members, ["clip", "genre"]].to_csv(paths[split], index=False)
    return paths


def child(args) -> None:
    """Run the trials in this process and print one JSON line of RSS figures."""
    import psutil

    from genreflow.journal import journal_storage
    from genreflow.models.data import load_model_data
    from genreflow.tuning import trial as trial_module
    from genreflow.tuning.space import RoundPlan, make_sampler
    from genreflow.tuning.study import claim_trial
    from genreflow.tuning.trial import TrialRule
    from genreflow.tuning.worker import RoundContext, run_trial

    if args.cleanup in ("keras", "none"):
        trial_module._forget_custom_gradients = lambda kept: None
    if args.cleanup == "none":
        import keras

        keras.backend.clear_session = lambda *a, **k: None
        trial_module.gc.collect = lambda *a, **k: 0
    inputs = {key: Path(value) for key, value in json.loads(args.inputs).items()}
    manifests = {split: str(inputs[split]) for split in ("train", "valid", "test")}
    transfer = load_model_data(
        "vgg16", str(inputs["index"]), manifests, GTZAN_GENRES, args.image_size, str(inputs["embeddings"])
    )
    baseline = load_model_data(
        "baseline_cnn", str(inputs["index"]), manifests, GTZAN_GENRES, args.image_size
    )
    space = {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "units": {"type": "int", "low": 16, "high": 64, "log": True},
    }
    plans = {
        "transfer": RoundPlan.from_config(
            {"nuisance": space, "sampler": "random", "n_trials": args.trials}, "transfer"
        ),
        "baseline": RoundPlan.from_config(
            {"nuisance": space, "sampler": "random", "n_trials": args.trials}, "baseline"
        ),
    }
    contexts = {
        kind: RoundContext(plans[kind], defaults, {}, TrialRule(plans[kind].objective, 8),
                           data=data)
        for kind, defaults, data in (("transfer", TRANSFER_DEFAULTS, transfer),
                                     ("baseline", BASELINE_DEFAULTS, baseline))
    }
    import optuna

    with tempfile.TemporaryDirectory() as folder:
        storage = journal_storage(Path(folder) / "memory.journal")
        studies = {
            kind: optuna.create_study(
                storage=storage,
                study_name=kind,
                direction="maximize",
                sampler=make_sampler(plans[kind]),
            )
            for kind in plans
        }
        process = psutil.Process()
        rss, started = [], time.perf_counter()
        for number in range(args.trials):
            kind = "transfer" if number % 2 == 0 else "baseline"
            trial = claim_trial(studies[kind], args.trials, 0, "memory")
            run_trial(studies[kind], trial, contexts[kind], log=lambda message: None)
            rss.append(process.memory_info().rss / 2**20)
    print(json.dumps({"rss_mb": rss, "seconds": time.perf_counter() - started}))


def summary(name: str, rss: list[float], seconds: float) -> str:
    import numpy as np

    n = len(rss)
    warm = min(10, n) - 1
    slope = np.polyfit(np.arange(warm, n), rss[warm:], 1)[0] if n - warm > 2 else float("nan")
    marks = "  ".join(f"#{i}: {rss[i - 1]:.0f}" for i in (1, 5, 10, 20, 30, 40, 50) if i <= n)
    return (
        f"{name:>24}: RSS MB {marks}\n{'':>26}growth trial 10 -> {n}: {rss[-1] - rss[warm]:+.1f} MB "
        f"({slope:+.2f} MB/trial), {seconds:.0f} s for {n} trials"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir", default=".", help="a finished demo run (or a folder for synthetic data)"
    )
    parser.add_argument("--feature", default="stft")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cleanup", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    workdir = Path(args.workdir).resolve()
    os.chdir(workdir)  # feature indexes list images relative to the working directory
    inputs = demo_inputs(workdir, args.feature)
    image_size, source = 0, f"demo results in {workdir} (vgg16 + {args.feature})"
    if inputs is None:
        inputs, source = synthetic_inputs(workdir), f"synthetic data written to {workdir}/synthetic"
        image_size = 32
    else:
        import pandas as pd
        from PIL import Image

        with Image.open(pd.read_csv(inputs["index"])["image"].iloc[0]) as image:
            image_size = image.size[0]
    print(
        f"{args.trials} trials per variant on {source}, {image_size} px images, {os.cpu_count()} CPUs"
    )
    variants = (
        ("genreflow cleanup", "full"),
        ("clear_session + gc only", "keras"),
        ("no cleanup", "none"),
    )
    for name, cleanup in variants:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--trials",
                str(args.trials),
                "--image-size",
                str(image_size),
                "--inputs",
                json.dumps({k: str(v) for k, v in inputs.items()}),
                "--cleanup",
                cleanup,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(summary(name, figures["rss_mb"], figures["seconds"]), flush=True)


if __name__ == "__main__":
    main()
