"""Atomic writers for the small hand-off files between workflow steps.

A job killed half-way must never leave a file that looks finished, so every writer
writes a temporary sibling and renames it into place (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".part") -> Iterator[str]:
    """A temporary sibling of `path` to write to: renamed to `path` when the block ends
    without an error, removed otherwise, so that a half-written file never has the name
    of a finished one. `suffix`: for writers that want their own (Keras: ".keras")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    # mkstemp makes 0600 files; results should be readable like any other file written here
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Key-sorted, indented JSON so that equal content gives equal bytes."""
    write_text_atomic(path, json.dumps(payload, sort_keys=True, indent=2) + "\n")


def hash_file_into(digest, path: str | os.PathLike) -> None:
    """Feed a file to a hashlib digest in 1 MiB blocks (weights and checkpoints are large)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    hash_file_into(digest, path)
    return digest.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame without its index, atomically."""
    write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))


# Embedding caches: numpy only, so that the musicnn process (TF1 graph mode, legacy
# tf-keras) can write them without importing Keras 3.
@dataclass(frozen=True)
class Embeddings:
    embeddings: np.ndarray
    clip: np.ndarray
    segment: np.ndarray
    label: np.ndarray


def save_embeddings(path, embeddings, clip, segment, label) -> None:
    """Write an embedding cache (.npz) atomically: temp file, then os.replace."""
    arrays = {
        "embeddings": np.asarray(embeddings, dtype=np.float32),
        "clip": np.asarray(clip, dtype=str),
        "segment": np.asarray(segment, dtype=np.int64),
        "label": np.asarray(label, dtype=np.int32),
    }
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"embedding cache arrays differ in length: {lengths}")
    # A file object, not a name: np.savez would append ".npz" to the temp name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_embeddings(path) -> Embeddings:
    with np.load(path, allow_pickle=False) as cache:
        return Embeddings(
            embeddings=cache["embeddings"],
            clip=cache["clip"],
            segment=cache["segment"],
            label=cache["label"],
        )
