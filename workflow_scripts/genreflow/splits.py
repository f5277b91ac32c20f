"""Train/validation/test manifests at the track level.

A manifest lists clips (tracks), never images or segments, so that all segments of a
track follow it into one split by construction.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genreflow.io import atomic_path
from genreflow.names import SPLITS
from genreflow.plan import CORPUS, FAULT_FILTERED_LISTS_FOLDER

# ------------------------------------------------------------ the fault-filtered GTZAN split


@dataclass(frozen=True)
class PublishedList:
    split: str
    url: str
    sha256: str
    target: str  # where fetch_split_lists puts it (relative to the working directory)


_DNN_MGR = "https://raw.githubusercontent.com/coreyker/dnn-mgr/bdad579ea6cb37b665ea6019fe1026a6ce20cbc7/gtzan/"
# The artist-filtered ("fault-filtered") split of Kereliuk, Sturm and Larsen (2015),
# 443 / 197 / 290 tracks with no artist in two splits, as published with their code, at a
# pinned commit; the checksums are those files'.
FAULT_FILTERED_LISTS = {
    split: PublishedList(split, _DNN_MGR + f"{split}_filtered.txt", sha256,
                         f"{FAULT_FILTERED_LISTS_FOLDER}/{split}_filtered.txt")
    for split, sha256 in (
        ("train", "2b04966cef1486f1a7767b74271533fa23e220388db804a1937835e1fc4fa3fa"),
        ("valid", "f8fbee7c52397a0e0f3a91dc54fedecb2e27f5bdc9a9daeab8cb10d077e26956"),
        ("test", "09cafa6a89ce0a27f30ed250d56ecb4d03c22fffb5a693f96c7ae655ee02ac72"),
    )
}


def file_sha256(path: str | os.PathLike) -> str:
    from genreflow.io import hash_file_into

    digest = hashlib.sha256()
    hash_file_into(digest, path)
    return digest.hexdigest()


def check_published_list(path: str | os.PathLike, sha256: str, url: str) -> None:
    """Refuse a list whose content is not the published one, naming both checksums."""
    found = file_sha256(path)
    if found != sha256:
        raise ValueError(
            f"{path} has sha256 {found}, but the published list {url} has sha256 {sha256}: "
            "it is another or a damaged file. Delete it and run `snakemake fetch_split_lists` "
            "where there is internet, or put the published file there."
        )


def fetch_published_lists(lists, log=print, timeout: float = 60.0) -> None:
    """Download each of `lists` (PublishedList) to its target, checksummed.

    A target already there with the right checksum is kept as it is; a download is written
    next to its target and renamed only once its checksum matches, so an interrupted or
    wrong download never looks like a list. Without internet the error names every URL and
    the exact path to put its file at.
    """
    missing = []
    for published in lists:
        target = Path(published.target)
        if target.is_file() and file_sha256(target) == published.sha256:
            log(f"{target}: already there, checksum verified")
            continue
        try:
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle, urllib.request.urlopen(
                    published.url, timeout=timeout
                ) as response:
                    handle.write(response.read())
                check_published_list(tmp, published.sha256, published.url)
            log(f"downloaded {published.url} to {target}, checksum verified")
        except OSError as error:
            missing.append((published, error))
    if missing:
        lines = "\n".join(
            f"  {published.url}\n    -> put it at {published.target} (sha256 {published.sha256})"
            for published, _ in missing
        )
        raise RuntimeError(
            f"could not download {len(missing)} split list(s) ({missing[0][1]}). This rule "
            "needs internet: run it where you have some (`snakemake --cores 1 "
            f"fetch_split_lists`), or download by hand:\n{lines}"
        )



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


def _rejections(rejected: pd.DataFrame, genre: str) -> str:
    reasons = rejected.loc[rejected["genre"] == genre, "reason"].value_counts()
    if reasons.empty:
        return "none rejected"
    shown = "; ".join(f"{count} x {reason}" for reason, count in reasons.head(3).items())
    more = f"; and {reasons.iloc[3:].sum()} more" if len(reasons) > 3 else ""
    return f"{reasons.sum()} rejected: {shown}{more}"


def check_genres_can_be_split(
    clips: pd.DataFrame, rejected: pd.DataFrame, genres, fractions: dict
) -> None:
    """Stop before splitting when a genre of dataset.genres has fewer accepted clips than
    the split needs (one per split at least): otherwise it would silently be absent from
    the splits while every macro-F1 still averaged over it."""
    problems = []
    for genre in genres:
        count = int((clips["genre"] == genre).sum())
        try:
            split_sizes(count, fractions)
        except ValueError:
            problems.append(f"  {genre}: {count} accepted clip(s) ({_rejections(rejected, genre)})")
    if problems:
        raise ValueError(
            "these genres have too few usable clips for a train/validation/test split (at "
            "least one per split):\n" + "\n".join(problems) + "\nFix or add their files (see "
            f"{CORPUS}/rejected.csv), or remove them from dataset.genres to go on without them."
        )


def check_every_split_has_every_genre(
    parts: dict[str, pd.DataFrame], rejected: pd.DataFrame, genres, lists: dict[str, str]
) -> None:
    """With split lists, every genre must be in every split: a genre missing from the test
    split would be averaged into every macro-F1 with an F1 of 0."""
    problems = [
        f"  {genre}: no clip in the {split} split ({lists[split]}; {_rejections(rejected, genre)})"
        for split in SPLITS
        for genre in genres
        if not (parts[split]["genre"] == genre).any()
    ]
    if problems:
        raise ValueError(
            "the split lists leave genres out of a split:\n" + "\n".join(problems)
            + "\nAdd clips of them to those lists, or remove them from dataset.genres."
        )


# One job's entry point: a parameter per input, param and output of its rule (make_splits),
# passed by name from the thin script.
def make_splits(
    clips_csv: str,
    rejected_csv: str,
    settings: dict,
    list_paths: dict[str, str] | None,
    out: dict[str, str],
    unmatched_csv: str,
    log=print,
    list_checksums: dict[str, str] | None = None,
    genres=None,
) -> None:
    """Write the manifests: from `list_paths` (their sha256 checked against
    `list_checksums` when given: the published fault-filtered lists), else stratified."""
    from genreflow.io import write_csv

    clips = pd.read_csv(clips_csv, dtype={"clip": str})
    rejected = pd.read_csv(rejected_csv, keep_default_na=False, dtype={"clip": str})
    for split, sha256 in (list_checksums or {}).items():
        check_published_list(list_paths[split], sha256, FAULT_FILTERED_LISTS[split].url)
        log(f"{list_paths[split]}: the published {split} list (sha256 {sha256[:12]}...)")
    genres = list(genres) if genres is not None else sorted(clips["genre"].unique())
    if list_paths:
        parts, unmatched = splits_from_lists(clips, rejected, list_paths)
        check_every_split_has_every_genre(parts, rejected, genres, list_paths)
        for row in unmatched.itertuples():
            log(f"WARNING: {row.split} list names {row.clip}, which is {row.reason}")
        unused = len(clips) - sum(len(part) for part in parts.values())
        if unused:
            log(f"{unused} accepted clips are in none of the lists and are left out")
    else:
        check_genres_can_be_split(clips, rejected, genres, settings["fractions"])
        parts = stratified_split(clips, settings["fractions"], settings["seed"])
        unmatched = pd.DataFrame(columns=["split", "clip", "reason"])
    for split in SPLITS:
        if parts[split].empty:
            raise ValueError(f"split {split!r} is empty; check splits settings and the corpus")
        write_csv(out[split], parts[split])
        log(f"{split}: {len(parts[split])} clips")
    write_csv(unmatched_csv, unmatched)


# -------------------------------------------------------------------------------- folds
# Folds at the track level, for cross-validated tuning objectives and k-fold screening: a
# fold holds whole tracks (every segment of a track in its track's fold), stratified by
# genre, seeded, so the same tracks give the same folds in every run.
def track_folds(clips: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each example: StratifiedKFold over the unique tracks (sorted,
    then shuffled with `seed`), so that a track's segments share its fold."""
    from sklearn.model_selection import StratifiedKFold

    clips, labels = np.asarray(clips), np.asarray(labels)
    tracks, first = np.unique(clips, return_index=True)
    track_labels = labels[first]
    counts = np.bincount(track_labels)
    smallest = counts[counts > 0].min()
    if smallest < k:
        raise ValueError(
            f"{k} folds need at least {k} tracks of every genre, but one has {smallest}: "
            "lower the number of folds (tuning.cv_folds, screening.folds)"
        )
    fold_of_track = np.empty(len(tracks), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(tracks)), track_labels)):
        fold_of_track[held] = fold
    return fold_of_track[np.searchsorted(tracks, clips)]
