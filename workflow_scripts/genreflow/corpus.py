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


@dataclass(frozen=True)
class Listing:
    """A corpus folder's files: the clips, and every other file under a genre folder with
    the reason it is not one (it goes to rejected.csv, so that no file is dropped unsaid)."""

    clips: list[Clip]
    not_clips: list[dict]


def _not_a_clip(entry: os.DirEntry) -> str | None:
    """Why a genre folder's entry is not a clip, or None if it is one."""
    if entry.is_symlink() and not os.path.exists(entry.path):
        return f"broken symbolic link (to {os.readlink(entry.path)})"
    if entry.is_dir():
        return None  # a folder, not a file
    if not entry.is_file():
        return "not a regular file"
    suffix = os.path.splitext(entry.name)[1].lower()
    if suffix not in AUDIO_SUFFIXES:
        return f"not an audio file name (suffix {suffix or 'none'}; audio is {', '.join(AUDIO_SUFFIXES)})"
    return ""


def find_clips(root: str, genres) -> Listing:
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
    not_clips: list[dict] = []
    seen: dict[str, str] = {}
    for genre in genres:
        for entry in sorted(os.scandir(folder / genre), key=lambda e: e.name):
            stem = os.path.splitext(entry.name)[0]
            reason = _not_a_clip(entry)
            if reason is None:
                continue
            if reason:
                not_clips.append({"path": entry.path, "genre": genre, "clip": stem,
                                  "reason": reason})
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
    return Listing(clips, not_clips)


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
        if info.peak_dbfs > 0:
            log(
                f"WARNING: {clip['path']}: samples up to {10 ** (info.peak_dbfs / 20):.2f} "
                f"({info.peak_dbfs:+.1f} dBFS) beyond full scale; kept as they are (every "
                "default image is gain-invariant; the peak is in clips.csv)"
            )
        rows.append(
            {
                **clip,
                "status": "accepted",
                "reason": "",
                "source_seconds": info.source_seconds,
                "source_sample_rate": info.source_sample_rate,
                "source_channels": info.source_channels,
                "peak_dbfs": info.peak_dbfs,
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
            "peak_dbfs",
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


def collect_checks(
    shard_csvs, not_clips, clips_csv: str, rejected_csv: str, log=print
) -> None:
    """Join the shards' check tables into the corpus's clips.csv and rejected.csv; the
    files under the genre folders that are not clips (`not_clips`) are rejects too."""
    import pandas as pd

    from genreflow.io import write_csv

    table = pd.concat([pd.read_csv(path, keep_default_na=False) for path in shard_csvs])
    accepted = table[table.status == "accepted"].drop(columns=["status", "reason"])
    columns = ["path", "genre", "clip", "reason"]
    rejected = pd.concat(
        [table[table.status == "rejected"][columns], pd.DataFrame(list(not_clips), columns=columns)],
        ignore_index=True,
    )
    for row in pd.DataFrame(list(not_clips), columns=columns).itertuples():
        log(f"rejected {row.path}: {row.reason}")
    write_csv(clips_csv, accepted)
    write_csv(rejected_csv, rejected)
    log(f"{len(accepted)} clips accepted, {len(rejected)} rejected")
    loud = accepted[pd.to_numeric(accepted["peak_dbfs"]) > 0]
    if len(loud):
        log(f"WARNING: {len(loud)} accepted clips have samples beyond full scale (peak_dbfs "
            "> 0 in clips.csv), kept as they are")
    if len(accepted) == 0:
        raise ValueError("every clip of the corpus was rejected; see " + rejected_csv)
