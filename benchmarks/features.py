"""Feature benchmarks, measured side by side in one run (medians of --repeats runs).

1. DAG: `snakemake --cores 2` making the five images of N synthetic 30 s clips (check,
   images and indexes), against the best single-process loop doing the same work (decode
   and check, one shared STFT, five PNGs per clip). A two-process loop is printed as well:
   it is the true floor on two cores.
2. Per clip: our path against the paper-style path (five independent librosa calls and a
   matplotlib figure saved per image).
3. `snakemake -n` on the N-clip corpus with every stage that exists.

Usage: .venv/bin/python benchmarks/features.py --clips 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from genreflow.audio import AudioSettings, load_clip  # noqa: E402
from genreflow.config import validate_config  # noqa: E402
from genreflow.features import FeatureComputer, clip_images, png_bytes  # noqa: E402
from genreflow.names import FEATURES
from genreflow.synthetic import write_corpus  # noqa: E402


def corpus(root: Path, clips: int) -> list[Path]:
    per_genre = max(1, clips // 10)
    marker = root / f".complete_{per_genre}"
    if not marker.exists():
        print(f"writing {per_genre * 10} synthetic 30 s clips to {root} (once)", flush=True)
        write_corpus(root, per_genre, 30.0, log=lambda m: None)
        marker.touch()
    return sorted((root / "genres_original").glob("*/*.wav"))[: per_genre * 10]


def bench_config(root: Path, shard_size: int) -> dict:
    return {
        "dataset": {"kind": "gtzan", "root": str(root)},
        "audio": {"seconds": 30.0, "min_seconds": 10.0},
        "features": {"image_size": 224, "shard_size": shard_size},
    }


def run_dag(workdir: Path, root: Path, shard_size: int, targets: list[str]) -> float:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(bench_config(root, shard_size)))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", "2", *targets,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"snakemake failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def loop_worker(args) -> None:
    paths, out_dir = args
    config = validate_config(bench_config(Path("."), 100) | {"dataset": {"kind": "synthetic"}})
    audio = AudioSettings.from_config(config["audio"])
    computer = FeatureComputer(audio.sample_rate, {f: config["features"][f] for f in FEATURES})
    for path in paths:
        y, _ = load_clip(path, audio)
        for feature, pixels in clip_images(computer, y, 224).items():
            target = Path(out_dir) / feature / (Path(path).stem + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png_bytes(pixels))


def run_loop(paths: list[Path], out_dir: Path, processes: int) -> float:
    shutil.rmtree(out_dir, ignore_errors=True)
    chunks = [(paths[i::processes], str(out_dir)) for i in range(processes)]
    started = time.perf_counter()
    if processes == 1:
        loop_worker(chunks[0])
    else:
        # one BLAS thread per process, as Snakemake gives each one-thread job
        # (OPENBLAS_NUM_THREADS etc.); two processes of two BLAS threads each on two cores
        # spin against each other and run at half speed
        saved = {name: os.environ.get(name) for name in BLAS_THREADS}
        os.environ.update({name: "1" for name in BLAS_THREADS})
        try:
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                pool.map(loop_worker, chunks)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return time.perf_counter() - started


def paper_style_clip(path: Path, out_dir: Path) -> None:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y, sr = librosa.load(path, sr=22050, duration=30.0)
    images = {
        "mel": librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), ref=np.max),
        "mfcc": librosa.feature.mfcc(y=y, sr=sr),
        "stft": librosa.amplitude_to_db(np.abs(librosa.stft(y)), ref=np.max),
        "spectrogram": librosa.power_to_db(np.abs(librosa.stft(y)) ** 2, ref=np.max),
        "chroma": librosa.feature.chroma_stft(y=y, sr=sr),
    }
    for name, array in images.items():
        fig, ax = plt.subplots(figsize=(2.24, 2.24), dpi=100)
        librosa.display.specshow(array, sr=sr, ax=ax)
        ax.set_axis_off()
        fig.savefig(out_dir / f"{path.stem}.{name}.png", bbox_inches="tight", pad_inches=0)
        plt.close(fig)


def per_clip(paths: list[Path], out_dir: Path) -> tuple[float, float]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paper_style_clip(paths[0], out_dir)  # warm-up: numba compilation, font cache
    started = time.perf_counter()
    for path in paths:
        paper_style_clip(path, out_dir)
    paper = (time.perf_counter() - started) / len(paths)
    loop_worker((paths[:1], str(out_dir / "warm")))
    started = time.perf_counter()
    loop_worker((paths, str(out_dir / "ours")))
    ours = (time.perf_counter() - started) / len(paths)
    return paper, ours


def dry_run_seconds(workdir: Path, root: Path, shard_size: int) -> float:
    (workdir / "config.yaml").write_text(yaml.safe_dump(bench_config(root, shard_size)))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "-n",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--per-clip-sample", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "genreflow-bench")
    parser.add_argument("--parts", default="dag,per-clip,dry-run",
                        help="comma-separated subset of dag, per-clip, dry-run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    root = args.work / f"corpus"
    paths = corpus(root, args.clips)
    targets = [f"results/features/{f}/index.csv" for f in FEATURES]
    print(f"{len(paths)} clips of 30 s, 224 px images, shard size {args.shard_size}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}", flush=True)

    if "dag" in parts:
        dag_against_loops(args, root, paths, targets)
    if "per-clip" in parts:
        paper, ours = per_clip(paths[: args.per_clip_sample], args.work / "per_clip")
        print(f"\nper clip, five images: paper-style {paper:.3f} s, ours {ours:.3f} s: "
              f"{paper / ours:.1f}x faster  (target >= 5x)")
    if "dry-run" in parts:
        times = [dry_run_seconds(args.work / "dag", root, args.shard_size) for _ in range(args.repeats)]
        print(f"\nsnakemake -n on {len(paths)} clips: median {statistics.median(times):.2f} s  (target < 5 s)")


def dag_against_loops(args, root, paths, targets) -> None:
    dag, loop1, loop2 = [], [], []
    for repeat in range(args.repeats):
        dag.append(run_dag(args.work / "dag", root, args.shard_size, targets))
        loop1.append(run_loop(paths, args.work / "loop1", 1))
        loop2.append(run_loop(paths, args.work / "loop2", 2))
        print(f"run {repeat + 1}: DAG {dag[-1]:.1f} s, 1-process loop {loop1[-1]:.1f} s, "
              f"2-process loop {loop2[-1]:.1f} s", flush=True)
    med = {name: statistics.median(values) for name, values in
           (("dag", dag), ("loop1", loop1), ("loop2", loop2))}
    print(f"\nDAG vs single-process loop: {med['dag'] / med['loop1']:.2f}x  (target <= 1.15x)")
    print(f"DAG vs two-process loop:    {med['dag'] / med['loop2']:.2f}x  (the floor on 2 cores)")
    print(f"medians: DAG {med['dag']:.1f} s, loops {med['loop1']:.1f} s / {med['loop2']:.1f} s, "
          f"{med['dag'] / len(paths) * 1000:.0f} ms per clip through the DAG")



if __name__ == "__main__":
    main()
