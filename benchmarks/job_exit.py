"""Wall time of a small TensorFlow job process ending normally against ending through
genreflow.jobs.exit_without_teardown (as every workflow script does once its outputs are
written), side by side, median of --repeats runs each.

Usage: PYTHONPATH=workflow_scripts .venv/bin/python benchmarks/job_exit.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A job script as Snakemake runs it: a module-level `snakemake`, one logged call that
# imports TensorFlow, builds and fits a tiny model and writes an output.
JOB = """
import types
snakemake = types.SimpleNamespace(log=[{log!r}], rule="bench")
from genreflow.jobs import logged_job
import genreflow.jobs
if {normal}:
    genreflow.jobs.exit_without_teardown = lambda snakemake: None
with logged_job(snakemake) as log:
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile("adam", "mse")
    model.fit(np.zeros((32, 8)), np.zeros((32, 4)), epochs=2, verbose=0)
    open({out!r}, "w").write("done")
    log("fitted")
"""


def run(folder: Path, normal: bool) -> float:
    script = folder / "job.py"
    out, log = folder / "out.txt", folder / "job.log"
    script.write_text(JOB.format(log=str(log), out=str(out), normal=normal))
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    assert out.read_text() == "done" and "fitted" in log.read_text()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {"normal exit": [], "exit_without_teardown": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):  # interleaved, so that drift hits both alike
            times["normal exit"].append(run(Path(folder), normal=True))
            times["exit_without_teardown"].append(run(Path(folder), normal=False))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>22}: median {medians[name]:.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    saved = medians["normal exit"] - medians["exit_without_teardown"]
    print(f"saved per TensorFlow job: {saved:.2f} s; normal / fast = "
          f"{medians['normal exit'] / medians['exit_without_teardown']:.2f}x")


if __name__ == "__main__":
    main()
