"""Optuna journal files that survive a crash: a torn last record is repaired before the
journal is read, and waiting for its lock is said at once.

A journal is one JSON record per line, appended under a lock file. A crash or a full disk
during an append can leave the file ending in part of a record. Optuna then skips that
line when reading, but its next append lands on the same line, and from then on every read
fails with a bare JSONDecodeError (optuna/optuna#5138): the finished trials are out of
reach. `repair_torn_tail`, run by `journal_storage` before every study is opened, cuts the
journal back to its last complete record and moves the torn bytes to a file beside it
(never deleting them). It holds the journal's own lock while it does so: with several
workers on one study, a missing final newline may otherwise be another worker's append in
progress. A record broken in the middle of the file cannot be cut off without losing what
follows it; that stops the job with the file, the line and what to do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._file import get_lock_file

# Optuna's own: a lock left by a killed process is taken over after this many seconds.
GRACE_PERIOD = 30


class JournalDamaged(RuntimeError):
    """A journal with a broken record that truncation cannot repair."""


class ReportingOpenLock(JournalFileOpenLock):
    """Optuna's lock file created with open(O_CREAT | O_EXCL), atomic on local disks and on
    NFSv3 or later; when it is held by someone else, the job's log says so at once, with the
    lock's file and age, instead of waiting in silence (up to GRACE_PERIOD for a stale one)."""

    def __init__(self, journal: str, log=print) -> None:
        super().__init__(journal, grace_period=GRACE_PERIOD)
        self.log = log

    def acquire(self) -> bool:
        try:
            os.close(os.open(self._lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            self._say_waiting()
        return super().acquire()

    def _say_waiting(self) -> None:
        try:
            held_since = os.stat(self._lock_file).st_mtime
        except FileNotFoundError:
            return  # released in between: Optuna's acquire takes it at once
        age = time.time() - held_since
        since = dt.datetime.fromtimestamp(held_since).isoformat(sep=" ", timespec="seconds")
        self.log(
            f"waiting for the journal lock {self._lock_file}, held since {since} ({age:.0f} s): "
            f"another worker is writing, or a killed job left it (taken over once it is "
            f"{GRACE_PERIOD} s old)"
        )


def _records(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _check_complete_records(path: str, records: list[bytes]) -> None:
    for number, line in enumerate(records, start=1):
        if not _parses(line):
            raise JournalDamaged(
                f"{path}: line {number} of {len(records)} is not a complete journal record "
                f"({line[:80]!r}...), and records follow it, so cutting off the end cannot "
                "repair the file. The trials recorded before that line are intact: move the "
                f"journal aside (mv {path} {path}.damaged) and rerun the round to start it "
                f"afresh, or delete line {number} by hand to keep the others."
            )


def repair_torn_tail(path: str | os.PathLike, log=print) -> int:
    """Cut `path` back to its last complete record, moving a torn tail to a file beside it;
    return the number of records kept. Holds the journal's lock (see the module docstring).
    A complete last record whose newline is missing gets its newline."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return 0
    with get_lock_file(ReportingOpenLock(path, log)):
        with open(path, "rb") as handle:
            data = handle.read()
        end = data.rfind(b"\n") + 1
        records, tail = _records(data[:end]), data[end:]
        _check_complete_records(path, records)
        if not tail:
            return len(records)
        if _parses(tail):
            with open(path, "ab") as handle:
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            log(f"WARNING: {path}: its last record lacked its newline; added it "
                f"({len(records) + 1} records)")
            return len(records) + 1
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = f"{path}.torn-{stamp}"
        # The torn bytes go aside before the journal is cut: a crash in between leaves
        # both, never neither.
        with open(aside, "wb") as handle:
            handle.write(tail)
            handle.flush()
            os.fsync(handle.fileno())
        os.truncate(path, end)
        log(
            f"WARNING: {path} ended in a torn record ({len(tail)} bytes, a write cut short by a "
            f"crash or a full disk): kept its {len(records)} complete records and moved the "
            f"torn bytes to {aside}"
        )
        return len(records)


def journal_storage(path: str | os.PathLike, log=print) -> optuna.storages.JournalStorage:
    """The study storage of a journal file, repaired first (`repair_torn_tail`) and locked
    by `ReportingOpenLock`. Every reader of a round's journal (workers, collection, plots)
    opens it here."""
    path = os.fspath(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    repair_torn_tail(path, log)
    return optuna.storages.JournalStorage(
        JournalFileBackend(path, lock_obj=ReportingOpenLock(path, log))
    )
