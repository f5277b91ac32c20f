"""Atomic writers for the small hand-off files between workflow steps.

A job killed half-way must never leave a file that looks finished, so every writer
writes a temporary sibling and renames it into place (rename is atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _atomic_target(path: str | os.PathLike) -> tuple[Path, int, str]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    # mkstemp makes 0600 files; results should be readable like any other file written here
    os.fchmod(fd, 0o666 & ~_umask())
    return path, fd, tmp


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path, fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path, fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Key-sorted, indented JSON so that equal content gives equal bytes."""
    write_text_atomic(path, json.dumps(payload, sort_keys=True, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame without its index, atomically."""
    write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))
