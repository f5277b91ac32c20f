"""profiles/slurm/whole-study.sbatch on the real local Slurm cluster (issue 25): the whole
tiny study in one allocation, each job a job step. One run serves every test here.

Start the cluster first: bash tests/slurm/start-local-slurm.sh (see tests/test_slurm.py).
"""

import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, TINY_CONFIG, make_faulty_files, make_tiny_gtzan, write_config
from test_slurm import local_slurm  # noqa: F401  (the fixture: the cluster is up, else skip/fail)

BATCH = REPO / "profiles" / "slurm" / "whole-study.sbatch"
RUN_TIMEOUT = 1500  # seconds; the tiny study takes about 8 minutes in one allocation here
# The allocation: 2 CPUs (two 1-thread GPU jobs side by side), both fake GPUs, and memory for
# two GPU jobs (train_final/tune_round declare 6000 MB each; with 6G srun ran them one by one).
ALLOCATION = ["--cpus-per-task=2", "--mem=16G", "--gpus=2", "--time=40"]
GPU_LINE = re.compile(r"Slurm gave it SLURM_STEP_GPUS=(\S+) in job step (\d+)\.(\d+)")
STAMP = r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n"


def counting_sbatch(folder: Path) -> tuple[Path, Path]:
    """A `sbatch` first on PATH that logs each call and execs the real one: every submission
    of the run, Snakemake's inside the allocation included, is counted."""
    real = shutil.which("sbatch")
    folder.mkdir()
    calls = folder / "sbatch-calls.log"
    wrapper = folder / "sbatch"
    wrapper.write_text(f'#!/bin/sh\necho "sbatch $*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return folder, calls


def step_intervals(workdir: Path, job_id: str) -> dict[str, tuple[str, datetime, datetime]]:
    """Each GPU job step's log -> (its GPUs, start, end). The times are the job's own
    Snakemake's, printed inside the step: when it really ran, not when srun was called (srun
    waits while the step's CPUs, memory or GPUs are held by other steps)."""
    parse = lambda stamp: datetime.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y")  # noqa: E731
    found = {}
    for path in (workdir / "logs/slurm").rglob(f"{job_id}.*.log"):
        text = path.read_text(errors="replace")
        gpus, stamps = GPU_LINE.search(text), re.findall(STAMP, text, re.M)
        if gpus and len(stamps) >= 2:
            assert f"{gpus.group(2)}.{gpus.group(3)}.log" == path.name, f"{path}: {gpus.group(0)}"
            found[str(path.relative_to(workdir))] = (gpus.group(1), parse(stamps[0]), parse(stamps[-1]))
    return found


@pytest.fixture(scope="session")
def whole_study_run(local_slurm, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("whole_study")
    make_faulty_files(make_tiny_gtzan(workdir / "corpus"))
    write_config(workdir, TINY_CONFIG)
    bin_dir, calls = counting_sbatch(tmp_path_factory.mktemp("bin") / "bin")
    # fake GPUs (gres File=/dev/null): TensorFlow sees none, so GPU jobs run on the CPU
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GENREFLOW_ALLOW_CPU": "1"}
    submitted = subprocess.run(
        ["sbatch", "--wait", "--parsable", *ALLOCATION, str(BATCH), "--snakefile", str(REPO / "Snakefile")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    logs = list(workdir.glob(f"genreflow-{job_id}.log"))
    output = logs[0].read_text(errors="replace") if logs else ""
    return workdir, job_id, submitted, output, calls.read_text().splitlines()


@pytest.mark.slurm
def test_the_whole_study_ends_after_one_submission(whole_study_run):
    workdir, job_id, submitted, output, calls = whole_study_run
    assert submitted.returncode == 0, f"{submitted.stderr}\n--- allocation log (tail)\n{output[-6000:]}"
    assert len(calls) == 1, calls  # the study's one sbatch; nothing submitted from inside
    assert (workdir / "results/final/summary.csv").stat().st_size > 0
    assert "Snakemake finished: nothing left to do" in output
    # every job ran as a job step of the one allocation: srun logs under logs/slurm
    step_logs = list((workdir / "logs/slurm").rglob(f"{job_id}.*.log"))
    assert len(step_logs) >= 50, len(step_logs)
    assert not [p for p in (workdir / "logs/slurm").rglob("*.log") if not p.name.startswith(f"{job_id}.")]


@pytest.mark.slurm
def test_gpu_jobs_side_by_side_had_different_gpus(whole_study_run):
    workdir, job_id, _, _, _ = whole_study_run
    gpu_steps = step_intervals(workdir, job_id)
    assert len(gpu_steps) >= 10, f"too few GPU job steps with a 'Slurm gave it' line: {sorted(gpu_steps)}"
    assert {gpus for gpus, _, _ in gpu_steps.values()} <= {"0", "1"}
    overlapping = [
        (a, b) for a in gpu_steps for b in gpu_steps
        if a < b and gpu_steps[a][1] < gpu_steps[b][2] and gpu_steps[b][1] < gpu_steps[a][2]
    ]
    assert overlapping, "no two GPU jobs ran at the same time: the allocation's two GPUs were not both used"
    shared = [(a, b) for a, b in overlapping if gpu_steps[a][0] == gpu_steps[b][0]]
    assert not shared, f"GPU jobs running at once on the same GPU: {shared}"
