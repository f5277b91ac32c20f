"""genreflow.slurm.step: the srun command of one job of profiles/slurm/whole-study.sbatch,
built from the properties Snakemake writes into its job script. Fast, no cluster: the
real-Slurm runs are in tests/test_slurm.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from genreflow.slurm import step

# What the allocation's environment holds inside `sbatch --gpus=2 --cpus-per-task=4 --mem=8G`.
ALLOCATION = {
    "SLURM_JOB_ID": "42",
    "SLURM_JOBID": "42",
    "SLURM_CLUSTER_NAME": "localcluster",
    "SLURM_RESTART_COUNT": "1",
    "SLURM_CPUS_ON_NODE": "4",
    "SLURM_CPUS_PER_TASK": "4",
    "SLURM_MEM_PER_NODE": "8192",
    "SLURM_GPUS": "2",
    "SLURM_JOB_GPUS": "0,1",
    "SLURM_NTASKS": "1",
    "SRUN_DEBUG": "3",
    "SBATCH_TIMELIMIT": "2",
    "CUDA_VISIBLE_DEVICES": "",
    "GPU_DEVICE_ORDINAL": "0,1",
    "HOME": "/home/someone",
    "PATH": "/usr/bin:/bin",
}


def jobscript(tmp_path, properties, name="job.sh"):
    """A job script as Snakemake's cluster-sync executor writes it: a shebang, the
    properties line, the command."""
    path = tmp_path / name
    path.write_text(
        "#!/bin/sh\n"
        f"# properties = {json.dumps(properties)}\n"
        "exec python -m snakemake --target-jobs 'x' --mode remote\n"
    )
    path.chmod(0o755)
    return path


def gpu_job():
    return {
        "type": "single", "rule": "tune_round", "local": False, "threads": 3,
        "resources": {"mem_mb": 6000, "gpu": 1, "tmpdir": "/tmp"},
        "wildcards": {"backbone": "vgg16", "feature": "mel", "round": "1"}, "jobid": 7,
    }


def cpu_job():
    return {
        "type": "single", "rule": "extract_features", "local": False, "threads": 2,
        "resources": {"mem_mb": 2000, "gpu": 0, "tmpdir": "/tmp"},
        "wildcards": {"split": "train"}, "jobid": 3,
    }


def test_properties_are_read_from_the_job_script(tmp_path):
    assert step.job_properties(jobscript(tmp_path, gpu_job())) == gpu_job()


def test_a_script_without_properties_is_an_error_naming_it(tmp_path):
    path = tmp_path / "plain.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ValueError, match=r"plain\.sh: no '# properties =' line.*whole-study\.sbatch"):
        step.job_properties(path)


def test_gpu_job_gets_its_cpus_memory_and_gpus_exactly():
    assert step.step_options(gpu_job(), ALLOCATION) == [
        "--exact", "--ntasks=1", "--nodes=1", "--cpus-per-task=3", "--job-name=tune_round",
        "--mem=6000M", "--gpus=1",
    ]


def test_cpu_job_gets_no_gpu():
    options = step.step_options(cpu_job(), ALLOCATION)
    assert "--gres=none" in options
    assert not any(option.startswith("--gpus") for option in options)
    assert "--cpus-per-task=2" in options and "--mem=2000M" in options and "--exact" in options


@pytest.mark.parametrize("key", ["gpu", "gpus", "nvidia_gpu"])
def test_every_gpu_resource_name_the_slurm_plugins_read_counts(key):
    job = cpu_job()
    job["resources"] = {"mem_mb": 1000, key: 2}
    assert step.step_options(job, ALLOCATION)[-1] == "--gpus=2"


def test_a_job_asking_for_more_than_the_allocation_gets_the_allocation():
    # srun refuses a step larger than its allocation instead of waiting for one
    job = gpu_job()
    job["threads"] = 32
    job["resources"]["mem_mb"] = 100_000
    options = step.step_options(job, ALLOCATION)
    assert "--cpus-per-task=4" in options and "--mem=8192M" in options


def test_unset_threads_and_memory_give_one_cpu_and_no_mem_option():
    job = {"type": "single", "rule": "plot_x", "resources": {"mem_mb": "<TBD>"}}
    options = step.step_options(job, {})
    assert "--cpus-per-task=1" in options
    assert not any(option.startswith("--mem") for option in options)
    assert options[-1] == "--gres=none"


def test_group_job_is_named_after_its_group():
    job = {"type": "group", "groupid": "embed_vgg16", "threads": 2, "resources": {"mem_mb": 3000, "gpu": 1}}
    options = step.step_options(job, ALLOCATION)
    assert "--job-name=embed_vgg16" in options and options[-1] == "--gpus=1"
    assert step.step_log(job) == "logs/slurm/embed_vgg16/%J.log"


def test_step_log_is_per_rule_and_wildcards():
    assert step.step_log(gpu_job()) == "logs/slurm/tune_round/vgg16_mel_1/%J.log"
    assert step.step_log(cpu_job(), "elsewhere") == "elsewhere/extract_features/train/%J.log"


def test_the_allocations_request_is_dropped_and_its_name_kept():
    environment = step.step_environment(ALLOCATION)
    assert environment == {
        "SLURM_JOB_ID": "42", "SLURM_JOBID": "42", "SLURM_CLUSTER_NAME": "localcluster",
        "SLURM_RESTART_COUNT": "1",  # which start of a requeued job: no option to srun
        "HOME": "/home/someone", "PATH": "/usr/bin:/bin",
    }


def test_main_refuses_to_run_outside_an_allocation(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(SystemExit, match="SLURM_JOB_ID is unset.*sbatch profiles/slurm/whole-study.sbatch"):
        step.main([str(jobscript(tmp_path, cpu_job()))])


def test_main_execs_srun_with_the_steps_options_and_environment(tmp_path):
    """The real module as a process, with an `srun` on PATH that records what it got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "srun.json"
    fake = bin_dir / "srun"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    script = jobscript(tmp_path, gpu_job())
    environment = dict(ALLOCATION, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                       PYTHONPATH=str(REPO / "workflow_scripts"))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, "-m", "genreflow.slurm.step", str(script)],
                            cwd=work, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    got = json.loads(record.read_text())
    log = work / "logs/slurm/tune_round/vgg16_mel_1/%J.log"
    assert got["argv"] == [
        "--exact", "--ntasks=1", "--nodes=1", "--cpus-per-task=3", "--job-name=tune_round",
        "--mem=6000M", "--gpus=1", f"--output={log}", str(script),
    ]
    assert log.parent.is_dir()  # srun does not make the log's folder
    assert not {"SLURM_GPUS", "SLURM_MEM_PER_NODE", "SLURM_CPUS_PER_TASK", "SRUN_DEBUG",
                "SBATCH_TIMELIMIT", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"} & set(got["env"])
    assert got["env"]["SLURM_JOB_ID"] == "42"
    assert "[whole-study] srun --exact" in result.stderr


def test_the_batch_script_runs_jobs_through_this_module():
    text = (REPO / "profiles/slurm/whole-study.sbatch").read_text()
    assert "--executor cluster-sync" in text
    assert "-m genreflow.slurm.step" in text
    assert Path(step.__file__).is_relative_to(REPO / "workflow_scripts")
