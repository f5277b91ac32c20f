"""What every workflow script needs around its one call: a log that reaches both the
job's log file (kept by Snakemake and by Slurm) and the terminal, and tracebacks in it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback


class JobLog:
    def __init__(self, path: str | None, name: str):
        self.name = name
        self.handle = open(path, "w", encoding="utf-8") if path else None
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{self.name} {time.perf_counter() - self.started:7.1f}s] {message}"
        print(line, file=sys.stderr, flush=True)
        if self.handle:
            print(line, file=self.handle, flush=True)

    def close(self) -> None:
        if self.handle:
            self.handle.close()


@contextlib.contextmanager
def logged_job(snakemake):
    """Yield a log function for the job; a failure's traceback goes to the log too."""
    path = snakemake.log[0] if len(snakemake.log) else None
    log = JobLog(path, snakemake.rule)
    try:
        yield log
    except BaseException:
        log("FAILED:\n" + traceback.format_exc())
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
