"""Journals that survive a crash: a torn tail is repaired with every finished trial kept, a
broken middle record stops with the file and line, and a waiting lock is said at once."""

import errno
import os
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from genreflow import journal as journal_module
from genreflow.journal import JournalDamaged, journal_storage, repair_torn_tail
from genreflow.tuning.study import claim_trial, release_dead_claims, round_trials

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _finished_study(path, n_complete=3):
    """A study in a journal with `n_complete` completed trials claimed like a round's."""
    study = optuna.create_study(storage=journal_storage(path, log=lambda m: None), study_name="s",
                                direction="maximize")
    for number in range(n_complete):
        trial = claim_trial(study, 10, 0, "first")
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 0.1 * number)
    return study


def _reload(path, said=None):
    log = (said.append if said is not None else (lambda m: None))
    return optuna.load_study(study_name="s", storage=journal_storage(path, log=log))


def _complete(study):
    return [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


def test_a_tail_cut_in_half_is_moved_aside_and_the_finished_trials_kept(tmp_path):
    path = tmp_path / "study.journal"
    _finished_study(path)
    data = path.read_bytes()
    records = data.split(b"\n")[:-1]
    last = records[-1]  # the last trial's completion
    path.write_bytes(data[: len(data) - 1 - len(last) // 2])  # cut inside the last record
    said = []
    study = _reload(path, said)
    assert _complete(study) == [0, 1]  # the trial whose record was torn is no longer complete
    warning = next(line for line in said if line.startswith("WARNING"))
    assert str(path) in warning and f"kept its {len(records) - 1} complete records" in warning
    (aside,) = tmp_path.glob("study.journal.torn-*")
    assert aside.read_bytes() == last[: len(last) - len(last) // 2]
    assert str(aside) in warning
    # the journal now ends in a complete record: the next append starts a line of its own
    trial = claim_trial(study, 10, 0, "second")
    study.tell(trial, 0.9)
    assert _complete(_reload(path)) == [0, 1, 3]


def test_a_tail_cut_at_every_byte_of_the_last_record(tmp_path):
    source = tmp_path / "source.journal"
    _finished_study(source, n_complete=2)
    data = source.read_bytes()
    start = data[:-1].rfind(b"\n") + 1  # where the last record starts
    for cut in range(start, len(data)):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        path = folder / "study.journal"
        path.write_bytes(data[:cut])
        study = _reload(path)
        if cut == len(data) - 1:  # only the newline is missing: the record is complete
            assert _complete(study) == [0, 1] and not list(folder.glob("*.torn-*"))
        else:
            assert _complete(study) == [0], cut
            assert len(list(folder.glob("*.torn-*"))) == (1 if cut > start else 0)
        assert path.read_bytes().endswith(b"\n")


def test_a_broken_record_in_the_middle_stops_with_file_and_line(tmp_path):
    path = tmp_path / "study.journal"
    _finished_study(path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:10]  # what appending after a torn tail makes of the old line
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalDamaged) as error:
        journal_storage(path, log=lambda m: None)
    message = str(error.value)
    assert str(path) in message and "line 3 of" in message and "mv " in message


def test_a_disk_full_in_the_middle_of_a_trial_loses_only_that_trial(tmp_path, monkeypatch):
    """A writer that fails part way (ENOSPC after half a record), as a full disk does: the
    rerun repairs the journal, fails the interrupted trial as not counted and completes the
    round with exactly n_trials counted trials, every completed one kept."""
    path = tmp_path / "study.journal"
    study = _finished_study(path, n_complete=2)
    trial = claim_trial(study, 4, 0, "first")
    trial.suggest_float("x", 0, 1)

    real_open = open

    class HalfWrite:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def full_disk_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return HalfWrite(handle) if os.fspath(file) == str(path) and "a" in mode else handle

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(OSError, match="No space left"):
        study.tell(trial, 0.5)
    monkeypatch.undo()
    assert not path.read_bytes().endswith(b"\n")

    resumed = _reload(path)
    assert _complete(resumed) == [0, 1]
    assert release_dead_claims(resumed, worker=0, workers=1) == [2]
    while (trial := claim_trial(resumed, 4, 0, "second")) is not None:
        trial.suggest_float("x", 0, 1)
        resumed.tell(trial, 0.7)
    counted = round_trials(resumed, 4)
    assert [t.number for t in counted] == [0, 1, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in counted)


def test_a_held_lock_is_said_within_a_second(tmp_path):
    path = tmp_path / "study.journal"
    _finished_study(path)
    lock = Path(str(path) + ".lock")
    lock.write_text("")
    said = []
    started = time.monotonic()
    thread = threading.Thread(target=repair_torn_tail, args=(path, said.append))
    thread.start()
    time.sleep(1.0)
    assert said and str(lock) in said[0] and "held since" in said[0]
    lock.unlink()  # the other writer finishes
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 10


def test_plots_and_collection_open_journals_the_same_way():
    """No reader opens a journal but through journal_storage (which repairs it first)."""
    import inspect

    from genreflow.plots import tuning as tuning_plots
    from genreflow.tuning import collect, worker

    assert collect.journal_storage is worker.journal_storage is journal_module.journal_storage
    assert "JournalFileBackend" not in inspect.getsource(tuning_plots)
