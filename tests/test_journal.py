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


# ------------------------------------------------------------------- optuna-dashboard
def dashboard_storage(path):
    """The storage optuna-dashboard opens for `optuna-dashboard <file>` on Linux and macOS
    (optuna_dashboard/_storage_url.py, get_journal_file_storage, v0.20): a JournalStorage
    on a JournalFileBackend with its default lock, the symbolic-link lock. Written out here
    because optuna-dashboard is an optional extra (`pip install -e '.[dashboard]'`), not in
    requirements.lock."""
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(file_path=str(path)))


def test_a_rounds_journal_opens_as_optuna_dashboard_opens_it(tmp_path):
    """README, "Tuning in optuna-dashboard": every trial genreflow wrote is read back, with
    its parameters, values and the claims genreflow keeps in trial attributes."""
    path = tmp_path / "results/tuning/vgg16/mel/round_0/study.journal"
    written = _finished_study(path, n_complete=3)
    studies = optuna.get_all_study_summaries(storage=dashboard_storage(path))
    assert [summary.study_name for summary in studies] == ["s"]
    read = optuna.load_study(study_name="s", storage=dashboard_storage(path))
    assert [t.params for t in read.trials] == [t.params for t in written.trials]
    assert [t.value for t in read.trials] == pytest.approx([0.0, 0.1, 0.2])
    assert [t.system_attrs for t in read.trials] == [t.system_attrs for t in written.trials]
    assert read.best_trial.number == 2


def test_the_dashboards_lock_and_genreflows_exclude_each_other(tmp_path):
    """The dashboard writes too (notes, a trial's state): its symbolic-link lock and
    genreflow's open lock are the same `study.journal.lock`, so neither writes while the
    other holds it."""
    from optuna.storages.journal import JournalFileSymlinkLock

    path = tmp_path / "study.journal"
    _finished_study(path, n_complete=1)
    ours = journal_module.ReportingOpenLock(str(path), log=lambda m: None)
    dashboards = JournalFileSymlinkLock(str(path), grace_period=None)
    got = threading.Event()
    assert ours.acquire()
    waiter = threading.Thread(target=lambda: dashboards.acquire() and got.set())
    waiter.start()
    time.sleep(1.0)
    assert not got.is_set()  # waits while genreflow holds the lock
    ours.release()
    waiter.join(timeout=10)
    assert got.is_set()
    said = []
    worker = threading.Thread(target=lambda: said.append(_reload(path, said).trials))
    worker.start()
    time.sleep(1.0)
    assert any("waiting for the journal lock" in str(line) for line in said)
    dashboards.release()
    worker.join(timeout=10)
    assert len(said[-1]) == 1
