"""Peak memory of checking one file: a 30-minute 44.1 kHz stereo file against a 30 s clip
of the same format, each checked by `genreflow.audio.load_clip` (audio.seconds 30, as the
GTZAN preset) in a fresh process, side by side. Target: at most 1.5x.

Reports each process's peak resident memory (ru_maxrss), median of --repeats runs, and for
comparison the same long file decoded whole first (what load_clip did before it read only
the frames it uses).

Usage: python benchmarks/audio_memory.py [--repeats 3] [--minutes 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys
sys.path.insert(0, {scripts!r})
import numpy, soundfile, soxr
from genreflow.audio import AudioSettings, load_clip
if {whole!r}:
    soundfile.read({path!r}, dtype="float32", always_2d=True)  # the old way: all of it
if {path!r}:
    load_clip({path!r}, AudioSettings(sample_rate=22050, seconds=30.0, min_seconds=25.0))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_file(path: Path, seconds: float, rate: int = 44100) -> None:
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, 2, subtype="PCM_16") as handle:
        left = seconds
        while left > 0:
            block = min(left, 60.0)
            handle.write(rng.normal(0, 0.1, (int(block * rate), 2)))
            left -= block


def peak_kib(path: str, whole: bool = False) -> int:
    code = CHILD.format(scripts=str(REPO / "workflow_scripts"), path=path, whole=whole)
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        short, long = Path(folder) / "clip_30s.wav", Path(folder) / "long.wav"
        write_file(short, 30.0)
        write_file(long, args.minutes * 60)
        long_name = f"{args.minutes:g} min file"
        samples = {"imports only": [], "30 s clip": [], long_name: [], "decoded whole": []}
        for _ in range(args.repeats):  # interleaved, so drift hits all alike
            samples["imports only"].append(peak_kib(""))
            samples["30 s clip"].append(peak_kib(str(short)))
            samples[long_name].append(peak_kib(str(long)))
            samples["decoded whole"].append(peak_kib(str(long), whole=True))
        median = {name: statistics.median(values) / 1024 for name, values in samples.items()}
        print(f"file sizes: 30 s clip {short.stat().st_size / 2**20:.1f} MiB, "
              f"long file {long.stat().st_size / 2**20:.1f} MiB")
        for name, value in median.items():
            print(f"{name:>16s}: peak RSS {value:7.1f} MiB (median of {args.repeats})")
        print(f"checking the {long_name} costs {median[long_name] / median['30 s clip']:.2f}x the "
              f"peak of a 30 s clip (target <= 1.5x); decoding it whole would cost "
              f"{median['decoded whole'] / median['30 s clip']:.2f}x")


if __name__ == "__main__":
    main()
