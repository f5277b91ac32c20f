"""A finished job that imported TensorFlow ends without the interpreter's teardown, and
loses nothing by it (genreflow.jobs.exit_without_teardown)."""

import subprocess
import sys
import types

import pytest

from genreflow.jobs import exit_without_teardown, logged_job

SCRIPT = """
import sys, types
snakemake = types.SimpleNamespace(log=[{log!r}], rule="job")
from genreflow.jobs import logged_job
with logged_job(snakemake) as log:
    import tensorflow
    with open({out!r}, "w") as handle:
        handle.write("x" * 100000)
    print("buffered line on stdout", end="")
    sys.stderr.write("buffered on stderr")
    log("last line of the log")
print("after the job: never reached")
raise SystemExit(3)
"""


def test_a_tensorflow_job_exits_at_once_with_its_outputs_log_and_streams_complete(tmp_path):
    out, log = tmp_path / "out.txt", tmp_path / "job.log"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(log=str(log), out=str(out)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert out.read_text() == "x" * 100000
    assert log.read_text().rstrip().endswith("last line of the log")
    assert done.stdout == "buffered line on stdout"
    assert "buffered on stderr" in done.stderr


def test_outside_a_job_script_nothing_exits(tmp_path):
    import tensorflow  # noqa: F401 (imported, as in a job)

    job = types.SimpleNamespace(log=[str(tmp_path / "x.log")], rule="test")
    with logged_job(job) as log:
        log("inside a test process")
    exit_without_teardown(job)  # returns: pytest's __main__ holds no such `snakemake`
    assert (tmp_path / "x.log").read_text().endswith("inside a test process\n")


def test_a_failed_job_raises_as_before(tmp_path):
    job = types.SimpleNamespace(log=[str(tmp_path / "x.log")], rule="test")
    with pytest.raises(ValueError), logged_job(job):
        raise ValueError("bad clip")
    assert "FAILED" in (tmp_path / "x.log").read_text()
