"""One Snakemake job as a job step of the allocation that Snakemake runs in.

`profiles/slurm/whole-study.sbatch` runs Snakemake inside one Slurm allocation with the
cluster-sync executor, which hands each job's script to
`python -m genreflow.slurm.step JOBSCRIPT`; this starts it with srun, so that Slurm gives
the job what its rule declares, and nothing of what another job holds:

- `--exact`, `--cpus-per-task` and `--mem`: without them a step takes every CPU and all
  the memory of the allocation, and every other step waits for it to end;
- a GPU job `--gpus=<its gpu resource>`: Slurm binds each step to GPUs of its own
  (SLURM_STEP_GPUS, CUDA_VISIBLE_DEVICES), so two GPU jobs never share one;
- a CPU job `--gres=none`: without it a step is given every GPU of the allocation, and
  GPU jobs wait until it ends;
- `--output`: what the job's own Snakemake prints (its banner, its DAG, the rule's lines)
  goes to `logs/slurm/<rule>/<wildcards>/<job id>.<step id>.log`, as the per-job profile
  keeps Slurm's log of each job; the allocation's log holds the Snakemake that schedules.

The SLURM_* variables that srun inherits describe the allocation (SLURM_GPUS=2,
SLURM_MEM_PER_NODE, SLURM_CPUS_PER_TASK), and srun reads them as options for the step:
they are dropped, as snakemake-executor-plugin-slurm-jobstep drops them, except those
that name the job. Slurm sets each step's own GPU variables.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

PROPERTIES = "# properties = "
# What srun needs to find the allocation; every other SLURM_* variable is the allocation's
# request, which srun would take as the step's.
KEPT_SLURM = frozenset({
    "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_CONF",
    "SLURM_SUBMIT_DIR", "SLURM_SUBMIT_HOST",
    "SLURM_RESTART_COUNT",  # which start of a requeued job (srun reads no option from it)
})
GPU_VISIBILITY = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")
GPU_RESOURCES = ("gpu", "gpus", "nvidia_gpu")  # as the Slurm executor plugins read them


def job_properties(jobscript: str | os.PathLike) -> dict:
    """The job's threads and resources, from the `# properties = {...}` line Snakemake
    writes into every job script."""
    with open(jobscript, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(PROPERTIES):
                return json.loads(line[len(PROPERTIES):])
    raise ValueError(
        f"{jobscript}: no '{PROPERTIES.strip()}' line; genreflow.slurm.step runs the job "
        "scripts of Snakemake's cluster-sync executor (profiles/slurm/whole-study.sbatch)"
    )


def _whole(value) -> int | None:
    """A resource as a whole number, or None where Snakemake left it unset."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def step_log(properties: Mapping, logdir: str = "logs/slurm") -> str:
    """Where a job step's output goes: `logs/slurm/<rule>/<wildcard values>/%J.log` (%J:
    Slurm's job and step id), like the per-job profile's Slurm log of a job."""
    name = properties.get("rule") or properties.get("groupid") or "snakemake-job"
    wildcards = "_".join(str(value) for value in (properties.get("wildcards") or {}).values())
    return os.path.join(logdir, name, wildcards, "%J.log") if wildcards else os.path.join(logdir, name, "%J.log")


def step_options(properties: Mapping, allocation: Mapping[str, str]) -> list[str]:
    """srun's options for one job (or group job) of the allocation.

    The job's memory is capped at the allocation's: Snakemake caps what it schedules at
    the `--resources` the batch script gives it, but a rule's declaration can ask for more,
    and srun refuses a step larger than its allocation instead of waiting."""
    resources = properties.get("resources") or {}
    cpus = max(1, _whole(properties.get("threads")) or 1)
    allocated_cpus = _whole(allocation.get("SLURM_CPUS_ON_NODE"))
    if allocated_cpus:
        cpus = min(cpus, allocated_cpus)
    name = properties.get("rule") or properties.get("groupid") or "snakemake-job"
    options = ["--exact", "--ntasks=1", "--nodes=1", f"--cpus-per-task={cpus}", f"--job-name={name}"]
    memory = _whole(resources.get("mem_mb"))
    allocated_memory = _whole(allocation.get("SLURM_MEM_PER_NODE"))
    if memory and allocated_memory:
        memory = min(memory, allocated_memory)
    if memory:
        options.append(f"--mem={memory}M")
    gpus = next((_whole(resources[key]) for key in GPU_RESOURCES if key in resources), None)
    options.append(f"--gpus={gpus}" if gpus else "--gres=none")
    return options


def step_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment srun gets: the caller's, without the allocation's request."""
    return {
        name: value for name, value in environ.items()
        if not (
            (name.startswith("SLURM_") and name not in KEPT_SLURM)
            or name.startswith(("SRUN_", "SBATCH_"))
            or name in GPU_VISIBILITY
        )
    }


def step_command(jobscript: str, properties: Mapping, environ: Mapping[str, str], log: str) -> list[str]:
    return ["srun", *step_options(properties, environ), f"--output={log}", jobscript]


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        raise SystemExit("usage: python -m genreflow.slurm.step JOBSCRIPT (Snakemake's cluster-sync executor calls it)")
    if not os.environ.get("SLURM_JOB_ID"):
        raise SystemExit(
            "genreflow.slurm.step runs jobs inside a Slurm allocation (SLURM_JOB_ID is unset): "
            "submit the study with `sbatch profiles/slurm/whole-study.sbatch`"
        )
    properties = job_properties(argv[0])
    log = os.path.abspath(step_log(properties))
    os.makedirs(os.path.dirname(log), exist_ok=True)  # srun does not make its folder
    command = step_command(argv[0], properties, os.environ, log)
    print(f"[whole-study] {shlex.join(command[:-1])}", file=sys.stderr, flush=True)
    # exec: Snakemake cancels a job with SIGKILL to this process, which then reaches srun,
    # and Slurm ends a step whose srun is gone
    os.execvpe(command[0], command, step_environment(os.environ))


if __name__ == "__main__":
    main()
