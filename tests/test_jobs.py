"""A finished job that imported TensorFlow ends without the interpreter's teardown, and
loses nothing by it (genreflow.jobs.exit_without_teardown)."""

import re
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
    # what the job's libraries print goes to its log, flushed before the process ends
    text = log.read_text()
    for written in ("last line of the log", "buffered line on stdout", "buffered on stderr"):
        assert written in text
    assert done.stdout == ""
    assert re.fullmatch(r"\[job +\d+\.\ds\] last line of the log\n", done.stderr), done.stderr


NOISY_JOB = """
import os, sys, types, warnings
snakemake = types.SimpleNamespace(log=[{log!r}], rule="tune_round",
                                  wildcards={{"backbone": "vgg16", "feature": "mel", "round": "1"}})
from genreflow.jobs import logged_job
with logged_job(snakemake) as log:
    import tensorflow as tf
    tf.constant(1.0) + 1.0
    warnings.warn("`tf.layers.dense` is deprecated and will be removed", UserWarning)
    warnings.warn("The least populated class in y has only 1 members", UserWarning)
    log("trial 0 finished")
    if {fail}:
        raise ValueError("no clip in split valid")
"""


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "failed"])
def test_library_start_up_lines_go_to_the_log_and_what_matters_to_the_console(tmp_path, fail):
    """TensorFlow's C++ start-up lines (written to file descriptor 2 from C++) and a
    deprecation warning reach the job's log only; genreflow's lines, named by the job's
    rule and wildcards, a warning that may matter and a failure reach the console too."""
    import os

    log = tmp_path / "job.log"
    script = tmp_path / "job.py"
    script.write_text(NOISY_JOB.format(log=str(log), fail=fail))
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env)
    console, text = done.stderr, log.read_text()
    assert "oneDNN custom operations" in text and "is deprecated" in text
    assert "oneDNN" not in console and "deprecated" not in console and done.stdout == ""
    assert re.search(r"^\[tune_round vgg16/mel/round_1 +\d+\.\ds\] trial 0 finished$", console, re.M)
    assert re.search(r"^\[tune_round vgg16/mel/round_1 +\d+\.\ds\] WARNING from .*UserWarning: "
                     r"The least populated class", console, re.M)
    if not fail:
        assert done.returncode == 0
        return
    assert done.returncode == 1
    assert re.search(r"\] FAILED \(traceback below and in " + re.escape(str(log))
                     + r"\): ValueError: no clip in split valid$", console, re.M)
    # the interpreter's own traceback after it, and the full traceback in the log
    assert console.rstrip().endswith("ValueError: no clip in split valid")
    assert "Traceback (most recent call last)" in console
    assert "FAILED:\nTraceback (most recent call last)" in text


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
