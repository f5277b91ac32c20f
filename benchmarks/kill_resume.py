"""Kill -9 at a random moment of make_images, tune_round and train_final, then go on as
the README says (`snakemake --unlock`, then the same command): does every run resume
without a hand edit, and is nothing finished lost?

Each kill takes Snakemake and the job's process down at once (SIGKILL to both, as a lost
node or `kill -9` of the run would), at a random moment of the job's life. Checked after
the resumed run, against one clean run of the same tiny workflow:

- make_images: every image and feature index byte-identical to the clean run's;
- tune_round: every trial that had completed before the kill is still there with its value,
  and the round counts exactly n_trials trials;
- train_final: every seed's metrics equal the clean run's (training is deterministic).

Usage: python benchmarks/kill_resume.py [--kills 12] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

N_TRIALS = 6
CONFIG = {
    "dataset": {"kind": "gtzan", "root": "corpus"},
    "audio": {"seconds": 6.0, "min_seconds": 3.0},
    "features": {"image_size": 32, "shard_size": 10},
    "backbones": {"names": ["vgg16"], "weights": "none"},
    "segments": {"compare": None},
    "screening": {"features": ["mel"], "epochs": 3, "patience": 2},
    "tuning": {
        "combinations": [{"backbone": "vgg16", "feature": "mel"}],
        "pruner": {"kind": "none"},
        "defaults": {"epochs": 30, "batch_size": 8, "units": 32},
        "patience": 30,
        "baseline": {"enabled": False},
        "rounds": [{"nuisance": {"learning_rate": {"type": "float", "low": 1.0e-3,
                                                   "high": 1.0e-2, "log": True}},
                    "fixed": {"trainable_layers": 0}, "sampler": "qmc", "n_trials": N_TRIALS}],
    },
    "evaluation": {"seeds": [0, 1, 2]},
}
TARGETS = {
    "make_images": ["results/features/mel/index.csv"],
    "tune_round": ["tuning"],
    "train_final": ["final"],
}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
               "--cores", "2", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def prepare(work: Path) -> dict[str, Path]:
    """Snapshots of the tiny workflow before each killed stage, and a clean finished run."""
    from genreflow.synthetic import write_corpus

    base = work / "base"
    write_corpus(base / "corpus", 6, 6.0, log=lambda message: None)
    (base / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    snakemake(base, "results/corpus/clips.csv", "results/splits/test.csv")
    snapshots = {"make_images": base}
    after_images = work / "after_images"
    shutil.copytree(base, after_images, symlinks=True)
    snakemake(after_images, "results/embeddings/vgg16/mel.npz")
    snapshots["tune_round"] = after_images
    after_tuning = work / "after_tuning"
    shutil.copytree(after_images, after_tuning, symlinks=True)
    snakemake(after_tuning, "tuning")
    snapshots["train_final"] = after_tuning
    clean = work / "clean"
    shutil.copytree(after_tuning, clean, symlinks=True)
    snakemake(clean, "final")
    snapshots["clean"] = clean
    return snapshots


def _digests(folder: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob(pattern)) if p.is_file()}


def _job_processes(runner: subprocess.Popen, rule: str):
    import psutil

    try:
        children = psutil.Process(runner.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if any(f"{rule}.py" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _completed_trials(workdir: Path) -> dict[int, float]:
    import optuna
    from genreflow.journal import journal_storage

    journal = workdir / "results/tuning/vgg16/mel/round_0/study.journal"
    if not journal.exists():
        return {}
    try:
        storage = journal_storage(journal, log=lambda message: None)
        summaries = storage.get_all_studies()
        if not summaries:
            return {}
        study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    except Exception:
        return {}
    return {t.number: t.value for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE}


def kill_once(rule: str, source: Path, workdir: Path, rng: random.Random) -> dict:
    shutil.copytree(source, workdir, symlinks=True)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
               "--cores", "2", *TARGETS[rule]]
    runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 600
    jobs = []
    while time.time() < deadline and runner.poll() is None and not jobs:
        jobs = _job_processes(runner, rule)
        time.sleep(0.05)
    if not jobs:
        runner.kill()
        return {"rule": rule, "killed": False}
    started = time.time()
    # a random moment of the job's life (a make_images job lasts ~2-3 s, a
    # tuning worker ~60 s, a final seed ~10 s); some kills land after the job ended
    delay = rng.uniform(0.2, {"make_images": 2.0, "tune_round": 20.0, "train_final": 12.0}[rule])
    while time.time() - started < delay and runner.poll() is None:
        time.sleep(0.05)
    completed_before = _completed_trials(workdir) if rule == "tune_round" else {}
    victims = _job_processes(runner, rule)
    for process in victims:
        process.send_signal(signal.SIGKILL)
    try:
        runner.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    runner.wait()
    moment = time.time() - started
    resumed = time.time()
    unlock = snakemake(workdir, "--unlock", check=False)
    rerun = snakemake(workdir, *TARGETS[rule], check=False)
    record = {"rule": rule, "killed": bool(victims), "moment_s": round(moment, 1),
              "resumed": unlock.returncode == 0 and rerun.returncode == 0,
              "resume_s": round(time.time() - resumed, 1)}
    if rule == "tune_round":
        after = _completed_trials(workdir)
        best = json.loads((workdir / "results/tuning/vgg16/mel/round_0/best_trial.json").read_text())
        record["trials_completed_before_kill"] = len(completed_before)
        record["trials_kept"] = all(after.get(n) == v for n, v in completed_before.items())
        record["counted"] = best["n_complete"] + best["n_pruned"] + best["n_failed"]
        record["ok"] = record["resumed"] and record["trials_kept"] and record["counted"] == N_TRIALS
    return record


def check_against_clean(rule: str, workdir: Path, clean: Path, record: dict) -> None:
    if rule == "make_images":
        same = (_digests(workdir, "results/features/mel/**/*")
                == _digests(clean, "results/features/mel/**/*"))
        record["images_identical"] = same
        record["ok"] = record["resumed"] and same
    elif rule == "train_final":
        def scores(folder):
            return [json.loads(p.read_text())["test"] for p in
                    sorted(folder.glob("results/final/vgg16/mel/round_0/seed_*/metrics.json"))]
        same = scores(workdir) == scores(clean) and len(scores(workdir)) == 3
        record["seeds_identical"] = same
        record["ok"] = record["resumed"] and same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="genreflow-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    print(f"preparing snapshots in {work} ...", flush=True)
    snapshots = prepare(work)
    rules = list(TARGETS)
    records = []
    for kill in range(args.kills):
        rule = rules[kill % len(rules)]
        workdir = work / f"kill_{kill:02d}_{rule}"
        record = kill_once(rule, snapshots[rule], workdir, rng)
        if record.get("resumed"):
            check_against_clean(rule, workdir, snapshots["clean"], record)
        records.append(record)
        print(json.dumps(record), flush=True)
    print("\nrule          kills  resumed without a hand edit  nothing lost")
    for rule in rules:
        mine = [r for r in records if r["rule"] == rule and r.get("killed")]
        print(f"{rule:13s} {len(mine):5d}  {sum(r['resumed'] for r in mine):27d}  "
              f"{sum(bool(r.get('ok')) for r in mine):12d}")
    failures = [r for r in records if r.get("killed") and not r.get("ok")]
    print(f"\n{len(records)} kills, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
