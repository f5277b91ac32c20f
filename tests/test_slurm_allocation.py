"""The whole study in one Slurm allocation (issue 25): profiles/slurm/whole-study.sbatch runs
Snakemake inside one `sbatch` job, each Snakemake job as an srun job step
(genreflow.slurm.step) with its own CPUs, memory and GPUs, and survives its time limit.

genreflow.slurm.step's unit tests are in tests/test_slurm_step.py. These run on the local single-node
Slurm (tests/slurm/start-local-slurm.sh: 16 CPUs, 2 fake GPUs), with an `sbatch` wrapper
first on PATH that logs every call: the allocation inherits PATH, so a submission from
inside it would be counted too.
"""

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from test_slurm import local_slurm, slurm  # noqa: F401 (the fixture: cluster up, or skip/fail)

SBATCH_SCRIPT = REPO / "profiles" / "slurm" / "whole-study.sbatch"
SMALL_WORKFLOW = REPO / "tests" / "slurm" / "Snakefile.allocation"


# ---------------------------------------------------------------- the script (genreflow.slurm.step: tests/test_slurm_step.py)
def test_the_script_header_keeps_what_the_time_limit_needs():
    text = SBATCH_SCRIPT.read_text()
    for line in ("#SBATCH --signal=B:USR1@300", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "#SBATCH --gpus=2", "#SBATCH --time="):
        assert line in text, line
    assert os.access(SBATCH_SCRIPT, os.X_OK) or text.startswith("#!/usr/bin/env bash")


# ---------------------------------------------------------------- on the local Slurm cluster
def counting_sbatch(folder):
    """A folder whose `sbatch` logs its call to folder/calls.log and runs the real one."""
    real = shutil.which("sbatch")
    assert real, "no sbatch on PATH"
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "sbatch"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/calls.log"\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return folder / "calls.log"


def submit(workdir, sbatch_options, snakemake_args, env):
    done = subprocess.run(["sbatch", "--parsable", *sbatch_options, str(SBATCH_SCRIPT), *snakemake_args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().split(";")[0]


def job_state(job_id):
    done = slurm("scontrol", "show", "job", job_id)
    found = re.search(r"JobState=(\S+)", done.stdout)
    return found.group(1) if found else "GONE"


def wait_for(job_id, states, timeout, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(job_id)
        if state in states:
            return state
        time.sleep(1)
    slurm("scancel", job_id)
    pytest.fail(f"Slurm job {job_id} not in {states} after {timeout} s (now {job_state(job_id)}):\n"
                f"{log.read_text(errors='replace')[-5000:] if log.exists() else 'no log'}")


def environment(tmp_path):
    calls = counting_sbatch(tmp_path / "bin")
    env = {**os.environ, "GENREFLOW_ALLOW_CPU": "1",  # the cluster's GPUs are fake
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SNAKEMAKE_PROFILE", None)
    return env, calls


@pytest.fixture(scope="module")
def small_allocation(local_slurm, tmp_path_factory):  # noqa: F811
    """Snakefile.allocation through whole-study.sbatch in an allocation of 2 minutes whose
    stop signal comes 75 s early (Slurm sends it up to 30 s earlier still): two GPU jobs
    side by side, then a chain of 5 s jobs that outlasts a start. The job requeues itself at
    each stop until the chain is done; the test lifts the begin time Slurm gives a requeued
    job (a site's delay, minutes on this cluster) so that the next start comes at once."""
    tmp_path = tmp_path_factory.mktemp("allocation")
    workdir = tmp_path / "run"
    workdir.mkdir()
    env, calls = environment(tmp_path)
    job_id = submit(workdir, ["--time=2", "--signal=B:USR1@75", "--cpus-per-task=4", "--mem=4G", "--gpus=2"],
                    ["--snakefile", str(SMALL_WORKFLOW), "--config", "steps=8", "step_seconds=5"], env)
    log = workdir / f"genreflow-{job_id}.log"
    # the first start ends at the signal, and the job waits to start again
    deadline = time.monotonic() + 240
    while "queueing this job again" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, (log.read_text() if log.exists() else "no log")
        time.sleep(1)
    wait_for(job_id, {"PENDING"}, 60, log)
    first = {path.name: path.stat().st_mtime_ns for path in (workdir / "chain").glob("*.txt")}
    # each start stops at its own signal and requeues itself until the chain is done
    # (not at once: a start within a second of the requeue finds the last start's job
    # credential still revoked, and Slurm fails the job: its begin time is there for that)
    deadline = time.monotonic() + 300
    pending_since = None
    while (state := job_state(job_id)) != "COMPLETED":
        assert state in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING") and time.monotonic() < deadline, \
            f"{state}:\n{log.read_text(errors='replace')[-5000:]}"
        if state != "PENDING":
            pending_since = None
        elif pending_since is None:
            pending_since = time.monotonic()
        elif time.monotonic() - pending_since > 5:
            slurm("scontrol", "update", f"jobid={job_id}", "StartTime=now")
            pending_since = None
        time.sleep(1)
    return workdir, log.read_text(), calls.read_text().splitlines(), first


@pytest.mark.slurm
def test_the_whole_workflow_runs_in_one_submission(small_allocation):
    workdir, log, calls, _ = small_allocation
    assert len(calls) == 1, calls
    assert "Snakemake finished: nothing left to do" in log, log[-3000:]
    assert sorted(int(path.stem) for path in (workdir / "chain").glob("*.txt")) == list(range(1, 9))
    # every job was a job step of the one allocation
    steps = re.findall(r"^\[whole-study\] srun .*--job-name=(\w+)", log, re.M)
    assert steps.count("use_a_gpu") == 2 and steps.count("chain_step") >= 8, steps


@pytest.mark.slurm
def test_two_gpu_jobs_at_once_see_different_gpus(small_allocation):
    workdir, _, _, _ = small_allocation
    seen = {}
    for name in ("first", "second"):
        text = (workdir / "gpu" / f"{name}.txt").read_text()
        seen[name] = (re.search(r"SLURM_STEP_GPUS=(\S+)", text).group(1),
                      re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", text).group(1),
                      float(re.search(r"start=(\S+)", text).group(1)),
                      float(re.search(r"end=(\S+)", text).group(1)))
    (gpus_a, cuda_a, start_a, end_a), (gpus_b, cuda_b, start_b, end_b) = seen.values()
    assert start_a < end_b and start_b < end_a, seen  # they ran at the same time
    assert {gpus_a, gpus_b} == {"0", "1"} and {cuda_a, cuda_b} == {"0", "1"}, seen


@pytest.mark.slurm
def test_a_time_limit_loses_no_finished_work(small_allocation):
    workdir, log, _, first = small_allocation
    assert "USR1: the time limit is near" in log and "start 1 of it" in log, log[-3000:]
    finished = re.search(r"(\d+) outputs were finished in this allocation", log)
    assert finished and int(finished.group(1)) > 0, log[-3000:]
    assert 0 < len(first) < 8, first  # the first start stopped half way
    for name, mtime in first.items():
        path = workdir / "chain" / name
        assert path.stat().st_mtime_ns == mtime, f"{name} was made again"
        assert "restart 0" in path.read_text()
    later = [path for path in (workdir / "chain").glob("*.txt") if path.name not in first]
    assert later and all(re.search(r"restart [1-9]", path.read_text()) for path in later)


@pytest.fixture(scope="module")
def tiny_study_allocation(local_slurm, tiny_gtzan_run, tmp_path_factory):  # noqa: F811
    """The tiny GTZAN-shaped run of conftest through whole-study.sbatch, up to the final
    models' summary, in a fresh directory."""
    local_dir, _, _ = tiny_gtzan_run
    tmp_path = tmp_path_factory.mktemp("tiny_allocation")
    workdir = tmp_path / "run"
    workdir.mkdir()
    for item in local_dir.iterdir():
        if item.name not in {"results", "logs", "benchmarks", ".snakemake"} and not item.name.startswith("odd"):
            if item.is_dir():
                shutil.copytree(item, workdir / item.name, symlinks=True)
            else:
                shutil.copy2(item, workdir / item.name)
    env, calls = environment(tmp_path)
    job_id = submit(workdir, ["--time=20", "--cpus-per-task=4", "--mem=12G", "--gpus=2"],
                    ["results/final/summary.csv",  # before --configfile, which takes several
                     "--snakefile", str(REPO / "Snakefile"), "--configfile", "config.yaml"], env)
    log = workdir / f"genreflow-{job_id}.log"
    state = wait_for(job_id, {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}, 900, log)
    return workdir, state, log.read_text(errors="replace"), calls.read_text().splitlines()


@pytest.mark.slurm
def test_the_tiny_study_ends_with_its_summary_after_one_sbatch(tiny_study_allocation):
    workdir, state, log, calls = tiny_study_allocation
    assert state == "COMPLETED", log[-6000:]
    assert len(calls) == 1, calls
    summary = pd.read_csv(workdir / "results/final/summary.csv")
    assert len(summary) >= 2 and summary["test_macro_f1_mean"].between(0, 1).all()
    # the TensorFlow jobs ran as job steps with a GPU of their own
    gpu_steps = re.findall(r"^\[whole-study\] srun .*--job-name=(\w+) .*--gpus=1", log, re.M)
    assert {"embed_images", "tune_round", "train_final"} <= set(gpu_steps), gpu_steps
    job_logs = "\n".join(path.read_text() for path in (workdir / "logs/train_final").rglob("*.log"))
    assert re.search(r"Slurm gave it SLURM_STEP_GPUS=[01] in job step \d+\.\d+", job_logs), job_logs[-3000:]
