"""The shift gap: how much of the chosen model's test score survives when only the recording
changes. A synthetic corpus of N tracks per genre (default 30) is written and the workflow
runs on it (the repository's config.yaml: musicnn and image backbones, three tuning rounds)
up to `snakemake robustness`; the model chosen on validation is scored on its clean test
split and on the second rendering of the same test songs (other instruments, another room,
EQ and noise), with the paired interval of the difference. The same for every training
variant in VARIANTS, side by side, with the paired difference between variants on the
second rendering and what each variant costs in time.

VARIANTS: "off" (no augmentation: config.yaml as it is) and "on" (training.augment: 2
views per training track from the default families, random EQ curves, band limits,
coloured noise and rooms; every round of every chain, the baseline CNN's too, trains with
them: `augment: audio` in the defaults). What a variant costs is its jobs' CPU time
(Snakemake's benchmark files; the machine is shared, so wall times are inflated by other
runs' load), in all and for the tuning and final training jobs and the views' own jobs.

`--reuse NAME=DIR` takes a variant's finished run from DIR (a --keep folder of an earlier
invocation) instead of running it, e.g. the "off" run of the code before augmentation.

Usage: python benchmarks/robustness.py [--clips-per-genre 30] [--seconds 10.0]
       [--cores 2] [--variants off on] [--perturbations] [--keep DIR] [--reuse off=DIR]
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
    "on": {
        "training": {"augment": {"views": 2}},
        "tuning": {"defaults": {"augment": "audio"},
                   "baseline": {"defaults": {"augment": "audio"}}},
    },
}
# the jobs that make the augmented views, their images and their embeddings
VIEW_RULES = ("perturb_training_clips", "make_view_images", "embed_view_images",
              "embed_view_audio")


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
    (workdir / "wall.json").write_text(json.dumps({"wall_s": wall}))
    return finished_run(name, workdir)


def finished_run(name: str, workdir: Path) -> dict:
    """A variant's finished run in `workdir`: its robustness headline and its costs."""
    headline = json.loads((workdir / "results/robustness/headline.json").read_text())
    wall = workdir / "wall.json"
    return {"name": name, "workdir": workdir, "headline": headline,
            "wall_s": json.loads(wall.read_text())["wall_s"] if wall.exists() else float("nan"),
            "training_s": sum(_benchmark(workdir, rule, "s") for rule in ("tune_round",
                                                                          "train_final")),
            "training_cpu_s": sum(_benchmark(workdir, rule, "cpu_time")
                                  for rule in ("tune_round", "train_final")),
            "views_cpu_s": sum(_benchmark(workdir, rule, "cpu_time") for rule in VIEW_RULES),
            "cpu_s": _benchmark(workdir, "", "cpu_time")}


def _benchmark(workdir: Path, rule: str, column: str) -> float:
    """The sum of `column` (s: wall seconds, cpu_time: CPU seconds) over every job of `rule`
    (every rule with benchmark files: ""), from Snakemake's benchmark files."""
    import pandas as pd

    files = list((workdir / "benchmarks" / rule).rglob("*.tsv"))
    return float(sum(pd.read_csv(path, sep="\t")[column].iloc[-1] for path in files))


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


def gap_change(on: dict, off: dict, genres, bootstrap):
    """(gap of `on` - gap of `off`) in test macro-F1, gap = second rendering - clean, over
    the same stratified resamples of the test tracks (four scores of the same tracks: the
    continuity correction of each, as genreflow.intervals' paired difference has two)."""
    import numpy as np

    from genreflow.intervals import _interval, _seed_means, stratified_resamples

    tracks = {(variant["name"], condition): chosen_tracks(variant, condition)
              for variant in (on, off) for condition in ("clean", "second_rendering")}
    labels = tracks[(off["name"], "clean")].labels
    rows = stratified_resamples(labels, bootstrap.resamples, bootstrap.seed)
    values = {}
    for name, these in (("whole", np.arange(labels.size)[None]), ("sampled", rows)):
        f1 = {key: _seed_means(labels, t.predicted, len(genres), these)["macro_f1"]
              for key, t in tracks.items()}
        values[name] = ((f1[(on["name"], "second_rendering")] - f1[(on["name"], "clean")])
                        - (f1[(off["name"], "second_rendering")] - f1[(off["name"], "clean")]))
    return _interval(values["whole"][0], values["sampled"], "macro_f1", bootstrap.confidence,
                     labels, (-2.0, 2.0), scores=4)


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
            f"run {result['wall_s']:.0f} s wall, jobs' CPU {result['cpu_s']:.0f} s, of which "
            f"tuning and final training {result['training_cpu_s']:.0f} s "
            f"({result['training_s']:.0f} s wall) and the views' jobs "
            f"{result['views_cpu_s']:.0f} s")


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
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR",
                        help="take variant NAME's finished run from DIR instead of running it")
    args = parser.parse_args()
    reused = dict(item.split("=", 1) for item in args.reuse)

    from genreflow.config import validate_config
    from genreflow.intervals import Bootstrap, bracket, paired_difference

    bootstrap = Bootstrap.from_config(validate_config({})["bootstrap"])
    root = args.keep or Path(tempfile.mkdtemp(prefix="genreflow-robustness-"))
    print(f"synthetic corpus, {args.clips_per_genre} tracks per genre of {args.seconds:g} s; "
          f"config.yaml's models; {args.cores} cores; runs in {root}", flush=True)
    try:
        results = []
        for name in args.variants:
            if name in reused:
                results.append(finished_run(name, Path(reused[name])))
            else:
                results.append(run_variant(name, VARIANTS[name], args, root))
            print(describe(results[-1]), flush=True)
        base = results[0]
        genres = yaml.safe_load((base["workdir"] / "config.yaml").read_text())["dataset"]["genres"]
        for other in results[1:]:
            # two variants' chosen models on the same test tracks, clean and second-rendered
            for condition in ("clean", "second_rendering"):
                a, b = chosen_tracks(other, condition), chosen_tracks(base, condition)
                if list(a.clips) != list(b.clips):
                    raise SystemExit(f"{other['name']} and {base['name']} have other test "
                                     "tracks: their corpora or splits differ")
                delta = paired_difference(b.labels, a.predicted, b.predicted, len(genres),
                                          bootstrap)["macro_f1"]
                print(f"{other['name']} - {base['name']} on {condition}: "
                      f"{delta.estimate:+.3f} {bracket(delta.low, delta.high, True)} (paired)")
            change = gap_change(other, base, genres, bootstrap)
            print(f"gap of {other['name']} - gap of {base['name']}: {change.estimate:+.3f} "
                  f"{bracket(change.low, change.high, True)} (paired)")
            print(f"{other['name']} / {base['name']}: jobs' CPU "
                  f"x{other['cpu_s'] / base['cpu_s']:.2f}, tuning and final training CPU "
                  f"x{other['training_cpu_s'] / base['training_cpu_s']:.2f}, wall "
                  f"x{other['wall_s'] / base['wall_s']:.2f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
