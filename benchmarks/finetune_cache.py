"""Fine-tuning trials on cached activations against the same trials end to end, side by side.

For each backbone, a `last_block` fine-tuning trial (head + the backbone's last block) is
trained for `--epochs` epochs on `--images` random grayscale images of `--size` pixels,
`--trials` times in one process as a tuning job runs them: end to end (the whole backbone
forward, and backward through the tail, every epoch of every trial) and on the activations
below the tail (`genreflow.models.activations`: one frozen forward pass per job, then the tail).
Prints seconds per trial (median over `--repeats` jobs of each kind), the ratio, and how far
the models' validation probabilities are from the end-to-end model's after training, for
float32 storage (the default: the same model) and float16 (`training.activation_storage`,
half the memory: the cache's size per image is shown).

Usage: python benchmarks/finetune_cache.py [--backbones vgg16 resnet50 --size 224
       --images 48 --epochs 2 --trials 3 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HEAD = {"dense_layers": 1, "units": 64, "dropout": 0.3, "activation": "relu",
        "batch_norm": False, "learning_rate": 1e-4, "batch_size": 16,
        "trainable_layers": "last_block"}


def _corpus(directory: Path, n: int, size: int, genres: int):
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = {}
    for split, count in (("train", n), ("valid", max(n // 4, genres)), ("test", genres)):
        rows = []
        for i in range(count):
            label = i % genres
            pixels = rng.integers(0, 120, (size, size)).astype(np.uint8)
            pixels[label * size // genres:(label + 1) * size // genres] += 120
            path = directory / f"{split}{i}.png"
            Image.fromarray(pixels, mode="L").save(path)
            rows.append({"clip": f"{split}{i}", "segment": 0, "genre": str(label),
                         "image": str(path), "label": label})
        frames[split] = pd.DataFrame(rows)
    return frames


def _job(name, examples, size, epochs, trials, end_to_end, storage="float32"):
    """One tuning job's worth of trials; seconds per trial, last model's probabilities,
    and what the cache held."""
    import keras
    import numpy as np

    from genreflow.models.backbones import compute_embeddings
    from genreflow.models.build import build_model, end_to_end_model
    from genreflow.models.data import ModelData
    from genreflow.models.heads import feature_statistics
    from genreflow.models.train import predict_proba, train

    keras.backend.clear_session()
    stats = feature_statistics(compute_embeddings(name, size, None, list(examples["train"]["image"])))
    said = []
    data = ModelData(kind="transfer", backbone=name, genres=[str(g) for g in range(3)],
                     image_size=size, weights=None, examples=examples, stats=stats,
                     activation_storage=storage, log=said.append)
    start = time.perf_counter()
    for trial in range(trials):
        keras.backend.clear_session()
        built = (end_to_end_model if end_to_end else build_model)(data, {**HEAD, "epochs": epochs},
                                                                  seed=0)
        train(built.model, built.train_data, built.validation, epochs=epochs, patience=epochs,
              batch_size=built.batch_size, seed=0)
        probabilities = predict_proba(built.model, built.validation.inputs)
    seconds = (time.perf_counter() - start) / trials
    cache = None
    if not end_to_end:
        stored = data.activations.by_k
        (values,) = [split["train"] for split in stored.values()]
        cache = (sum(int(np.prod(v.shape[1:])) for v in values), values[0].dtype,
                 sum(v[0].nbytes for v in values))
    return seconds, probabilities, cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from genreflow.jobs import prepare_tensorflow

    prepare_tensorflow(threads=os.cpu_count(), log=lambda *a: None)
    with tempfile.TemporaryDirectory() as tmp:
        examples = _corpus(Path(tmp), args.images, args.size, 3)
        print(f"{args.images} train + {len(examples['valid'])} valid images of {args.size} px, "
              f"{args.trials} last_block trials x {args.epochs} epochs per job, "
              f"median of {args.repeats} jobs each")
        print("| backbone | end to end s/trial | cached float32 s/trial | ratio | "
              "max prob. difference | cached float16 s/trial | float16 per image | "
              "max prob. difference |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.backbones:
            times = {"whole": [], "float32": [], "float16": []}
            for _ in range(args.repeats):  # interleaved, so that load drifts hit all alike
                seconds, p_whole, _ = _job(name, examples, args.size, args.epochs, args.trials, True)
                times["whole"].append(seconds)
                seconds, p32, _ = _job(name, examples, args.size, args.epochs, args.trials, False)
                times["float32"].append(seconds)
                seconds, p16, cache = _job(name, examples, args.size, args.epochs, args.trials,
                                           False, "float16")
                times["float16"].append(seconds)
            values, dtype, nbytes = cache
            a, b, c = (statistics.median(times[kind]) for kind in ("whole", "float32", "float16"))
            print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.1f}x | "
                  f"{float(np.max(np.abs(p_whole - p32))):.1e} | {c:.1f} | "
                  f"{values:,} values as {dtype}, {nbytes / 1024:.0f} KiB | "
                  f"{float(np.max(np.abs(p_whole - p16))):.1e} |", flush=True)


if __name__ == "__main__":
    main()
