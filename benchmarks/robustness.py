"""The shift gap: how much of the chosen model's test score survives when only the recording
changes. A synthetic corpus of N tracks per genre (default 30) is written and the workflow
runs on it (the repository's config.yaml: musicnn and image backbones, three tuning rounds)
up to `snakemake robustness`; the model chosen on validation is scored on its clean test
split and on the second rendering of the same test songs (other instruments, another room,
EQ and noise), with the paired interval of the difference. The same for every training
variant in VARIANTS, side by side, with the paired difference between variants on the
second rendering and what each variant costs in time.

VARIANTS holds "off" (no augmentation) only: the augmented training views of issue 23's
part 2 add their "on" entry (the config overrides that switch them on) here, and the table
gains its column.

Usage: python benchmarks/robustness.py [--clips-per-genre 30] [--seconds 10.0]
       [--cores 2] [--variants off] [--perturbations] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

# Training variants: config overrides merged over config.yaml (genreflow.config.deep_merge).
VARIANTS: dict[str, dict] = {
    "off": {},
}


def run_variant(name: str, overrides: dict, args, root: Path) -> dict:
    """One workflow run in root/<name>; the chosen model's clean and second-rendering rows
    and the run's cost."""
    from genreflow.config import deep_merge

    workdir = root / name
    workdir.mkdir(parents=True, exist_ok=True)
    config = deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()), {
        "dataset": {"synthetic": {"clips_per_genre": args.clips_per_genre,
                                  "seconds": args.seconds}},
        "audio": {"seconds": args.seconds, "min_seconds": min(5.0, args.seconds)},
    })
    if not args.perturbations:
        # set outright: deep_merge of {} would keep config.yaml's perturbations
        config["robustness"]["perturbations"] = {}
    config = deep_merge(config, overrides)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
               "--cores", str(args.cores), "robustness"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    (workdir / "snakemake.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"variant {name}: snakemake failed, see {workdir / 'snakemake.log'}:\n"
                         + (done.stdout + done.stderr)[-3000:])
    headline = json.loads((workdir / "results/robustness/headline.json").read_text())
    training = sum(_benchmark_seconds(workdir, rule) for rule in ("tune_round", "train_final"))
    return {"name": name, "workdir": workdir, "headline": headline, "wall_s": wall,
            "training_s": training}


def _benchmark_seconds(workdir: Path, rule: str) -> float:
    """Wall seconds of every job of `rule`, from Snakemake's benchmark files."""
    import pandas as pd

    files = list((workdir / "benchmarks" / rule).rglob("*.tsv"))
    return float(sum(pd.read_csv(path, sep="\t")["s"].iloc[-1] for path in files))


def chosen_tracks(result: dict, condition: str):
    """The chosen model's track predictions (all seeds) under `condition`."""
    import pandas as pd

    from genreflow.intervals import tracks_of_test_split

    top = result["headline"]
    config = yaml.safe_load((result["workdir"] / "config.yaml").read_text())
    predictions = pd.read_csv(result["workdir"] / "results/robustness/models"
                              / top["backbone"] / top["feature"] / "predictions.csv",
                              dtype={"clip": str})
    rows = predictions[(predictions["round"] == top["round"])
                       & (predictions["condition"] == condition)]
    return tracks_of_test_split(rows, config["dataset"]["genres"])


def describe(result: dict) -> str:
    from genreflow.intervals import bracket

    top = result["headline"]
    clean, second = top["clean"], top["second_rendering"]
    gap = second["delta_macro_f1"]
    return (f"{result['name']}: chosen {top['model']} round {top['round']}; test macro-F1 clean "
            f"{clean['mean']:.3f} {bracket(clean['low'], clean['high'])}, second rendering "
            f"{second['test_macro_f1']['mean']:.3f} "
            f"{bracket(second['test_macro_f1']['low'], second['test_macro_f1']['high'])}; "
            f"gap {gap['mean']:+.3f} {bracket(gap['low'], gap['high'], True)} (paired); "
            f"run {result['wall_s']:.0f} s, of which tuning and final training jobs "
            f"{result['training_s']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-genre", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--perturbations", action="store_true",
                        help="also score the config's perturbations (the gap needs only the "
                             "second rendering)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()

    from genreflow.config import validate_config
    from genreflow.intervals import Bootstrap, bracket, paired_difference

    bootstrap = Bootstrap.from_config(validate_config({})["bootstrap"])
    root = args.keep or Path(tempfile.mkdtemp(prefix="genreflow-robustness-"))
    print(f"synthetic corpus, {args.clips_per_genre} tracks per genre of {args.seconds:g} s; "
          f"config.yaml's models; {args.cores} cores; runs in {root}", flush=True)
    try:
        results = []
        for name in args.variants:
            results.append(run_variant(name, VARIANTS[name], args, root))
            print(describe(results[-1]), flush=True)
        base = results[0]
        for other in results[1:]:
            # two variants' chosen models on the same second-rendered test tracks
            a, b = chosen_tracks(other, "second_rendering"), chosen_tracks(base, "second_rendering")
            genres = yaml.safe_load((base["workdir"] / "config.yaml").read_text())["dataset"]["genres"]
            delta = paired_difference(b.labels, a.predicted, b.predicted, len(genres),
                                      bootstrap)["macro_f1"]
            print(f"{other['name']} - {base['name']} on the second rendering: "
                  f"{delta.estimate:+.3f} {bracket(delta.low, delta.high, True)} (paired); "
                  f"time x{other['wall_s'] / base['wall_s']:.2f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
