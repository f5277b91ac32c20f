"""What `preset=gtzan` costs: per-unit costs measured here at 224 px, multiplied by the
preset's job and trial counts, and the same projected for one GPU.

Measured on this machine, one TensorFlow thread per process (training.threads: 1, two
processes side by side on two cores), median of --repeats timed passes each:
  - images embedded per second by each frozen backbone (screening, segments, and each
    fine-tuning job's one pass over the frozen layers);
  - seconds per image-epoch of a fine-tuning tail (`trainable_layers: last_block`) trained
    on cached activations, validation included;
  - seconds per fold of a head on cached embeddings (GTZAN fold sizes, 30 epochs);
  - seconds per image-epoch of the baseline CNN (the preset's defaults).
Features and musicnn come from their own benchmarks (BENCHMARKS.md).

The counts are upper bounds: every trial runs all its epochs (pruning and early stopping,
which the preset uses, only cut them). The GPU column is a projection, not a measurement:
each backbone's measured CPU costs divided by how much faster an A100 runs its forward pass
(`gpu_factor`: Keras' published A100 inference times over our measured rate), so training
is assumed to speed up as inference does; heads on embeddings keep their CPU cost (tiny
dense nets gain little on a GPU). BENCHMARKS.md gives the source and the caveats.

Usage: PYTHONPATH=workflow_scripts .venv/bin/python benchmarks/study_cost.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

IMAGE_SIZE = 224
N_CLASSES = 10
# GTZAN at the preset's split: 1000 tracks, 70/15/15; cross-validation pools train+valid
# (850) into 5 folds of 680 training and 170 held-out tracks.
TRACKS, TRAIN, VALID, POOL = 1000, 700, 150, 850
FOLDS, FOLD_TRAIN, FOLD_HELD = 5, 680, 170
SEGMENTS_PER_TRACK = {3: 10, 5: 6, 10: 3}  # 30 s clips
HEAD = {"dense_layers": 1, "units": 256, "dropout": 0.5, "activation": "relu",
        "batch_norm": False, "trainable_layers": 0, "learning_rate": 1e-3}
# Published: Keras Applications (https://keras.io/api/applications/), "Time (ms) per
# inference step" on a Tesla A100, batch size 32 (average of 30 batches, 10 repetitions),
# each model at its default input size.
A100_MS_PER_BATCH_OF_32 = {"efficientnetb0": 4.9, "inceptionv3": 6.9, "resnet50": 4.6,
                           "vgg16": 4.2}
# From BENCHMARKS.md: the features DAG on 1000 clips (whole clips, five images each) and
# musicnn's embedding cost per second of audio (a shard of 100 clips x 10 s in 38.6 s).
FEATURES_DAG_S_PER_1000_CLIPS = 204.6
MUSICNN_S_PER_AUDIO_SECOND = 38.6 / (100 * 10)


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(backbones, repeats: int, n_embed: int, n_tail: int) -> dict:
    import keras

    from genreflow.models.activations import (
        activation_dataset,
        build_tail_classifier,
        cut_backbone,
        model_input,
    )
    from genreflow.models.backbones import (
        build_backbone,
        embedding_model,
        resolve_trainable_layers,
    )
    from genreflow.models.baseline import build_baseline_cnn
    from genreflow.models.heads import build_head
    from genreflow.models.train import Validation, train

    rng = np.random.default_rng(0)
    genres = [f"g{i}" for i in range(N_CLASSES)]
    images = rng.uniform(-100, 150, (n_embed, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    tail_images = rng.uniform(-100, 150, (n_tail, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    labels = rng.integers(0, N_CLASSES, n_tail)
    costs = {}

    def per_image_epoch(model, train_data, validation, n_images):
        # one epoch's cost from the difference of a 6- and a 1-epoch fit (compilation and
        # the first epoch's tracing cancel out); train() validates every epoch, as in a trial
        fit = lambda epochs: train(model, train_data, validation, epochs=epochs,  # noqa: E731
                                   patience=epochs, batch_size=32)
        fit(1)  # traces the train and predict functions (untimed)
        one = timed(lambda: fit(1), repeats)
        six = timed(lambda: fit(6), repeats)
        return max(six - one, 1e-9) / 5 / n_images

    for name in backbones:
        keras.backend.clear_session()
        backbone = build_backbone(name, IMAGE_SIZE, None, seed=0)
        embedder = embedding_model(backbone)
        embedder.predict(images[:8], batch_size=32, verbose=0)  # build, trace
        embed_s = timed(lambda: embedder.predict(images, batch_size=32, verbose=0), repeats)
        dim = embedder.output_shape[-1]

        k = resolve_trainable_layers(name, "last_block", len(backbone.layers))
        cut = cut_backbone(backbone, k)
        values = cut.frozen.predict(tail_images, batch_size=32, verbose=0)
        values = values if isinstance(values, list) else [values]
        held = n_tail // 4
        tail = build_tail_classifier(cut, HEAD, N_CLASSES)
        train_data = activation_dataset([v[held:] for v in values], labels[held:n_tail], 32,
                                        True, 0)
        validation = Validation(model_input([v[:held] for v in values]), labels[:held],
                                np.arange(held).astype(str), genres)
        tail_s = per_image_epoch(tail, train_data, validation, n_tail)

        x = rng.normal(size=(FOLD_TRAIN, dim)).astype("float32")
        xv = rng.normal(size=(FOLD_HELD, dim)).astype("float32")
        y, yv = rng.integers(0, N_CLASSES, FOLD_TRAIN), rng.integers(0, N_CLASSES, FOLD_HELD)
        head_fold_s = timed(lambda: train(
            build_head(dim, HEAD, N_CLASSES, seed=0), (x, y),
            Validation(xv, yv, np.arange(FOLD_HELD).astype(str), genres),
            epochs=30, patience=30), repeats)
        costs[name] = {"embed_img_per_s": n_embed / embed_s, "tail_s_per_img_epoch": tail_s,
                       "head_s_per_fold_30_epochs": head_fold_s, "k": k, "dim": dim}
        print(f"{name}: {costs[name]}", flush=True)

    keras.backend.clear_session()
    defaults = {"conv_layers": 3, "kernels": 32, "kernel_size": 3, "stride": 1,
                "conv_dropout": 0.2, "conv_batch_norm": True, "activation": "relu",
                "dense_layers": 1, "units": 128, "dropout": 0.5, "batch_norm": False,
                "learning_rate": 1e-3}
    gray = rng.uniform(0, 1, (n_tail, IMAGE_SIZE, IMAGE_SIZE, 1)).astype("float32")
    held = n_tail // 4
    cnn = build_baseline_cnn(defaults, IMAGE_SIZE, N_CLASSES)
    cnn_s = per_image_epoch(cnn, (gray[held:], labels[held:n_tail]),
                            Validation(gray[:held], labels[:held],
                                       np.arange(held).astype(str), genres), n_tail)
    costs["baseline_cnn"] = {"s_per_img_epoch": cnn_s}
    print(f"baseline_cnn: {costs['baseline_cnn']}", flush=True)
    return costs


def gpu_factor(costs: dict, name: str) -> float:
    """How many times faster one A100 runs `name`'s forward pass than one thread here
    (Keras' published inference time over the measured embedding rate)."""
    a100_img_per_s = 32 / (A100_MS_PER_BATCH_OF_32[name] / 1000)
    return a100_img_per_s / costs[name]["embed_img_per_s"]


def study_rows(costs: dict, backbones) -> list[tuple[str, float, float]]:
    """(stage, CPU job-seconds here, projected GPU seconds) of preset=gtzan."""
    rows = []
    n_features, lengths = 5, SEGMENTS_PER_TRACK
    epochs, cnn_epochs, trials, cnn_trials, seeds = 30, 40, 40, 50, 3
    embed = {b: TRACKS / costs[b]["embed_img_per_s"] for b in backbones}  # s per 1000 images
    gpu = {b: gpu_factor(costs, b) for b in backbones}
    # images: no GPU; the DAG's 2-process wall figure counts as 2 x its seconds of CPU
    features = FEATURES_DAG_S_PER_1000_CLIPS * 2 * (1 + len(lengths))
    rows.append(("features: whole clips + 3/5/10 s segments (CPU only)", features, features))
    screening = sum(embed[b] for b in backbones) * n_features
    rows.append(("screening: 20 embeddings of 1000 images", screening,
                 sum(embed[b] / gpu[b] for b in backbones) * n_features))
    per_segment_image = sum(embed[b] for b in backbones) * sum(lengths.values())
    rows.append(("segments: 4 selected image models x 19 images per track", per_segment_image,
                 sum(embed[b] / gpu[b] * sum(lengths.values()) for b in backbones)))
    musicnn = 2 * MUSICNN_S_PER_AUDIO_SECOND * TRACKS * 30 * (1 + len(lengths))
    rows.append(("musicnn: 2 taggers, whole clips + 3 segment lengths (CPU measured)",
                 musicnn, musicnn / 20))  # musicnn on a GPU: assumed 20x (no source)
    head_trial = {b: FOLDS * costs[b]["head_s_per_fold_30_epochs"] for b in backbones}
    tail_trial = {b: FOLDS * epochs * (FOLD_TRAIN + FOLD_HELD) * costs[b]["tail_s_per_img_epoch"]
                  for b in backbones}
    cache = {b: POOL / TRACKS * embed[b] for b in backbones}  # one frozen pass per job
    # round 0: 1 of its 4 trainable_layers choices is a head (QMC spreads them evenly)
    round0 = sum(trials / 4 * head_trial[b] + trials * 3 / 4 * tail_trial[b] + cache[b]
                 for b in backbones)
    round0_gpu = sum(trials / 4 * head_trial[b] + (trials * 3 / 4 * tail_trial[b] + cache[b])
                     / gpu[b] for b in backbones)
    rows.append(("tuning round 0: 4 image chains x 40 trials x 5 folds (3/4 fine-tune)",
                 round0, round0_gpu))
    rows.append(("tuning rounds 1-2 if round 0 picks a frozen backbone (heads)",
                 sum(2 * trials * head_trial[b] for b in backbones),
                 sum(2 * trials * head_trial[b] for b in backbones)))
    rows.append(("tuning rounds 1-2 if round 0 picks fine-tuning (last_block)",
                 sum(2 * trials * tail_trial[b] for b in backbones),
                 sum(2 * trials * tail_trial[b] / gpu[b] for b in backbones)))
    mean_head = statistics.mean(head_trial.values())
    rows.append(("tuning: 2 musicnn chains x 3 rounds x 40 head trials x 5 folds",
                 2 * 3 * trials * mean_head, 2 * 3 * trials * mean_head))
    cnn = costs["baseline_cnn"]["s_per_img_epoch"]
    cnn_trial = cnn_epochs * (TRAIN + VALID) * cnn
    cnn_gpu = statistics.mean(gpu.values())  # a conv net: the backbones' mean factor
    rows.append(("baseline CNN: 50 trials x 40 epochs (single split)", cnn_trials * cnn_trial,
                 cnn_trials * cnn_trial / cnn_gpu))
    final_ft = sum(3 * seeds * epochs * (TRAIN + VALID) * costs[b]["tail_s_per_img_epoch"]
                   for b in backbones)
    rows.append(("final models: 7 chains x 3 rounds x 3 seeds (image ones fine-tuned)",
                 final_ft + seeds * 3 * cnn_trial,
                 sum(3 * seeds * epochs * (TRAIN + VALID) * costs[b]["tail_s_per_img_epoch"]
                     / gpu[b] for b in backbones) + seeds * 3 * cnn_trial / cnn_gpu))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--embed-images", type=int, default=32)
    parser.add_argument("--tail-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    backbones = sorted(A100_MS_PER_BATCH_OF_32)
    costs = measure(backbones, args.repeats, args.embed_images, args.tail_images)

    print("\n| backbone | images/s embedded | fine-tune tail s per image-epoch (k) | "
          "head s per fold (30 epochs) | A100 forward / ours |")
    print("|---|---:|---:|---:|---:|")
    for b in backbones:
        c = costs[b]
        print(f"| {b} | {c['embed_img_per_s']:.2f} | {c['tail_s_per_img_epoch']:.4f} "
              f"({c['k']}) | {c['head_s_per_fold_30_epochs']:.2f} | {gpu_factor(costs, b):.0f}x |")
    print(f"| baseline CNN | | {costs['baseline_cnn']['s_per_img_epoch']:.4f} (whole net) | | |")

    rows = study_rows(costs, backbones)
    print("\n| stage of preset=gtzan (upper bounds) | CPU job-hours | hours on this 2-core "
          "machine | projected hours on one A100 |")
    print("|---|---:|---:|---:|")
    for stage, cpu, gpu in rows:
        print(f"| {stage} | {cpu / 3600:.1f} | {cpu / 3600 / 2:.1f} | {gpu / 3600:.2f} |")
    totals = {
        "frozen": [r for r in rows if "fine-tuning (last_block)" not in r[0]],
        "fine-tuned": [r for r in rows if "frozen backbone (heads)" not in r[0]],
    }
    for case, chosen in totals.items():
        cpu, gpu = sum(r[1] for r in chosen), sum(r[2] for r in chosen)
        print(f"| **total if round 0 picks {case} backbones** | {cpu / 3600:.1f} | "
              f"{cpu / 3600 / 2:.1f} | {gpu / 3600:.2f} |")


if __name__ == "__main__":
    main()
