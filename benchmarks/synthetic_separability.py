"""How separable is the synthetic demo corpus for a trivial classifier?

Renders the corpus in memory, summarises each clip by its MFCC means (and standard
deviations), and scores a standardised nearest-centroid classifier with stratified
5-fold cross-validation. The generator is meant to sit well above chance (10%) and
well below perfect, with mistakes between related genres; this script is how that
is checked after changing the generator.

    .venv/bin/python benchmarks/synthetic_separability.py --clips-per-genre 20 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import librosa
import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genreflow.names import GTZAN_GENRES
from genreflow.synthetic import render_clip

N_MFCC = 20


def clip_features(job: tuple[str, int, float, int, int]) -> tuple[np.ndarray, float]:
    genre, index, seconds, sample_rate, seed = job
    started = time.perf_counter()
    audio = render_clip(genre, index, seconds, sample_rate=sample_rate, seed=seed)
    elapsed = time.perf_counter() - started
    mfcc = librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=N_MFCC)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]), elapsed


def score(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    model = make_pipeline(StandardScaler(), NearestCentroid())
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=folds)
    return float(np.mean(predicted == labels)), confusion_matrix(labels, predicted, labels=np.arange(len(GTZAN_GENRES)))


def report(name: str, accuracy: float, confusion: np.ndarray, top: int = 6) -> None:
    print(f"\n{name}: nearest-centroid accuracy {accuracy:.3f} (chance {1 / len(GTZAN_GENRES):.3f})")
    per_genre = confusion.diagonal() / confusion.sum(axis=1)
    print("  per genre: " + "  ".join(f"{g} {a:.2f}" for g, a in zip(GTZAN_GENRES, per_genre)))
    pairs = []
    for i in range(len(GTZAN_GENRES)):
        for j in range(i + 1, len(GTZAN_GENRES)):
            pairs.append((int(confusion[i, j] + confusion[j, i]), GTZAN_GENRES[i], GTZAN_GENRES[j]))
    pairs.sort(reverse=True)
    print("  most confused pairs (errors both ways): " + ", ".join(f"{a}/{b} {c}" for c, a, b in pairs[:top] if c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-genre", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.clips_per_genre < 5:
        parser.error("--clips-per-genre must be at least 5 for stratified 5-fold cross-validation")

    jobs = [(g, i, args.seconds, args.sample_rate, args.seed) for g in GTZAN_GENRES for i in range(args.clips_per_genre)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(clip_features, jobs, chunksize=4))
    wall = time.perf_counter() - started
    features = np.stack([f for f, _ in results])
    render_seconds = np.array([t for _, t in results])
    labels = np.repeat(np.arange(len(GTZAN_GENRES)), args.clips_per_genre)

    print(
        f"{len(jobs)} clips x {args.seconds:g} s at {args.sample_rate} Hz, seed {args.seed}: "
        f"render {render_seconds.mean():.3f} s/clip mean, {render_seconds.max():.3f} s max; total wall {wall:.1f} s"
    )
    report("MFCC mean", *score(features[:, :N_MFCC], labels, args.seed))
    report("MFCC mean+std", *score(features, labels, args.seed))


if __name__ == "__main__":
    main()
