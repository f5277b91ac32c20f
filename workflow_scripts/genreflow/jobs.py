"""What every workflow script needs around its one call: a log that reaches both the
job's log file (kept by Snakemake and by Slurm) and the terminal, and tracebacks in it.

The terminal shows what genreflow says (each line names the job: rule and wildcards, so
that jobs running side by side can be told apart), warnings that may matter, and every
failure. What libraries print while a job runs goes to the job's log file only:
TensorFlow's C++ start-up lines (about 650 of the demo's 5,000 console lines, some of them
`E0000 ... use_unbounded_threadpool`, which read as errors and are not), musicnn's
deprecation warnings, libmpg123's notes on a damaged mp3. A job that dies in C++ (no
Python traceback) is shown with its log by Snakemake (`show-failed-logs`).

For a TensorFlow job, `prepare_tensorflow` sets its threads and device: it says in its log
which device it runs on, and a job that was given a GPU but cannot use it is stopped at
once instead of running for hours on the CPU. Slurm tells a job its GPUs in SLURM_JOB_GPUS (or SLURM_STEP_GPUS) and CUDA_VISIBLE_DEVICES. If it has
one but TensorFlow sees none, the usual causes are the CPU-only TensorFlow wheel
(genreflow's default lock installs `tensorflow-cpu`) or CUDA libraries the wheel cannot
load; the error says which and how to fix it. On a machine without a GPU allocation
nothing changes. GENREFLOW_ALLOW_CPU=1 runs such a job on the CPU anyway, on purpose (a
test cluster whose GPUs are fake, say).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping


class JobLog:
    def __init__(self, path: str | None, name: str, console=None):
        self.name = name
        self.handle = open(path, "w", encoding="utf-8") if path else None
        self.console = console
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.write(message, console=True)

    def write(self, message: str, console: bool) -> None:
        line = f"[{self.name} {time.perf_counter() - self.started:7.1f}s] {message}"
        if console:
            print(line, file=self.console or sys.stderr, flush=True)
        if self.handle:
            print(line, file=self.handle, flush=True)

    def close(self) -> None:
        if self.handle:
            self.handle.close()


def job_name(snakemake) -> str:
    """The rule and its wildcards, as the job's log path spells them: `tune_round
    vgg16/mel/round_1/worker_0`, `make_images mel/shard_003`."""
    wildcards = getattr(snakemake, "wildcards", None)
    parts = [
        f"{name}_{value}" if str(value).isdigit() else str(value)
        for name, value in (wildcards.items() if wildcards is not None else ())
    ]
    return " ".join([snakemake.rule, "/".join(parts)]) if parts else snakemake.rule


def harmless(category: type[Warning], message) -> bool:
    """Deprecation notices of libraries (musicnn's TF1 layers, TensorFlow's own): the
    user can do nothing about them."""
    return issubclass(
        category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    ) or "deprecated" in str(message).lower()


@contextlib.contextmanager
def library_output_to_log(log: JobLog):
    """Send the process's stdout and stderr (file descriptors 1 and 2, where C++ libraries
    write) to the job's log file while the job runs; `log` keeps the terminal. Python
    warnings that may matter reach the terminal through `log`, deprecations only the file."""
    if log.handle is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log.console = open(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        log.write(f"WARNING from {text}" if not harmless(category, message) else text,
                  console=not harmless(category, message))

    warnings.showwarning = show
    try:
        for fd in (1, 2):
            os.dup2(log.handle.fileno(), fd)
        yield
    finally:
        warnings.showwarning = shown
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.console.close()
        log.console = None


@contextlib.contextmanager
def logged_job(snakemake):
    """Yield a log function for the job; a failure's traceback goes to the log, and the
    interpreter prints it on the terminal as it ends."""
    path = snakemake.log[0] if len(snakemake.log) else None
    log = JobLog(path, job_name(snakemake))
    try:
        with library_output_to_log(log):
            try:
                yield log
            except BaseException as error:
                log.write("FAILED:\n" + traceback.format_exc(), console=False)
                where = f" (traceback below and in {path})" if path else ""
                log(f"FAILED{where}: {type(error).__name__}: {error}")
                raise
    finally:
        log.close()
    exit_without_teardown(snakemake)


def exit_without_teardown(snakemake) -> None:
    """End a finished job's process at once if it imported TensorFlow.

    TensorFlow's interpreter teardown (its atexit hooks, freeing its modules) takes about
    1.3 s per process, a quarter of a small job, and the demo runs about 110 such jobs
    (`benchmarks/job_exit.py`). By now every output is written and closed (all writers
    close before they rename), the log is closed, and the streams are flushed here; the
    exit status is 0, as after a normal end. Only in the job's own process, the Snakemake
    script whose global `snakemake` is this one, never inside a test or notebook.
    """
    main = sys.modules.get("__main__")
    if "tensorflow" not in sys.modules or getattr(main, "snakemake", None) is not snakemake:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ------------------------------------------------------------------------------ device
def allocated_gpus(environ: Mapping[str, str]) -> str | None:
    """The GPUs a Slurm job was given, as its environment says, or None.

    In a job step (SLURM_STEP_ID: each job of profiles/slurm/whole-study.sbatch, or the
    per-job profile's srun) only the step's own GPUs count: SLURM_JOB_GPUS lists the whole
    allocation's, and a CPU step of a GPU allocation has none of them."""
    in_step = bool(environ.get("SLURM_STEP_ID", "").strip())
    for name in ("SLURM_STEP_GPUS",) if in_step else ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
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
    # Inside the job TensorFlow numbers its GPUs from 0; which GPUs of the node those are
    # is what Slurm says (SLURM_STEP_GPUS): jobs running side by side show different ones.
    step = environ.get("SLURM_STEP_ID", "").strip()
    given = f"; Slurm gave it {allocated}" if allocated else ""
    if allocated and step:
        given += f" in job step {environ.get('SLURM_JOB_ID', '?')}.{step}"
    log(f"TensorFlow {tf.__version__} on the {device}{f' ({names})' if gpus else ''}, "
        f"{threads} threads, {policy}{given}")
    return device
