"""Which device a TensorFlow job runs on, said in its log, and a job that was given a GPU
but cannot use it stopped at once instead of running for hours on the CPU.

Slurm tells a job its GPUs in SLURM_JOB_GPUS (or SLURM_STEP_GPUS) and CUDA_VISIBLE_DEVICES.
If it has one but TensorFlow sees none, the usual causes are the CPU-only TensorFlow wheel
(genreflow's default lock installs `tensorflow-cpu`) or CUDA libraries the wheel cannot
load; the error says which and how to fix it. On a machine without a GPU allocation
nothing changes. GENREFLOW_ALLOW_CPU=1 runs such a job on the CPU anyway, on purpose (a
test cluster whose GPUs are fake, say).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def allocated_gpus(environ: Mapping[str, str]) -> str | None:
    """The GPUs a Slurm job was given, as its environment says, or None."""
    for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        if environ.get(name, "").strip():
            return f"{name}={environ[name]}"
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if environ.get("SLURM_JOB_ID") and visible not in ("", "-1", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible}"
    return None


def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def no_gpu_reason() -> tuple[str, str]:
    """(why TensorFlow sees no GPU, the fix), from what is installed."""
    if _installed("tensorflow-cpu") and not _installed("tensorflow"):
        return ("the CPU-only TensorFlow wheel (tensorflow-cpu) is installed",
                "install the GPU lock: pip install --no-deps -r requirements-gpu.lock (see the "
                "README, 'GPU clusters')")
    return ("TensorFlow could not load the CUDA libraries (the job's log file names the "
            "library it missed)",
            "install tensorflow[and-cuda] of the same version (requirements-gpu.lock), or load "
            "the site's CUDA module before running Snakemake")


def prepare_tensorflow(threads: int, log=print, mixed_precision: str = "auto",
                       environ: Mapping[str, str] | None = None) -> str:
    """Limit TensorFlow to the job's cores, check the device against the allocation, set
    the mixed-precision policy (auto: mixed float16 on a GPU, float32 on the CPU) and log
    what the job runs on. Returns "GPU" or "CPU"."""
    import tensorflow as tf

    environ = os.environ if environ is None else environ
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, int(threads) // 2))
    except RuntimeError:
        # TensorFlow already ran in this process (a job calls this first; a library user
        # may not): its thread pools are fixed by then
        log(f"TensorFlow was initialised before; keeping its thread pools (asked for {threads})")
    gpus = tf.config.list_physical_devices("GPU")
    allocated = allocated_gpus(environ)
    if allocated and not gpus:
        reason, fix = no_gpu_reason()
        if environ.get("GENREFLOW_ALLOW_CPU") != "1":
            raise RuntimeError(
                f"this job was given a GPU ({allocated}), but TensorFlow sees none: {reason}. "
                f"Fix: {fix}. To run it on the CPU anyway, set GENREFLOW_ALLOW_CPU=1."
            )
        log(f"WARNING: given a GPU ({allocated}) but TensorFlow sees none ({reason}); "
            "running on the CPU because GENREFLOW_ALLOW_CPU=1")
    device = "GPU" if gpus else "CPU"
    if mixed_precision == "on" or (mixed_precision == "auto" and gpus):
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    policy = "mixed float16" if (mixed_precision == "on" or (mixed_precision == "auto" and gpus)) else "float32"
    names = ", ".join(gpu.name for gpu in gpus)
    log(f"TensorFlow {tf.__version__} on the {device}{f' ({names})' if gpus else ''}, "
        f"{threads} threads, {policy}")
    return device
