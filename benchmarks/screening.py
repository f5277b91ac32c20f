"""Screening benchmarks, measured side by side in one run.

1. The screening jobs (every backbone x feature: embed_images + train_screening, through
   `snakemake --cores N`), against the limit: the backbone forward passes alone over the
   same images, in one warm process (models built beforehand, not timed).
2. Training input: examples per second of a training epoch fed from the PNG files through
   genreflow.models.images.image_dataset, against the same model fed from in-memory arrays.

The corpus is synthetic (30 s clips); its images are made through the workflow first
(not timed). Usage:
    .venv/bin/python benchmarks/screening.py --clips 200 --image-size 224 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKBONES = ["efficientnetb0", "inceptionv3", "resnet50", "vgg16"]
FEATURES = ["mel", "mfcc", "stft", "spectrogram", "chroma"]


def snakemake(workdir: Path, cores: int, *targets: str, extra=()) -> float:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", str(cores), *targets, *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"snakemake failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def prepare(workdir: Path, clips: int, image_size: int) -> None:
    from genreflow.synthetic import write_corpus

    per_genre = max(3, clips // 10)  # three clips per genre: one for each split
    if not (workdir / "corpus/genres_original").exists():
        write_corpus(workdir / "corpus", per_genre, 30.0, log=lambda m: None)
    config = {
        "dataset": {"kind": "gtzan", "root": "corpus"},
        "audio": {"seconds": 30.0, "min_seconds": 10.0},
        "features": {"image_size": image_size},
        "backbones": {"names": BACKBONES, "weights": "none"},
        "screening": {"features": FEATURES, "epochs": 30, "patience": 5},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, os.cpu_count(), *[f"results/features/{f}/index.csv" for f in FEATURES],
              "results/splits/test.csv")


def forward_pass_limit(workdir: Path, image_size: int, threads: int) -> float:
    import pandas as pd

    from genreflow.jobs import prepare_tensorflow
    from genreflow.models.backbones import backbone_spec, build_backbone, embedding_model
    from genreflow.models.images import image_dataset

    prepare_tensorflow(threads, log=lambda message: None, mixed_precision="off")
    total = 0.0
    for backbone in BACKBONES:
        model = embedding_model(build_backbone(backbone, image_size, None))
        for feature in FEATURES:
            index = pd.read_csv(workdir / f"results/features/{feature}/index.csv")
            paths = [str(workdir / path) for path in index["image"]]
            dataset = image_dataset(paths, None, image_size, 32, shuffle=False, seed=0,
                                    preprocess=backbone_spec(backbone).preprocess_input)
            started = time.perf_counter()
            model.predict(dataset, verbose=0)
            total += time.perf_counter() - started
    return total


def training_input(workdir: Path, image_size: int, epochs: int = 3) -> tuple[float, float]:
    """Examples/s of VGG16 with its last block trainable: from files vs from arrays."""
    import numpy as np
    import pandas as pd

    from genreflow.models.backbones import backbone_spec
    from genreflow.models.heads import build_classifier
    from genreflow.models.images import image_dataset, load_images, to_backbone_input

    index = pd.read_csv(workdir / "results/features/mel/index.csv")
    paths = [str(workdir / path) for path in index["image"]]
    labels = np.arange(len(paths)) % 10
    preprocess = backbone_spec("vgg16").preprocess_input
    head = {"trainable_layers": "last_block", "units": 64}

    def rate(fit) -> float:
        model = build_classifier("vgg16", image_size, None, head, seed=0)
        fit(model, 1)  # warm-up epoch: graph tracing, the file pipeline's cache fill
        started = time.perf_counter()
        fit(model, epochs)
        return epochs * len(paths) / (time.perf_counter() - started)

    files = image_dataset(paths, labels, image_size, 32, shuffle=True, seed=0, preprocess=preprocess)
    arrays = np.asarray(to_backbone_input(load_images(paths, image_size)[..., None], preprocess))
    from_files = rate(lambda model, n: model.fit(files, epochs=n, verbose=0))
    from_arrays = rate(lambda model, n: model.fit(arrays, labels, batch_size=32, epochs=n,
                                                  shuffle=True, verbose=0))
    return from_files, from_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "genreflow-screening-bench")
    parser.add_argument("--skip-input", action="store_true", help="skip the training-input benchmark")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.clips, args.image_size)
    n_images = sum(1 for _ in open(args.work / "results/features/mel/index.csv")) - 1
    print(f"{n_images} clips x {len(FEATURES)} image types at {args.image_size} px, "
          f"{len(BACKBONES)} backbones, {args.cores} cores", flush=True)

    jobs, limit = [], []
    for repeat in range(args.repeats):
        jobs.append(snakemake(args.work, args.cores, "results/screening/selection.json",
                              extra=("--forcerun", "embed_images", "train_screening")))
        limit.append(forward_pass_limit(args.work, args.image_size, args.cores))
        print(f"run {repeat + 1}: screening jobs {jobs[-1]:.1f} s, forward passes alone {limit[-1]:.1f} s",
              flush=True)
    med_jobs, med_limit = statistics.median(jobs), statistics.median(limit)
    print(f"\nscreening jobs vs forward passes: {med_jobs / med_limit:.2f}x  (target <= 1.3x); "
          f"medians {med_jobs:.1f} s vs {med_limit:.1f} s")

    if not args.skip_input:
        rates = [training_input(args.work, args.image_size) for _ in range(args.repeats)]
        files = statistics.median(r[0] for r in rates)
        arrays = statistics.median(r[1] for r in rates)
        print(f"training input: {files:.1f} examples/s from files, {arrays:.1f} from arrays: "
              f"{files / arrays:.2f}x  (target >= 0.9x)")


if __name__ == "__main__":
    main()
