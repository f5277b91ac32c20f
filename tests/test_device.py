"""A job that Slurm gave a GPU but TensorFlow cannot use stops at once with the reason and
the fix; elsewhere nothing changes, and every job says which device it runs on."""

import pytest

from genreflow.jobs import allocated_gpus, prepare_tensorflow


def test_what_counts_as_a_gpu_allocation():
    assert allocated_gpus({}) is None
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "0"}) is None  # not a Slurm job: a laptop
    assert allocated_gpus({"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0"}) == "CUDA_VISIBLE_DEVICES=0"
    assert allocated_gpus({"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "-1"}) is None
    assert allocated_gpus({"SLURM_JOB_GPUS": "1,3"}) == "SLURM_JOB_GPUS=1,3"


def test_a_gpu_job_without_a_usable_gpu_fails_at_once_with_the_fix():
    said = []
    allocation = {"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"}
    with pytest.raises(RuntimeError) as error:
        prepare_tensorflow(1, said.append, environ=allocation)
    message = str(error.value)
    assert "given a GPU (SLURM_JOB_GPUS=0)" in message and "TensorFlow sees none" in message
    assert "tensorflow-cpu" in message and "requirements-gpu.lock" in message
    assert "GENREFLOW_ALLOW_CPU=1" in message
    assert prepare_tensorflow(1, said.append, environ={**allocation, "GENREFLOW_ALLOW_CPU": "1"}) == "CPU"
    assert any(line.startswith("WARNING: given a GPU") for line in said)


def test_without_an_allocation_a_cpu_job_says_so_and_stays_float32():
    import keras

    said = []
    assert prepare_tensorflow(2, said.append, mixed_precision="auto", environ={}) == "CPU"
    assert "on the CPU, 2 threads, float32" in said[-1]
    assert keras.mixed_precision.global_policy().name == "float32"
