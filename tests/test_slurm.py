"""profiles/slurm on a real single-node Slurm cluster on localhost.

Start the cluster first (root; installs munge + Slurm the first time):
    bash tests/slurm/start-local-slurm.sh
.ci/run does that itself. Without the cluster these tests fail under CI (CI=true) and are
skipped, with the reason, on a developer's machine.

Everything is checked against Slurm's own records (squeue, scontrol, the jobcomp log), not
only against what Snakemake printed.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, planned_jobs, snakemake
from PIL import Image

PROFILE = REPO / "profiles" / "slurm"
HERE = REPO / "tests" / "slurm"
TEST_CLUSTER = "localcluster"  # the ClusterName start-local-slurm.sh writes
# What the README tells users to type to install the profile under the name `slurm`.
INSTALL_PROFILE = 'mkdir -p ~/.config/snakemake && ln -s "$PWD/profiles/slurm" ~/.config/snakemake/slurm'
# Test-only: the first status check 2 s after submission (profile: 20 s).
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]
RUN_TIMEOUT = 600  # seconds; the tiny corpus takes about 70 s through Slurm here
COMPARED = ("results/corpus", "results/splits", "results/features")
SLURM_LOGS = [
    os.environ.get("LOCAL_SLURM_LOG", "/tmp/local-slurm-start.log"),
    "/var/log/slurm/slurmctld.log",
    "/var/log/slurm/slurmd.log",
    "/var/log/munge/munged.log",
]


# ---------------------------------------------------------------- the workflow, read statically
@dataclass
class DeclaredRule:
    local: bool  # in `localrules:` or without any action (like `all`)
    gpu: bool  # asks for a GPU in its resources


def declared_rules(snakefiles):
    """Rules of snakefmt-formatted Snakefiles: which run locally, which ask for a GPU."""
    text = "\n".join(Path(path).read_text() for path in snakefiles)
    local = set()
    for match in re.finditer(r"^localrules:[ \t]*(.*)\n((?:[ \t]+\w+,?[ \t]*\n)*)", text, re.M):
        local.update(re.findall(r"\w+", match.group(1) + match.group(2)))
    rules = {}
    for match in re.finditer(r"^(?:rule|checkpoint) (\w+):[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, re.M):
        name, body = match.groups()
        action = re.search(r"^[ \t]+(shell|script|run|wrapper|notebook|cwl|template_engine):", body, re.M)
        resources = re.search(r"^([ \t]+)resources:[ \t]*\n((?:\1[ \t]+.*\n)*)", body, re.M)
        gpu = bool(
            resources
            and re.search(r"^\s*(?:gpu|gpus|nvidia_gpu)\s*=\s*(?!0\b)|^\s*gres\s*=.*gpu", resources.group(2), re.M)
        )
        rules[name] = DeclaredRule(local=name in local or not action, gpu=gpu)
    # `use rule A as B with:` keeps A's action and resources (rules/segments.smk)
    for parent, name in re.findall(r"^use rule (\w+) as (\w+)", text, re.M):
        rules[name] = DeclaredRule(local=name in local, gpu=rules[parent].gpu)
    return rules


def workflow_rules():
    return declared_rules([REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))])


def rule_of(rules, name):
    """A rule the static reading missed is, like Snakemake's default, remote."""
    return rules.get(name, DeclaredRule(local=False, gpu=False))


# ---------------------------------------------------------------- what Snakemake plans and submits
@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: str  # "feature=mel,shard=000", as in --target-jobs
    resources: tuple
    outputs: tuple
    log: str

    @property
    def key(self):
        return f"{self.rule}:{self.wildcards}"

    @property
    def resource(self):
        return dict(self.resources)


def planned(dry_run_output):
    """Every job of a dry run (`snakemake -n`), with its resources after the profile's."""
    jobs = set()
    # Grouped jobs are listed indented under "Group job ..."
    for block in re.split(r"\n(?=[ \t]*(?:local)?(?:rule|checkpoint) \w+:)", dry_run_output):
        head = re.match(r"\s*(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not head:
            continue

        def field_of(name):
            found = re.search(rf"^\s+{name}: (.*)$", block, re.M)
            return found.group(1).strip() if found else ""

        resources = tuple(
            tuple(item.split("=", 1)) for item in field_of("resources").split(", ") if "=" in item
        )
        jobs.add(
            PlannedJob(
                rule=head.group(1),
                wildcards=field_of("wildcards").replace(", ", ","),
                resources=resources,
                outputs=tuple(o for o in field_of("output").split(", ") if o),
                log=field_of("log"),
            )
        )
    return sorted(jobs, key=lambda job: job.key)


def target_jobs(command_line):
    """The jobs (`rule:wildcards`) a Snakemake job command runs, from its --target-jobs."""
    words = shlex.split(command_line)
    if "--target-jobs" not in words:
        return set()
    start = words.index("--target-jobs") + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    return set(words[start:end])


@dataclass
class SbatchCall:
    options: list  # sbatch's own options, before --wrap
    targets: set


def sbatch_calls(output):
    calls = []
    for line in re.findall(r"^sbatch call: (.*)$", output, re.M):
        head, _, wrap = line.partition(" --wrap=")
        calls.append(SbatchCall(shlex.split(head), target_jobs(shlex.split(wrap)[0] if wrap else "")))
    return calls


# ---------------------------------------------------------------- Slurm's own records
def slurm(*args, check=False):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)


@dataclass
class SlurmJob:
    id: str
    state: str
    record: dict  # `scontrol show job`
    targets: set  # from the batch script Slurm stored
    attempt: int


def slurm_jobs(run_id):
    """Every Slurm job of one Snakemake run (the plugin names them after the run's id)."""
    jobs = {}
    listing = slurm("squeue", "-h", "-t", "all", "-n", run_id, "-o", "%i|%T", check=True).stdout
    for line in listing.split():
        job_id, state = line.split("|")
        record = dict(re.findall(r"(\S+?)=(\S*)", slurm("scontrol", "show", "job", "-o", job_id).stdout))
        script = slurm("scontrol", "write", "batch_script", job_id, "-").stdout
        command = next((l for l in script.splitlines() if " -m snakemake " in l), "")
        attempt = re.search(r"--attempt (\d+)", command)
        jobs[job_id] = SlurmJob(job_id, state, record, target_jobs(command), int(attempt.group(1)) if attempt else 0)
    return jobs


def completion_log(run_id):
    """Job id -> final state, from Slurm's job completion log (jobcomp/filetxt)."""
    config = slurm("scontrol", "show", "config").stdout
    location = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    if not location or not Path(location.group(1)).is_file():
        return {}
    states = {}
    for line in Path(location.group(1)).read_text(errors="replace").splitlines():
        if f" Name={run_id} " in line:
            states[re.search(r"JobId=(\d+)", line).group(1)] = re.search(r"JobState=(\S+)", line).group(1)
    return states


def log_tails(lines=30):
    tails = []
    for path in SLURM_LOGS:
        if Path(path).is_file():
            text = Path(path).read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- tail {path}\n" + "\n".join(text))
        else:
            tails.append(f"--- {path}: missing")
    return "\n".join(tails)


def cluster_problem():
    """None if the local test cluster is up and usable, else what is wrong."""
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return "the Slurm commands (sbatch, squeue, scontrol) are not installed"
    ping = slurm("scontrol", "ping")
    if "is UP" not in ping.stdout:
        return f"slurmctld does not answer `scontrol ping`: {(ping.stdout + ping.stderr).strip()}"
    name = re.search(r"^ClusterName\s*=\s*(\S+)", slurm("scontrol", "show", "config").stdout, re.M)
    if not name or name.group(1) != TEST_CLUSTER:
        return (
            f"the Slurm cluster here is {name.group(1) if name else '?'!r}, not the local test cluster "
            f"{TEST_CLUSTER!r}: test jobs are only sent to the latter"
        )
    states = slurm("sinfo", "-h", "-o", "%T").stdout.split()
    if not {"idle", "mixed", "allocated"} & set(states):
        return f"no usable node (sinfo says {states})"
    return None


@pytest.fixture(scope="session")
def local_slurm():
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"local Slurm cluster not usable: {problem}\n{log_tails()}", pytrace=False)
    pytest.skip(f"no local Slurm test cluster ({problem}); start one with `bash tests/slurm/start-local-slurm.sh`")


# ---------------------------------------------------------------- running Snakemake through Slurm
@dataclass
class SlurmRun:
    workdir: Path
    returncode: int
    output: str
    run_id: str
    planned: list
    rules: dict
    targets: list
    jobs: dict = field(default_factory=dict)  # Slurm job id -> SlurmJob
    completed: dict = field(default_factory=dict)  # Slurm job id -> state in the jobcomp log
    calls: list = field(default_factory=list)  # SbatchCall
    cancelled: dict = field(default_factory=dict)  # Slurm job id -> the job it was running
    gpu_rules_in_workflow: set = field(default_factory=set)

    def remote_jobs(self):
        return [job for job in self.planned if not rule_of(self.rules, job.rule).local]

    def local_jobs(self):
        return [job for job in self.planned if rule_of(self.rules, job.rule).local]

    def slurm_jobs_running(self, key):
        return [job for job in self.jobs.values() if key in job.targets]

    def explain(self):
        states = {job_id: (job.state, sorted(job.targets)[:3]) for job_id, job in self.jobs.items()}
        return f"Slurm jobs: {states}\njobcomp: {self.completed}\n--- snakemake output (tail)\n{self.output[-5000:]}"


def run_through_slurm(workdir, snakemake_args, rules, env=None, targets=(), while_running=None):
    """Run Snakemake with a Slurm profile in `workdir` (its working directory, as a user would)
    and collect Slurm's records of its jobs. `while_running(run)` is polled during the run."""
    env = env or {**os.environ, "GENREFLOW_ALLOW_CPU": "1"}  # fake GPUs: see installed_profile_env
    command = [sys.executable, "-m", "snakemake", *snakemake_args]
    dry = subprocess.run([*command, "-n", *targets], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, f"dry run failed:\n{(dry.stdout + dry.stderr)[-6000:]}"
    run = SlurmRun(workdir, -1, "", "", planned(dry.stdout + dry.stderr), rules, list(targets))
    log_path = workdir / "slurm-run.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, *FAST_STATUS, "--verbose", *targets],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.send_signal(signal.SIGINT)  # Snakemake ignores SIGTERM while waiting for jobs
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                break
            time.sleep(0.3)
            if not run.run_id:
                found = re.search(r"SLURM run ID: (\S+)", log_path.read_text(errors="replace"))
                run.run_id = found.group(1) if found else ""
            elif while_running:
                while_running(run)
        run.returncode = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
        if run.run_id:
            slurm("scancel", "-n", run.run_id)  # whatever is left of this run only
    run.output = log_path.read_text(errors="replace")
    assert run.run_id, f"no `SLURM run ID` in the output: was the slurm executor used?\n{run.output[-6000:]}"
    run.jobs = slurm_jobs(run.run_id)
    run.completed = completion_log(run.run_id)
    run.calls = sbatch_calls(run.output)
    return run


def cancel_one_running(rule):
    """A while_running hook: scancel the first Slurm job seen running a job of `rule` that has
    started (its log exists) and not finished (an output is missing)."""

    def hook(run):
        if run.cancelled:
            return
        by_key = {job.key: job for job in run.planned}
        for job_id in slurm("squeue", "-h", "-n", run.run_id, "-t", "R", "-o", "%i").stdout.split():
            script = slurm("scontrol", "write", "batch_script", job_id, "-").stdout
            command = next((l for l in script.splitlines() if " -m snakemake " in l), "")
            for key in sorted(target_jobs(command)):
                job = by_key.get(key)
                if (
                    job and job.rule == rule and job.log and (run.workdir / job.log).exists()
                    and not all((run.workdir / out).exists() for out in job.outputs)
                ):
                    if slurm("scancel", job_id).returncode == 0:
                        run.cancelled[job_id] = key
                    return

    return hook


def expected_gpu_request(resources):
    """(sbatch options, Slurm record entries) that a job's resources must turn into."""
    gres, model = resources.get("gres", ""), resources.get("gpu_model", "")
    gpus = int(resources.get("gpu", 0) or 0)
    options, record = [], {}
    if gres:
        options.append(f"--gres={gres}")
        record["TresPerNode"] = f"gres:{gres}"
    if model:
        options.append(f"--gpus={model}:{gpus or 1}")
        record["TresPerJob"] = f"gres:gpu:{model}:{gpus or 1}"
    elif gpus:
        options.append(f"--gpus={gpus}")
        record["TresPerJob"] = f"gres:gpu:{gpus}"
    return options, record


def gpu_request_problems(run):
    """Every job Slurm ran asked for GPUs exactly as its resources (rule + profile) say:
    in the sbatch call Snakemake made and in Slurm's record of the job."""
    problems = []
    for job in run.remote_jobs():
        options, record = expected_gpu_request(job.resource)
        calls = [call for call in run.calls if job.key in call.targets]
        if not calls:
            problems.append(f"{job.key}: no sbatch call")
        for call in calls:
            asked = sorted(o for o in call.options if o.startswith(("--gpus=", "--gres=")))
            if len(call.targets) == 1 and asked != sorted(options):
                problems.append(f"{job.key}: sbatch got {asked}, resources {job.resource} need {options}")
        for slurm_job in run.slurm_jobs_running(job.key):
            got = {key: slurm_job.record.get(key, "") for key in ("TresPerJob", "TresPerNode")}
            gpu_in_record = any("gpu" in value for value in got.values())
            if record and any(got[key] != value for key, value in record.items()):
                problems.append(f"{job.key}: Slurm job {slurm_job.id} has {got}, expected {record}")
            if not record and gpu_in_record and len(slurm_job.targets) == 1:
                problems.append(f"{job.key}: CPU job got a GPU in Slurm job {slurm_job.id}: {got}")
    return problems


# ---------------------------------------------------------------- the tiny corpus through Slurm
@pytest.fixture(scope="session")
def installed_profile_env(tmp_path_factory):
    """The environment of a user who installed the profile with the README's command."""
    home = tmp_path_factory.mktemp("home")
    subprocess.run(["bash", "-c", INSTALL_PROFILE], cwd=REPO, env={**os.environ, "HOME": str(home)}, check=True)
    assert (home / ".config/snakemake/slurm/config.yaml").is_file()
    # The local cluster's GPUs are fake (gres File=/dev/null): a GPU job there would stop at
    # once because TensorFlow sees no GPU (genreflow.jobs); run those jobs on the CPU.
    return {**os.environ, "XDG_CONFIG_HOME": str(home / ".config"), "GENREFLOW_ALLOW_CPU": "1"}


def workflow_targets(planned_jobs, rules):
    """The stage outputs compared with a local run, and one job of each GPU rule (with what it
    needs), so that every GPU rule of the workflow is submitted without running all of it."""
    targets = ["results/corpus/rejected.csv", "results/corpus/clips.csv"]
    for job in planned_jobs:
        if job.rule in ("make_splits", "index_images"):
            targets += [o for o in job.outputs if o.endswith(".csv")]
    first_of_gpu_rule = {}
    for job in planned_jobs:
        if rule_of(rules, job.rule).gpu and not rule_of(rules, job.rule).local:
            first_of_gpu_rule.setdefault(job.rule, job)
    for job in first_of_gpu_rule.values():
        targets += list(job.outputs)
    return targets


@pytest.fixture(scope="session")
def tiny_slurm_run(local_slurm, tiny_gtzan_run, installed_profile_env, tmp_path_factory):
    """The tiny GTZAN-shaped corpus of the local run (conftest), run again through
    `snakemake --profile slurm` in a fresh directory; one running make_images job is
    cancelled with scancel on the way."""
    local_dir, _, _ = tiny_gtzan_run
    workdir = tmp_path_factory.mktemp("tiny_slurm")
    generated = {"results", "logs", "benchmarks", ".snakemake"}
    for item in local_dir.iterdir():
        if item.name not in generated:
            if item.is_dir():  # links as links: the corpus holds a broken one on purpose
                shutil.copytree(item, workdir / item.name, symlinks=True)
            else:
                shutil.copy2(item, workdir / item.name)
    args = ["--snakefile", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--profile", "slurm"]
    rules = workflow_rules()
    everything = subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "-n"],
        cwd=workdir, env=installed_profile_env, capture_output=True, text=True, timeout=300,
    )
    assert everything.returncode == 0, everything.stdout[-3000:] + everything.stderr[-3000:]
    whole_plan = planned(everything.stdout + everything.stderr)
    run = run_through_slurm(
        workdir, args, rules, env=installed_profile_env, targets=workflow_targets(whole_plan, rules),
        while_running=cancel_one_running("make_images"),
    )
    run.gpu_rules_in_workflow = {
        job.rule for job in whole_plan if rule_of(rules, job.rule).gpu and not rule_of(rules, job.rule).local
    }
    return run, local_dir


@pytest.mark.slurm
def test_every_non_local_job_ran_as_a_completed_slurm_job(tiny_slurm_run):
    run, _ = tiny_slurm_run
    assert run.returncode == 0, run.explain()
    remote = run.remote_jobs()
    assert {job.rule for job in remote} >= {"check_clips", "make_images"}, run.explain()
    for job in remote:
        done = [j for j in run.slurm_jobs_running(job.key) if j.state == "COMPLETED"]
        assert done, f"{job.key}: no COMPLETED Slurm job ran it\n{run.explain()}"
        assert all(run.completed.get(j.id) == "COMPLETED" for j in done), run.explain()
    # Nothing else failed, and the jobcomp log agrees with squeue about every job.
    states = {job_id: job.state for job_id, job in run.jobs.items()}
    assert set(states.values()) <= {"COMPLETED", "CANCELLED"}, run.explain()
    assert [s for s in states.values() if s == "CANCELLED"] == ["CANCELLED"] * len(run.cancelled), run.explain()
    assert run.completed == states, run.explain()
    # Small jobs are grouped: fewer submissions than jobs.
    assert len(run.jobs) < len(remote), run.explain()


@pytest.mark.slurm
def test_local_rules_run_on_the_submitting_node(tiny_slurm_run):
    run, _ = tiny_slurm_run
    local = run.local_jobs()
    assert {job.rule for job in local} >= {"collect_corpus", "index_images", "make_splits"}
    for job in local:
        assert not run.slurm_jobs_running(job.key), f"local job {job.key} went to Slurm"
        assert all((run.workdir / out).exists() for out in job.outputs if out), job


@pytest.mark.slurm
def test_outputs_are_byte_identical_to_a_local_run(tiny_slurm_run):
    run, local_dir = tiny_slurm_run
    assert run.returncode == 0, run.explain()

    def tree(root):
        files = {}
        for top in COMPARED:
            for path in sorted((root / top).rglob("*")):
                if path.is_file():
                    files[str(path.relative_to(root))] = path.read_bytes().replace(str(root).encode(), b"<workdir>")
        return files

    on_slurm, local = tree(run.workdir), tree(local_dir)
    assert sorted(on_slurm) == sorted(local)
    assert any(name.endswith(".png") for name in local) and "results/corpus/rejected.csv" in local
    different = [name for name in local if on_slurm[name] != local[name]]
    assert not different, f"{len(different)} files differ from the local run, e.g. {different[:5]}"


@pytest.mark.slurm
def test_a_cancelled_job_is_retried_and_leaves_no_partial_output(tiny_slurm_run):
    run, _ = tiny_slurm_run
    assert len(run.cancelled) == 1, f"never saw a running make_images job to cancel\n{run.explain()}"
    (cancelled_id, key), = run.cancelled.items()
    cancelled = run.jobs[cancelled_id]
    assert cancelled.state == "CANCELLED" and run.completed.get(cancelled_id) == "CANCELLED", run.explain()
    retries = [j for j in run.jobs.values() if key in j.targets and j.id != cancelled_id]
    assert [(j.state, j.attempt) for j in retries] == [("COMPLETED", cancelled.attempt + 1)], run.explain()
    assert run.returncode == 0, run.explain()
    # The cancelled job's Slurm log is kept, under logs/slurm/, and says what happened.
    slurm_log = Path(cancelled.record["StdOut"])
    assert slurm_log.is_relative_to(run.workdir / "logs" / "slurm") and slurm_log.is_file()
    assert f"JOB {cancelled_id} ON" in slurm_log.read_text() and "CANCELLED" in slurm_log.read_text()
    # Every output is whole: no temporary files, every image indexed and readable.
    results = run.workdir / "results"
    files = [p for p in results.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"]
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".part"]
    for index_path in sorted(results.glob("features/*/index.csv")):
        index = pd.read_csv(index_path)
        feature_dir = index_path.parent / "images"
        on_disk = {str(p.relative_to(run.workdir)) for p in files if p.is_relative_to(feature_dir)}
        assert set(index["image"]) == on_disk, index_path
        for image in index["image"]:
            pixels = np.asarray(Image.open(run.workdir / image))
            assert pixels.dtype == np.uint8 and pixels.size > 0
    # And Snakemake sees nothing incomplete or left to do.
    _, output = snakemake(run.workdir, "-n", *run.targets)
    assert planned_jobs(output) == [], output


@pytest.mark.slurm
def test_workflow_gpu_rules_reach_slurm_as_the_profile_says(tiny_slurm_run):
    run, _ = tiny_slurm_run
    assert not gpu_request_problems(run), "\n".join(gpu_request_problems(run)) + "\n" + run.explain()
    if not run.gpu_rules_in_workflow:
        pytest.skip("no rule that asks for a GPU runs on the tiny config (Snakefile.gpu still covers GPUs)")
    submitted = {job.rule for job in run.remote_jobs() if expected_gpu_request(job.resource)[0]}
    assert submitted == run.gpu_rules_in_workflow, "one job of every GPU rule must have gone through Slurm"


# ---------------------------------------------------------------- GPU requests, on a small Snakefile
@pytest.fixture(scope="session")
def gpu_run(local_slurm, tmp_path_factory):
    """tests/slurm/Snakefile.gpu through a copy of profiles/slurm whose GPU block is applied as
    shipped, with a GPU model, and in the --gres form, as the profile's comments describe."""
    workdir = tmp_path_factory.mktemp("slurm_gpu")
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    site = profile["set-resources"][next(iter(profile["set-resources"]))]
    profile["set-resources"] = {
        "train_on_gpu": dict(site),
        "train_on_gpu_model": {**site, "gpu_model": "fake"},
        "train_on_gres": {**site, "gres": "gpu:fake:1", "gpu": 0},
    }
    (workdir / "profile").mkdir()
    (workdir / "profile" / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    snakefile = HERE / "Snakefile.gpu"
    args = ["--snakefile", str(snakefile), "--profile", str(workdir / "profile")]
    return run_through_slurm(workdir, args, declared_rules([snakefile]))


@pytest.mark.slurm
def test_gpu_requests_reach_slurm_as_the_profile_says(gpu_run):
    run = gpu_run
    assert run.returncode == 0, run.explain()
    assert not gpu_request_problems(run), "\n".join(gpu_request_problems(run)) + "\n" + run.explain()
    options = {next(iter(call.targets)).split(":")[0]: call.options for call in run.calls}
    assert "--gpus=1" in options["train_on_gpu"]
    assert "--gpus=fake:1" in options["train_on_gpu_model"]
    assert "--gres=gpu:fake:1" in options["train_on_gres"]
    assert not [o for o in options["train_on_gres"] + options["prepare_on_cpu"] if o.startswith("--gpus")]
    assert "collect" not in options
    # What each job got from Slurm: a GPU for the GPU jobs, none for the CPU job and the local rule.
    seen = {}
    for line in (run.workdir / "gpu" / "collected.txt").read_text().splitlines()[:-1]:
        devices, job_id = re.match(r"CUDA_VISIBLE_DEVICES=(\S+) SLURM_JOB_ID=(\S+)", line).groups()
        seen[run.jobs[job_id].record["Comment"]] = devices
    assert seen["rule_prepare_on_cpu"] == "unset"
    for rule in ("train_on_gpu", "train_on_gpu_model", "train_on_gres"):
        assert re.fullmatch(r"\d+", seen[f"rule_{rule}"]), seen
    assert (run.workdir / "gpu" / "collected.txt").read_text().splitlines()[-1] == "collect SLURM_JOB_ID=none"
    assert set(run.completed.values()) == {"COMPLETED"} and len(run.completed) == 4


# ---------------------------------------------------------------- the profile itself (no cluster)
def test_profile_gpu_block_names_exactly_the_gpu_rules():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    listed = profile.get("set-resources") or {}
    blocks = list(listed.values())
    assert blocks and all(block == blocks[0] for block in blocks), "GPU rules must share one block (*gpu_site)"
    rules = workflow_rules()
    gpu_rules = {name for name, rule in rules.items() if rule.gpu}
    missing = gpu_rules - set(listed)
    assert not missing, f"add `<rule>: *gpu_site` under set-resources in profiles/slurm/config.yaml for {sorted(missing)}"
    not_gpu = {name for name in listed if name in rules and name not in gpu_rules}
    assert not not_gpu, f"{sorted(not_gpu)} ask for no GPU: a GPU model in the block would give them one"


def test_profiles_keep_site_settings_in_the_slurm_profile():
    slurm_profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert slurm_profile["executor"] == "slurm" and slurm_profile["retries"] >= 1
    assert slurm_profile["rerun-incomplete"] is True and slurm_profile["slurm-logdir"] == "logs/slurm"
    assert slurm_profile["slurm-status-command"] == "squeue"
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text()) or {}
    site_keys = {"executor", "jobs", "set-resources", "default-resources", "groups", "group-components"}
    assert not site_keys & set(default) and not any(key.startswith("slurm-") for key in default), default


def test_profile_is_found_by_name_once_installed_and_by_path(installed_profile_env, tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")  # the demo: a dry run costs nothing
    for profile, cwd in (("slurm", tmp_path), ("profiles/slurm", REPO)):
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
             "--configfile", str(tmp_path / "config.yaml"), "--profile", profile, "-n"],
            cwd=cwd, env=installed_profile_env, capture_output=True, text=True, timeout=300,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert re.search(rf"Using profiles? {profile} and workflow specific profile", output), output[:2000]
