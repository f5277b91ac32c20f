"""Train/validation/test manifests at the track level.

A manifest lists clips (tracks), never images or segments, so that all segments of a
track follow it into one split by construction.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


def _genre_seed(seed: int, genre: str) -> int:
    # hashlib, not hash(): Python salts str hashes per process
    return int.from_bytes(hashlib.sha256(f"{seed}:{genre}".encode()).digest()[:8], "little")


def split_sizes(n: int, fractions: dict) -> tuple[int, int, int]:
    """Clip counts per split for one genre; every split gets at least one clip."""
    n_valid = max(int(round(n * fractions["valid"])), 1)
    n_test = max(int(round(n * fractions["test"])), 1)
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise ValueError(
            f"a genre with {n} clips cannot be split by splits.fractions {fractions}: "
            "every split needs at least one clip of every genre"
        )
    return n_train, n_valid, n_test


def stratified_split(clips: pd.DataFrame, fractions: dict, seed: int) -> dict[str, pd.DataFrame]:
    """Shuffle each genre's clips with a seed of its own and cut by `fractions`."""
    parts = {name: [] for name in SPLITS}
    for genre, group in clips.groupby("genre", sort=True):
        ordered = group.sort_values("clip").reset_index(drop=True)
        order = np.random.default_rng(_genre_seed(seed, genre)).permutation(len(ordered))
        shuffled = ordered.iloc[order]
        n_train, n_valid, _ = split_sizes(len(shuffled), fractions)
        parts["train"].append(shuffled.iloc[:n_train])
        parts["valid"].append(shuffled.iloc[n_train : n_train + n_valid])
        parts["test"].append(shuffled.iloc[n_train + n_valid :])
    return {name: _manifest(pd.concat(frames)) for name, frames in parts.items()}


def _manifest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["clip", "genre"]].sort_values(["genre", "clip"]).reset_index(drop=True)


def read_list(path: str) -> list[str]:
    """Clip names from a list of `<genre>/<genre>.000NN.wav` lines (blank lines and # comments skipped)."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line).stem)
    return names


def splits_from_lists(
    clips: pd.DataFrame, rejected: pd.DataFrame, lists: dict[str, str]
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Manifests from user lists, and a table of listed names that could not be used."""
    known = set(clips["clip"])
    reasons = dict(zip(rejected["clip"], rejected["reason"]))
    owner: dict[str, str] = {}
    parts, unmatched = {}, []
    for split in SPLITS:
        names = read_list(lists[split])
        for name in names:
            if name in owner and owner[name] != split:
                raise ValueError(
                    f"splits.lists: clip {name!r} is listed in both {owner[name]} "
                    f"({lists[owner[name]]}) and {split} ({lists[split]})"
                )
            owner[name] = split
            if name not in known:
                why = f"rejected: {reasons[name]}" if name in reasons else "not in the corpus"
                unmatched.append({"split": split, "clip": name, "reason": why})
        parts[split] = _manifest(clips[clips["clip"].isin(set(names))])
    return parts, pd.DataFrame(unmatched, columns=["split", "clip", "reason"])


def make_splits(
    clips_csv: str,
    rejected_csv: str,
    settings: dict,
    list_paths: dict[str, str] | None,
    out: dict[str, str],
    unmatched_csv: str,
    log=print,
) -> None:
    from genreflow.io import write_csv

    clips = pd.read_csv(clips_csv)
    rejected = pd.read_csv(rejected_csv, keep_default_na=False)
    if list_paths:
        parts, unmatched = splits_from_lists(clips, rejected, list_paths)
        for row in unmatched.itertuples():
            log(f"WARNING: {row.split} list names {row.clip}, which is {row.reason}")
        unused = len(clips) - sum(len(part) for part in parts.values())
        if unused:
            log(f"{unused} accepted clips are in none of the lists and are left out")
    else:
        parts = stratified_split(clips, settings["fractions"], settings["seed"])
        unmatched = pd.DataFrame(columns=["split", "clip", "reason"])
    for split in SPLITS:
        if parts[split].empty:
            raise ValueError(f"split {split!r} is empty; check splits settings and the corpus")
        write_csv(out[split], parts[split])
        log(f"{split}: {len(parts[split])} clips")
    write_csv(unmatched_csv, unmatched)
