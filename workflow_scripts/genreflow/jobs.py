"""What every workflow script needs around its one call: a log that reaches both the
job's log file (kept by Snakemake and by Slurm) and the terminal, and tracebacks in it."""

from __future__ import annotations

import contextlib
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
