"""Finding the clips of a corpus, cutting them into shards, and checking them.

Finding runs when Snakemake parses the workflow, so it only lists file names (a GTZAN
listing takes milliseconds); decoding happens in the `check_clips` jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".au", ".snd", ".aif", ".aiff", ".flac", ".ogg", ".mp3")
GENRE_FOLDERS = ("genres_original", "genres")  # Kaggle copy, original release


@dataclass(frozen=True)
class Clip:
    clip: str  # the file stem, e.g. "blues.00003"; unique in a corpus
    genre: str
    path: str


def synthetic_clips(root: str, genres, clips_per_genre: int) -> list[Clip]:
    from genreflow.synthetic import clip_relpath

    return [
        Clip(f"{genre}.{index:05d}", genre, os.path.join(root, clip_relpath(genre, index)))
        for genre in genres
        for index in range(clips_per_genre)
    ]


def genre_root(root: str) -> Path:
    """The folder that holds one sub-folder per genre."""
    base = Path(root)
    for name in GENRE_FOLDERS:
        if (base / name).is_dir():
            return base / name
    return base


def find_clips(root: str, genres) -> list[Clip]:
    """Audio files under `<root>/<genre>/` (or `<root>/genres_original/<genre>/`).

    Raises FileNotFoundError naming what is missing; files in folders that are not one of
    `genres` are not clips of this corpus.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"dataset.root: folder {root!r} does not exist; point it at the folder that "
            f"holds {GENRE_FOLDERS[0]}/<genre>/ (Kaggle GTZAN) or genres/<genre>/ "
            "(original release)"
        )
    folder = genre_root(root)
    missing = [genre for genre in genres if not (folder / genre).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"dataset.root: no folder for genre(s) {missing} under {str(folder)!r}; "
            "expected <genre>/<genre>.000NN.wav (or .au)"
        )
    clips: list[Clip] = []
    seen: dict[str, str] = {}
    for genre in genres:
        for entry in sorted(os.scandir(folder / genre), key=lambda e: e.name):
            stem, suffix = os.path.splitext(entry.name)
            if not entry.is_file() or suffix.lower() not in AUDIO_SUFFIXES:
                continue
            if stem in seen:
                raise ValueError(
                    f"dataset.root: clip name {stem!r} appears twice "
                    f"({seen[stem]} and {entry.path}); clip names must be unique"
                )
            seen[stem] = entry.path
            clips.append(Clip(stem, genre, entry.path))
    if not clips:
        raise FileNotFoundError(
            f"dataset.root: no audio files ({', '.join(AUDIO_SUFFIXES)}) under {str(folder)!r}"
        )
    return clips


def shard_clips(clips: list[Clip], shard_size: int) -> dict[str, list[Clip]]:
    """Fixed-size shards in corpus order, named 000, 001, ..."""
    return {
        f"{start // shard_size:03d}": clips[start : start + shard_size]
        for start in range(0, len(clips), shard_size)
    }


def check_shard(clips, audio, on_bad_file: str, out_csv: str, log=print) -> None:
    """Decode and check every clip of a shard; write clip, genre, path, status, reason, ...

    With on_bad_file == "fail", raise after checking the whole shard, listing every bad file.
    """
    import pandas as pd

    from genreflow.audio import BadClip, load_clip
    from genreflow.io import write_csv

    rows = []
    for clip in clips:
        try:
            _, info = load_clip(clip["path"], audio)
        except BadClip as reason:
            log(f"rejected {clip['path']}: {reason}")
            rows.append({**clip, "status": "rejected", "reason": str(reason)})
            continue
        rows.append(
            {
                **clip,
                "status": "accepted",
                "reason": "",
                "source_seconds": info.source_seconds,
                "source_sample_rate": info.source_sample_rate,
                "source_channels": info.source_channels,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "clip",
            "genre",
            "path",
            "status",
            "reason",
            "source_seconds",
            "source_sample_rate",
            "source_channels",
        ],
    )
    bad = table[table.status == "rejected"]
    log(f"checked {len(table)} clips: {len(table) - len(bad)} accepted, {len(bad)} rejected")
    if on_bad_file == "fail" and len(bad):
        listing = "\n".join(f"  {row.path}: {row.reason}" for row in bad.itertuples())
        raise BadClip(
            f"{len(bad)} bad file(s) and audio.on_bad_file is 'fail':\n{listing}\n"
            "Fix or remove them, or set audio.on_bad_file: skip to leave them out."
        )
    write_csv(out_csv, table)


def collect_checks(shard_csvs, clips_csv: str, rejected_csv: str, log=print) -> None:
    """Join the shards' check tables into the corpus's clips.csv and rejected.csv."""
    import pandas as pd

    from genreflow.io import write_csv

    table = pd.concat([pd.read_csv(path, keep_default_na=False) for path in shard_csvs])
    accepted = table[table.status == "accepted"].drop(columns=["status", "reason"])
    rejected = table[table.status == "rejected"][["path", "genre", "clip", "reason"]]
    write_csv(clips_csv, accepted)
    write_csv(rejected_csv, rejected)
    log(f"{len(accepted)} clips accepted, {len(rejected)} rejected")
    if len(accepted) == 0:
        raise ValueError("every clip of the corpus was rejected; see " + rejected_csv)
