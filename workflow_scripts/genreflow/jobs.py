"""What every workflow script needs around its one call: a log that reaches both the
job's log file (kept by Snakemake and by Slurm) and the terminal, and tracebacks in it.

The terminal shows what genreflow says (each line names the job: rule and wildcards, so
that jobs running side by side can be told apart), warnings that may matter, and every
failure. What libraries print while a job runs goes to the job's log file only:
TensorFlow's C++ start-up lines (about 650 of the demo's 5,000 console lines, some of them
`E0000 ... use_unbounded_threadpool`, which read as errors and are not), musicnn's
deprecation warnings, libmpg123's notes on a damaged mp3. A job that dies in C++ (no
Python traceback) is shown with its log by Snakemake (`show-failed-logs`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings


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
