"""The test clips under each condition: perturbed copies of the clean test clips
(`perturb_test_clips`, one job per perturbation), the synthetic corpus' test songs rendered
a second time (`render_test_songs`), and one table of them all (`join_condition_tables`).

A condition's table has the columns of the corpus stage's check tables (clip, genre, path,
status), so that the feature and musicnn jobs of the main run read it as they read a shard
of the corpus: the perturbed clips go through the models' own path. Its clip ids are
`<condition>/<clip>` (`condition_clip`), which keeps the conditions apart in the images'
folders, indexes and embedding caches.

Perturbed audio is stored as 24-bit FLAC at the clips' rate and length: lossless against
the float samples to -144 dBFS, far below the 80 dB the images show, at about 60% of the
size of 24-bit PCM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from genreflow.io import atomic_path, write_csv

TABLE_COLUMNS = ("clip", "genre", "path", "status", "condition", "source_clip")


def condition_clip(condition: str, clip: str) -> str:
    """The id of `clip` under `condition` in the robustness stage's tables and caches."""
    return f"{condition}/{clip}"


def split_condition_clip(name: str) -> tuple[str, str]:
    """(condition, clip) of a `condition_clip` id."""
    condition, _, clip = name.partition("/")
    if not clip:
        raise ValueError(f"{name!r} is not a <condition>/<clip> id")
    return condition, clip


def accepted_test_clips(clips_csv: str, test_csv: str) -> pd.DataFrame:
    """The accepted clips of the test split: clip, genre, path (corpus order)."""
    clips = pd.read_csv(clips_csv, dtype={"clip": str}, keep_default_na=False)
    test = set(pd.read_csv(test_csv, dtype={"clip": str})["clip"])
    chosen = clips[clips["clip"].isin(test)]
    missing = sorted(test - set(chosen["clip"]))
    if missing:
        raise ValueError(f"{test_csv}: test clips {missing[:5]} are not accepted clips of "
                         f"{clips_csv}; the split and the corpus are of different runs")
    return chosen[["clip", "genre", "path"]].reset_index(drop=True)


def _table(rows: Sequence[Mapping]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS))


# One job's entry point: a parameter per input, param and output of its rule
# (perturb_test_clips), passed by name from the thin script.
def perturb_test_clips(
    clips_csv: str,
    test_csv: str,
    name: str,
    perturbation: Mapping,
    seed: int,
    audio,  # genreflow.audio.AudioSettings
    out_folder: str,
    out_table: str,
    log=print,
) -> None:
    """Every test clip, decoded as the corpus stage decodes it (`load_clip`), under the
    perturbation `name` (its config block `perturbation`), as 24-bit FLAC in `out_folder`,
    and the condition's table. A random perturbation draws from `clip_rng(name, clip,
    seed)`: the same audio in every run, whatever else is perturbed."""
    import time

    import numpy as np
    import soundfile

    from genreflow.audio import BadClip, check_signal, load_clip
    from genreflow.robustness.perturb import RANDOM_FAMILIES, clip_rng, describe, perturb

    started = time.perf_counter()
    clips = accepted_test_clips(clips_csv, test_csv)
    log(f"{name}: {describe(perturbation)}, on {len(clips)} test clips")
    os.makedirs(out_folder, exist_ok=True)
    rows, changes = [], []
    for clip in clips.itertuples(index=False):
        y, _ = load_clip(clip.path, audio)
        rng = clip_rng(name, clip.clip, seed) if perturbation["kind"] in RANDOM_FAMILIES else None
        perturbed = perturb(y, audio.sample_rate, perturbation, rng)
        try:
            check_signal(perturbed, audio, audio.seconds)
        except BadClip as reason:
            raise ValueError(
                f"perturbation {name} ({describe(perturbation)}) makes test clip {clip.clip} "
                f"({clip.path}) unusable: {reason}. Weaken it in robustness.perturbations.{name} "
                "or remove it") from None
        path = os.path.join(out_folder, f"{clip.clip}.flac")
        with atomic_path(path) as tmp:
            soundfile.write(tmp, perturbed, audio.sample_rate, format="FLAC", subtype="PCM_24")
        rows.append({"clip": condition_clip(name, clip.clip), "genre": clip.genre, "path": path,
                     "status": "accepted", "condition": name, "source_clip": clip.clip})
        difference = np.sqrt(np.mean((perturbed.astype(np.float64) - y) ** 2))
        changes.append(20 * np.log10(max(difference, 1e-12) / max(np.sqrt(np.mean(y**2.0)), 1e-12)))
    write_csv(out_table, _table(rows))
    if changes:
        log(f"difference from the clean clips: median {np.median(changes):.1f} dB re their RMS "
            f"(range {min(changes):.1f} to {max(changes):.1f})")
    if perturbation["kind"] == "mp3" and len(clips):
        from genreflow.robustness.perturb import mp3_kbps, parameters

        y, _ = load_clip(clips["path"].iloc[0], audio)
        log(f"MP3 bitrate reached on {clips['clip'].iloc[0]}: "
            f"{mp3_kbps(y, audio.sample_rate, **parameters(perturbation)):.1f} kbps")
    log(f"wrote {len(rows)} clips to {out_folder} in {time.perf_counter() - started:.1f} s")


# One job's entry point (render_test_songs).
def render_test_songs(
    clips_csv: str,
    test_csv: str,
    synthetic: Mapping,
    condition: str,
    out_folder: str,
    out_table: str,
    log=print,
) -> None:
    """The synthetic corpus' test songs rendered a second time (genreflow.synthetic,
    rendering 1: other instruments, another room), written as the corpus is (16-bit WAV in
    the GTZAN layout) with the settings `synthetic` (dataset.synthetic and the sample rate)
    it was made with; and the condition's table."""
    from genreflow.synthetic import write_songs

    clips = accepted_test_clips(clips_csv, test_csv)
    songs = []
    for clip in clips.itertuples(index=False):
        genre, _, number = clip.clip.rpartition(".")
        if genre != clip.genre or not number.isdigit():
            raise ValueError(f"test clip {clip.clip} is not a synthetic corpus clip "
                             "(<genre>.<index>); the second rendering needs dataset.kind synthetic")
        songs.append((genre, int(number)))
    paths = write_songs(out_folder, songs, synthetic["seconds"], synthetic["sample_rate"],
                        synthetic["seed"], rendering=1, log=log)
    by_name = {os.path.splitext(os.path.basename(path))[0]: str(path) for path in paths}
    write_csv(out_table, _table(
        {"clip": condition_clip(condition, clip.clip), "genre": clip.genre,
         "path": by_name[clip.clip], "status": "accepted", "condition": condition,
         "source_clip": clip.clip}
        for clip in clips.itertuples(index=False)))
    log(f"rendered {len(paths)} test songs a second time into {out_folder}")


def join_condition_tables(tables: Sequence[str], out_csv: str, log=print) -> None:
    """The conditions' tables in one (what the robustness feature and musicnn jobs read)."""
    frames = [pd.read_csv(path, dtype={"clip": str, "source_clip": str}, keep_default_na=False)
              for path in tables]
    joined = pd.concat(frames, ignore_index=True) if frames else _table([])
    write_csv(out_csv, joined[list(TABLE_COLUMNS)])
    log(f"{len(joined)} clips under {joined['condition'].nunique()} conditions")
