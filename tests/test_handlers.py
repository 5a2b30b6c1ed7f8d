"""The accounting file handler: rollover, archiving, crash safety, many writers, faults.

Every test works on real files in a temporary directory and checks what a user would see: the
files' names and bytes, what moved where, and what ``handleError`` printed on stderr. Unless a
test says otherwise, the clock the handler sees is frozen at ``T`` so that file names are known
in advance; records carry ``T`` as their time too.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mta_logging import AccountingFileHandler, AccountingLogger
from mta_logging import archive as archive_module
from mta_logging import faults as faults_module
from mta_logging import handlers as handlers_module

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
STAMP = "2024-05-01 12:00:00"
NAME = "d.2024-05-01-120000"
HEADER = "type\ttimeLogged\ttimeQueued\trcpt\tsrcMta\tsrcIp\tvmta\tjobId\tdsnStatus\tdsnMsg\n"
WORKERS = Path(__file__).with_name("handler_workers.py")


def line(rcpt: str, job: str = "j1", stamp: str = STAMP) -> str:
    return f"d\t{stamp}\t\t{rcpt}\t\t\t\t{job}\t\t\n"


def disk_full(fd: int, data: bytes) -> int:
    """``os.write`` on a full disk."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def record(rcpt: str, created: float = T) -> logging.LogRecord:
    rec = logging.LogRecord("mta.accounting", logging.INFO, "(accounting)", 0,
                            "%s %s job %s: %s", ("delivered", rcpt, "j1", "-"), None)
    rec.outcome = AccountingLogger.outcome("delivered", rcpt, job_id="j1")
    rec.created = created
    return rec


def log(handler: logging.Handler, *rcpts: str) -> None:
    for rcpt in rcpts:
        handler.handle(record(rcpt))


def names(directory: Path) -> list[str]:
    """The files a reader sees (hidden ones, such as a spare or a pending file, left out)."""
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name[0] != ".")


def everything(directory: Path) -> list[str]:
    """Every file, hidden ones included."""
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's clock stops at T (file names, interval deadlines, retention ages)."""
    monkeypatch.setattr(handlers_module, "time", SimpleNamespace(time=lambda: T))


@pytest.fixture
def fault_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock of the lines about records that could not be written: T, until a test sets
    ``fault_clock[0]``."""
    clock = [T]
    monkeypatch.setattr(faults_module, "time", SimpleNamespace(
        time=lambda: clock[0], strftime=time.strftime, localtime=time.localtime))
    return clock


@pytest.fixture
def make(tmp_path: Path, frozen: None) -> Iterator[Callable[..., AccountingFileHandler]]:
    """Build handlers for ``tmp_path/delivered``; every one is closed after the test."""
    made: list[AccountingFileHandler] = []

    def build(**options: Any) -> AccountingFileHandler:
        options.setdefault("directory", tmp_path / "delivered")
        handler = AccountingFileHandler("delivered", **options)
        made.append(handler)
        return handler

    yield build
    for handler in made:
        handler.close()


@pytest.fixture
def active(tmp_path: Path) -> Path:
    return tmp_path / "delivered"


@pytest.fixture
def archived(active: Path) -> Path:
    return active / "archive"


# -- the file and its header --------------------------------------------------------------------

def test_first_record_creates_the_file_with_the_header_first(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    handler = make()
    log(handler, "a@example.com", "b@example.com")
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line("b@example.com")


def test_name_template_placeholders(make: Callable[..., AccountingFileHandler],
                                    active: Path) -> None:
    handler = make(file_name="{kind}-{host}-{pid}-{seq}-{time}.{ext}", extension="log")
    log(handler, "a@example.com")
    handler.doRollover()
    log(handler, "b@example.com")
    host = __import__("socket").gethostname().split(".")[0]
    stem = f"d-{host}-{os.getpid()}"
    assert names(active) == [f"{stem}-1-2024-05-01-120000.log", f"{stem}-2-2024-05-01-120000.log"]


# -- size rollover -------------------------------------------------------------------------------

RECORD = len(line("r000@example.com"))  # every record in these tests has this length


@pytest.mark.parametrize("per_file, slack", [(3, 0), (3, RECORD - 1)])
def test_size_rollover_fills_each_file_up_to_max_size_and_not_past_it(
        make: Callable[..., AccountingFileHandler], archived: Path, per_file: int,
        slack: int) -> None:
    limit = len(HEADER) + per_file * RECORD + slack
    handler = make(archiving=True, max_size=limit / 1_000_000)
    rcpts = [f"r{n:03}@example.com" for n in range(10)]
    log(handler, *rcpts)
    handler.close()
    files = [f"{NAME}.tsv", f"{NAME}.1.tsv", f"{NAME}.2.tsv", f"{NAME}.3.tsv"]
    assert names(archived) == sorted(files)
    for index, name in enumerate(files):
        chunk = rcpts[index * per_file:(index + 1) * per_file]
        assert text(archived / name) == HEADER + "".join(line(r) for r in chunk)
        assert (archived / name).stat().st_size <= limit


@pytest.mark.parametrize("max_size", [0.00397, 0.00401, 0.001])
def test_max_size_is_decimal_megabytes_to_the_byte(
        make: Callable[..., AccountingFileHandler], active: Path, max_size: float) -> None:
    """0.00397 MB is 3970 bytes (not 3969, as truncating 3969.9999999999995 gives)."""
    limit = round(max_size * 1_000_000)
    # records padded so that the header plus whole records make exactly ``limit`` bytes
    count = 5
    pad = (limit - len(HEADER)) // count - len(line(""))
    rcpts = [f"{n}{'x' * (pad - 1)}" for n in range(count)]
    rcpts[-1] += "y" * ((limit - len(HEADER)) - count * len(line("")) - count * pad)
    handler = make(max_size=max_size)
    log(handler, *rcpts, "next@example.com")
    handler.flush()  # the file a rollover starts gets its name off the logging call
    first = active / f"{NAME}.tsv"
    assert first.stat().st_size == limit
    assert text(first) == HEADER + "".join(line(r) for r in rcpts)
    assert text(active / f"{NAME}.1.tsv") == HEADER + line("next@example.com")


def test_a_record_larger_than_max_size_gets_a_file_of_its_own(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    handler = make(archiving=True, max_size=0.0002)
    big = "big" + "x" * 300 + "@example.com"
    log(handler, "a@example.com", big, "b@example.com")
    handler.close()
    assert [text(archived / n) for n in (f"{NAME}.tsv", f"{NAME}.1.tsv", f"{NAME}.2.tsv")] == [
        HEADER + line("a@example.com"), HEADER + line(big), HEADER + line("b@example.com")]


def test_without_archiving_max_size_starts_new_files_beside_the_old_ones(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    handler = make(max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com", "r001@example.com", "r002@example.com")
    handler.close()
    assert names(active) == [f"{NAME}.1.tsv", f"{NAME}.2.tsv", f"{NAME}.tsv"]
    assert [text(active / n) for n in (f"{NAME}.tsv", f"{NAME}.1.tsv", f"{NAME}.2.tsv")] == [
        HEADER + line(f"r00{n}@example.com") for n in range(3)]


def test_max_size_zero_means_no_limit(make: Callable[..., AccountingFileHandler],
                                      active: Path) -> None:
    handler = make(max_size=0)
    log(handler, *(f"r{n:03}@example.com" for n in range(500)))
    assert names(active) == [f"{NAME}.tsv"]


def test_the_size_is_kept_in_memory_not_read_back_per_record(
        make: Callable[..., AccountingFileHandler], monkeypatch: pytest.MonkeyPatch) -> None:
    handler = make(archiving=True, max_size=0.001)
    log(handler, "first@example.com")
    calls: list[str] = []
    me = threading.get_ident()  # (the maintenance thread looks once a second: not counted)
    for name in ("stat", "fstat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, _name=name, **k: (
            threading.get_ident() == me and calls.append(_name), _real(*a, **k))[1])
    log(handler, *(f"r{n:03}@example.com" for n in range(8)))  # no rollover yet
    assert calls == []


# -- time rollover -------------------------------------------------------------------------------

def test_idle_file_is_archived_after_archive_interval_by_the_maintenance_thread(
        tmp_path: Path) -> None:
    """Real clock: the maintenance thread ticks once a second."""
    handler = AccountingFileHandler("delivered", tmp_path / "delivered", archiving=True,
                                    archive_interval=0.5)
    try:
        handler.handle(record("idle@example.com", created=time.time()))
        first = handler.path
        assert first is not None
        archive = tmp_path / "delivered" / "archive"
        deadline = time.monotonic() + 10
        while not (archive / first.name).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert names(archive) == [first.name]
        assert text(archive / first.name).startswith(HEADER)
        assert text(archive / first.name).endswith("\tidle@example.com\t\t\t\tj1\t\t\n")
        # a fresh file with its header took its place
        handler.flush()  # (its visible name, if the thread has not given it yet)
        assert handler.path is not None and handler.path.read_text() == HEADER
    finally:
        handler.close()


def test_a_record_after_the_interval_goes_to_a_new_file(
        make: Callable[..., AccountingFileHandler], archived: Path, active: Path) -> None:
    handler = make(archiving=True, archive_interval=60)
    log(handler, "early@example.com")
    handler.handle(record("late@example.com", created=T + 60))
    handler.flush()  # archiving is left to the maintenance thread; flush() does it now
    assert names(archived) == [f"{NAME}.tsv"]
    assert text(archived / f"{NAME}.tsv") == HEADER + line("early@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line(
        "late@example.com", stamp="2024-05-01 12:01:00")


def test_a_header_only_file_is_reused_at_the_interval(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    handler = make(archiving=True, archive_interval=60)
    opened = handler.open()
    handler.maintain(T + 61)
    handler.maintain(T + 200)
    assert handler.path == opened and names(archived) == []
    assert text(opened) == HEADER


def test_with_archive_empty_a_header_only_file_is_archived_at_the_interval(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    handler = make(archiving=True, archive_interval=60, archive_empty=True)
    handler.open()
    handler.maintain(T + 61)
    assert names(archived) == [f"{NAME}.tsv"] and text(archived / f"{NAME}.tsv") == HEADER
    assert names(active) == [f"{NAME}.tsv"]  # the new one


def test_close_removes_a_header_only_file(make: Callable[..., AccountingFileHandler],
                                          active: Path, archived: Path) -> None:
    handlers = [make(archiving=True), make()]
    for handler in handlers:
        handler.open()
    assert names(active) == [f"{NAME}.1.tsv", f"{NAME}.tsv"]
    for handler in handlers:
        handler.close()
    assert everything(active) == [] and everything(archived) == []


def test_close_archives_a_header_only_file_with_archive_empty(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    handler = make(archiving=True, archive_empty=True)
    handler.open()
    handler.close()
    assert names(archived) == [f"{NAME}.tsv"] and text(archived / f"{NAME}.tsv") == HEADER


def test_close_archives_the_active_file(make: Callable[..., AccountingFileHandler],
                                        active: Path, archived: Path) -> None:
    handler = make(archiving=True)
    log(handler, "a@example.com")
    handler.close()
    assert everything(active) == []
    assert text(archived / f"{NAME}.tsv") == HEADER + line("a@example.com")


def test_absolute_archive_to_is_created_when_missing(
        make: Callable[..., AccountingFileHandler], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "deep"
    handler = make(archiving=True, archive_to=elsewhere)
    log(handler, "a@example.com")
    handler.close()
    assert text(elsewhere / f"{NAME}.tsv") == HEADER + line("a@example.com")


# -- compression and retention -------------------------------------------------------------------

def test_compressed_archive_holds_the_file_byte_for_byte(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    handler = make(archiving=True, compress=True)
    log(handler, "a@example.com", "b@example.com")
    handler.doRollover()
    log(handler, "c@example.com")
    handler.maintain()
    assert os.listdir(archived) == [f"{NAME}.tsv.gz"]
    handler.close()
    assert sorted(os.listdir(archived)) == [f"{NAME}.1.tsv.gz", f"{NAME}.tsv.gz"]
    assert text(archived / f"{NAME}.tsv.gz") == HEADER + line("a@example.com") + line(
        "b@example.com")
    assert text(archived / f"{NAME}.1.tsv.gz") == HEADER + line("c@example.com")


def test_retention_days_deletes_old_archived_files_only(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    archived.mkdir(parents=True)
    old, recent, other = (archived / "d.2024-04-01-000000.tsv.gz",
                          archived / "d.2024-04-29-000000.tsv", archived / "notes.txt")
    for path in (old, recent, other):
        path.write_text("x")
        os.utime(path, (T - 10 * 86400,) * 2)
    os.utime(recent, (T - 2 * 86400,) * 2)
    handler = make(archiving=True, retention_days=7)
    log(handler, "a@example.com")
    handler.maintain()  # retention runs without waiting for a rollover, too
    assert names(archived) == ["d.2024-04-29-000000.tsv", "notes.txt"]
    handler.close()
    assert names(archived) == ["d.2024-04-29-000000.tsv", f"{NAME}.tsv", "notes.txt"]


def three_old_archives(archived: Path) -> None:
    """Archived files of April 1st, 2nd and 3rd (modified 9, 8 and 7 days before T)."""
    archived.mkdir(parents=True)
    for day in (1, 2, 3):
        path = archived / f"d.2024-04-0{day}-000000.tsv"
        path.write_text("x")
        os.utime(path, (T - (10 - day) * 86400,) * 2)


def test_retention_files_keeps_the_newest(make: Callable[..., AccountingFileHandler],
                                          archived: Path) -> None:
    three_old_archives(archived)
    handler = make(archiving=True, retention_files=2)
    log(handler, "a@example.com")
    handler.doRollover()
    assert names(archived) == ["d.2024-04-03-000000.tsv", f"{NAME}.tsv"]


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_rollover_by_a_record_is_settled_by_the_maintenance_thread(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Naming the new file, archiving the full one and retention are kept off the write path:
    the maintenance thread does them at once, without a flush() or a tick."""
    three_old_archives(archived)
    threads = []

    def prune(*args: Any, **kwargs: Any) -> list[Path]:
        threads.append(threading.current_thread().name)
        return real_prune(*args, **kwargs)

    real_prune = archive_module.prune
    monkeypatch.setattr(archive_module, "prune", prune)
    size = len(HEADER) + len(line("a@example.com"))
    handler = make(archiving=True, retention_files=2, max_size=size / 1e6)
    log(handler, "a@example.com", "b@example.com")  # b crosses max_size
    assert wait_for(lambda: names(archived) == ["d.2024-04-03-000000.tsv", f"{NAME}.tsv"]
                    and names(active) == [f"{NAME}.tsv"])
    assert threads == ["mta-logging-maintenance"]
    assert text(archived / f"{NAME}.tsv") == HEADER + line("a@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("b@example.com")


def test_a_rollover_by_a_record_makes_no_file_system_call_but_the_write(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a handler has rolled over, the maintenance thread keeps a spare file ready: the
    logging call that starts a new file swaps it in and writes its record with one os.write;
    fsync, naming and archiving happen on the thread."""
    handler = make(archiving=True, fsync="rollover", retention_files=5,
                   max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com", "r001@example.com")  # the first rollover
    handler.maintain()  # what the thread does at once: here now, so that the spare is ready
    assert [n for n in everything(active) if n.startswith(".spare-")] != []
    calls: list[str] = []
    main = threading.current_thread()

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is main:
                calls.append(name)
            return real(*args, **kwargs)
        return call

    with monkeypatch.context() as spying:
        for module, name in [(os, n) for n in (
                "open", "write", "link", "unlink", "rename", "replace", "fsync", "close",
                "mkdir", "stat", "lstat", "fstat", "ftruncate", "scandir", "listdir",
                "pread")] + [(fcntl, "flock")]:
            spying.setattr(module, name, spy(name, getattr(module, name)))
        log(handler, "r002@example.com")
    assert calls == ["write"]
    handler.flush()
    assert names(archived) == [f"{NAME}.1.tsv", f"{NAME}.tsv"]
    assert [text(archived / f"{NAME}{n}.tsv") for n in ("", ".1")] == [
        HEADER + line("r000@example.com"), HEADER + line("r001@example.com")]
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + line("r002@example.com")
    handler.close()  # the spare made meanwhile is removed
    assert everything(active) == [] and names(archived) == [f"{NAME}.1.tsv", f"{NAME}.2.tsv",
                                                            f"{NAME}.tsv"]


def test_retention_left_for_a_tick_is_applied_at_close(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    three_old_archives(archived)
    size = len(HEADER) + len(line("a@example.com"))
    handler = make(archiving=True, retention_files=2, max_size=size / 1e6)
    log(handler, "a@example.com", "b@example.com")
    handler.close()  # b's file goes too: two newest are b's and a's
    assert names(archived) == [f"{NAME}.1.tsv", f"{NAME}.tsv"]


def test_a_subclass_that_filters_by_itself_is_asked(
        make: Callable[..., AccountingFileHandler], active: Path, tmp_path: Path) -> None:
    class SkipTests(AccountingFileHandler):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.outcome.rcpt.startswith("test")  # type: ignore[attr-defined]

    handler = SkipTests("delivered", directory=active)
    try:
        log(handler, "test@example.com", "a@example.com")
    finally:
        handler.close()
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com")


def test_a_subclass_decides_when_a_new_file_starts(active: Path, frozen: None) -> None:
    """shouldRollover is the stdlib's hook: a subclass that overrides it is asked at each
    record (here: a new file for every record to a new customer)."""
    class ByCustomer(AccountingFileHandler):
        def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802
            return record.outcome.rcpt.startswith("new")  # type: ignore[attr-defined]

    handler = ByCustomer("delivered", directory=active)
    try:
        log(handler, "a@example.com", "new-b@example.com", "c@example.com")
    finally:
        handler.close()
    assert names(active) == [f"{NAME}.1.tsv", f"{NAME}.tsv"]
    assert [text(active / f"{NAME}{n}.tsv") for n in ("", ".1")] == [
        HEADER + line("a@example.com"), HEADER + line("new-b@example.com") + line("c@example.com")]


def test_should_rollover_answers_as_the_handler_acts(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    handler = make(archiving=True, archive_interval=60,
                   max_size=(len(HEADER) + 2 * RECORD) / 1_000_000)
    assert handler.shouldRollover(record("r000@example.com")) is False  # no file yet
    log(handler, "r000@example.com")
    assert handler.shouldRollover(record("r001@example.com")) is False  # it still fits
    assert handler.shouldRollover(record("r001@example.com", created=T + 60)) is True  # late
    log(handler, "r001@example.com")
    assert handler.shouldRollover(record("r002@example.com")) is True  # it would not fit
    log(handler, "r002@example.com")
    handler.flush()
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + line("r002@example.com")


def test_reading_path_moves_no_file(make: Callable[..., AccountingFileHandler],
                                    active: Path) -> None:
    """Right after a rollover that swapped in a spare, path is the spare's hidden name until
    the new file is given its visible name (by the thread within a tenth of a second, or by
    flush())."""
    handler = make(archiving=True, max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com", "r001@example.com")
    handler.maintain()  # a spare is ready
    with handler.lock:  # the thread settles only with this lock: it cannot name the file now
        log(handler, "r002@example.com")  # (handle() takes the lock again: it is an RLock)
        before = everything(active)
        path = handler.path
        assert path is not None and path.name.startswith(".spare-") and path.name in before
        assert everything(active) == before
    handler.flush()
    assert handler.path == active / f"{NAME}.tsv"
    assert text(active / f"{NAME}.tsv") == HEADER + line("r002@example.com")


def test_a_subclass_that_formats_by_itself_is_asked(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    class Upper(AccountingFileHandler):
        def format(self, record: logging.LogRecord) -> str:
            return super().format(record).upper()

    handler = Upper("delivered", directory=active)
    try:
        log(handler, "a@example.com")
    finally:
        handler.close()
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com").upper()


def test_a_subclass_without_a_lock_still_writes(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    class Unlocked(AccountingFileHandler):
        def createLock(self) -> None:  # noqa: N802 - the stdlib's name
            self.lock = None

    handler = Unlocked("delivered", directory=active)
    try:
        log(handler, "a@example.com")
    finally:
        handler.close()
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com")


# -- names that are taken ------------------------------------------------------------------------

def test_a_taken_active_name_gets_a_suffix_and_the_other_file_is_untouched(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    active.mkdir()
    (active / f"{NAME}.tsv").write_text("someone else's\n")
    handler = make()
    log(handler, "a@example.com")
    assert (active / f"{NAME}.tsv").read_text() == "someone else's\n"
    assert text(active / f"{NAME}.1.tsv") == HEADER + line("a@example.com")


def test_two_writers_with_one_config_never_share_a_file(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    first, second = make(archiving=True), make(archiving=True)
    log(first, "one@example.com")
    log(second, "two@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("one@example.com")
    assert text(active / f"{NAME}.1.tsv") == HEADER + line("two@example.com")
    second.doRollover()  # moves its own file (keeping its name), not the other one
    assert names(active) == [f"{NAME}.tsv"] and names(archived) == [f"{NAME}.1.tsv"]
    assert text(archived / f"{NAME}.1.tsv") == HEADER + line("two@example.com")
    log(second, "three@example.com")  # the name is free again in the active directory
    second.doRollover()
    first.close()
    assert names(active) == []
    assert names(archived) == [f"{NAME}.1.tsv", f"{NAME}.2.tsv", f"{NAME}.tsv"]
    assert sorted(text(archived / n) for n in names(archived)) == sorted(
        HEADER + line(f"{r}@example.com") for r in ("one", "two", "three"))


def test_a_taken_archive_name_gets_a_suffix(make: Callable[..., AccountingFileHandler],
                                            archived: Path) -> None:
    archived.mkdir(parents=True)
    (archived / f"{NAME}.tsv").write_text("archived before\n")
    handler = make(archiving=True)
    log(handler, "a@example.com")
    handler.close()
    assert (archived / f"{NAME}.tsv").read_text() == "archived before\n"
    assert text(archived / f"{NAME}.1.tsv") == HEADER + line("a@example.com")


# -- threads and processes -----------------------------------------------------------------------

def all_records(directory: Path, expect_header: str = HEADER) -> Counter[str]:
    """rcpt → how often it occurs, over every file below ``directory``; checks each file starts
    with the header and holds only whole records."""
    found: Counter[str] = Counter()
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        assert not path.name.startswith("."), f"hidden file left: {path}"
        content = text(path)
        assert content.startswith(expect_header), path
        body = content[len(expect_header):]
        assert body == "" or body.endswith("\n"), f"torn last line in {path}"
        for row in body.splitlines():
            fields = row.split("\t")
            assert len(fields) == 10 and fields[0] == "d", f"torn line in {path}: {row!r}"
            found[fields[3]] += 1
    return found


def test_four_threads_through_one_handler_lose_and_tear_nothing(tmp_path: Path) -> None:
    handler = AccountingFileHandler("delivered", tmp_path / "delivered", archiving=True,
                                    max_size=0.002)
    logger = logging.getLogger("test_handlers.threads")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    acct = AccountingLogger(logger)

    def work(worker: int) -> None:
        for number in range(20_000):
            acct.delivered(f"t{worker}-{number}@example.com", job_id="t")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        logger.removeHandler(handler)
        handler.close()
    found = all_records(tmp_path / "delivered")
    assert found == Counter({f"t{w}-{n}@example.com": 1 for w in range(4) for n in range(20_000)})
    sizes = [p.stat().st_size for p in (tmp_path / "delivered" / "archive").iterdir()]
    assert len(sizes) > 100 and max(sizes) <= 2000


def run_worker(mode: str, directory: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKERS), mode, str(directory), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_two_processes_with_one_config_lose_and_tear_nothing(tmp_path: Path,
                                                             compress: bool) -> None:
    directory = tmp_path / "delivered"
    options = ["--max-size", "0.002", "--archiving", *(["--compress"] if compress else [])]
    workers = [run_worker("write", directory, "--worker", str(n), "--count", "20000", *options)
               for n in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and err == "", err
    assert everything(directory) == []  # both closed: everything is in the archive (no spare)
    found = all_records(directory)
    assert found == Counter({f"w{w}-{n}@example.com": 1 for w in range(2) for n in range(20_000)})
    archive = list((directory / "archive").iterdir())
    assert all(p.name.endswith(".gz") == compress for p in archive)
    if not compress:
        assert max(p.stat().st_size for p in archive) <= 2000


def test_a_killed_writer_loses_nothing_and_its_file_is_archived_at_the_next_start(
        tmp_path: Path) -> None:
    directory = tmp_path / "delivered"
    worker = run_worker("stream", directory, "--max-size", "0.005", "--archiving")
    assert worker.stdout is not None
    acknowledged = 0
    while acknowledged < 3000:
        reported = worker.stdout.readline()
        assert reported, worker.stderr.read() if worker.stderr else ""
        acknowledged = int(reported)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stdout.close()
    if worker.stderr is not None:
        worker.stderr.close()
    # the dead writer's active file (possibly a spare it had not named yet, its last line
    # possibly cut short), finished files its maintenance thread had not archived yet, a spare
    leftovers = [text(directory / name) for name in everything(directory)]
    before = {p.name for p in (directory / "archive").iterdir()}
    # the next start takes the file over: it is archived, nothing is lost or doubled
    handler = AccountingFileHandler("delivered", directory, archiving=True)
    handler.open()
    handler.close()
    assert everything(directory) == []
    archive = list((directory / "archive").iterdir())
    taken_over = [text(p) for p in archive if p.name not in before]
    expected = [content[: content.rindex("\n") + 1] for content in leftovers
                if content.count("\n") > 1]  # holding records; cut back to its last line end
    # each is archived now (or was already: it died between linking it into the archive and
    # unlinking it), and only they were
    assert all(content in [text(p) for p in archive] for content in expected)
    assert all(content in expected for content in taken_over)
    found = all_records(directory)
    written = len(found)
    assert written >= acknowledged
    assert found == Counter({f"s-{n}@example.com": 1 for n in range(written)})


def test_the_maintenance_thread_stops_with_the_last_handler_and_at_shutdown(
        tmp_path: Path) -> None:
    worker = run_worker("lifecycle", tmp_path / "delivered", "--archiving")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0 and err == ""
    assert out == ("created: mta-logging-maintenance\n"
                   "closed: -\n"
                   "created again: mta-logging-maintenance\n"
                   "after shutdown: -\n")
    assert all_records(tmp_path / "delivered") == Counter({"last@example.com": 1})


def test_a_forked_child_writes_its_own_file(make: Callable[..., AccountingFileHandler],
                                            active: Path, archived: Path) -> None:
    handler = make(archiving=True)
    log(handler, "parent-1@example.com")
    pid = os.fork()
    if pid == 0:  # the child: log, close (archives its own file only), leave at once
        code = 1
        try:
            log(handler, "child@example.com")
            handler.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log(handler, "parent-2@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("parent-1@example.com") + line(
        "parent-2@example.com")
    assert names(archived) == [f"{NAME}.1.tsv"]
    assert text(archived / f"{NAME}.1.tsv") == HEADER + line("child@example.com")


# -- crash recovery ------------------------------------------------------------------------------

def test_a_cut_short_last_line_is_cut_off_at_the_next_start(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    """Power loss mid-write: the unacknowledged half record is not glued to the next one."""
    active.mkdir()
    orphan = active / "d.2024-04-30-235959.tsv"
    orphan.write_text(HEADER + line("a@example.com") + line("b@example.com")[:17])
    handler = make(archiving=True)
    log(handler, "c@example.com")
    assert text(archived / orphan.name) == HEADER + line("a@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("c@example.com")


def test_without_archiving_a_dead_writers_file_stays_but_is_mended(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    active.mkdir()
    orphan = active / "d.2024-04-30-235959.tsv"
    orphan.write_text(HEADER + line("a@example.com") + "d\t2024")
    empty = active / "d.2024-04-30-235958.tsv"
    empty.write_text(HEADER)
    make().open()
    assert names(active) == [orphan.name, f"{NAME}.tsv"]
    assert text(orphan) == HEADER + line("a@example.com")


@pytest.mark.parametrize(("file_name", "expected"), [
    ("{kind}.{time}.{ext}", "d.2024-05-01-110000.tsv"),
    ("{kind}.{pid}.{time}.{ext}", "d.4242.2024-05-01-110000.tsv"),
])
@pytest.mark.parametrize("spare_name", [
    ".spare-{kind}%2E4242%2E{n}%2E{ext}",
    ".{kind}.4242.{n}.{ext}.spare",  # an older version's name (a site upgrading after a crash)
])
def test_a_dead_writers_spare_files_are_removed_or_named_and_archived(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path,
        file_name: str, expected: str, spare_name: str) -> None:
    """A spare that a crash left unused is removed; one the dead process had begun to write
    (it died before its maintenance thread named it) is named after the time of its last
    record and the dead process's pid, has its cut-short line cut off, and is archived.
    Spares of another kind or extension are not ours."""
    active.mkdir()
    (active / spare_name.format(kind="d", n=1, ext="tsv")).write_text("any header\n")
    used = active / spare_name.format(kind="d", n=2, ext="tsv")
    used.write_text(HEADER + line("a@example.com") + line("b@example.com")[:9])
    os.utime(used, (T - 3600, T - 3600))
    not_ours = sorted([spare_name.format(kind="b", n=3, ext="tsv"),
                       spare_name.format(kind="d", n=4, ext="csv")])
    for name in not_ours:
        (active / name).write_text("another kind's or extension's\nnot ours\n")
    handler = make(archiving=True, file_name=file_name)
    log(handler, "c@example.com")
    assert everything(active) == [*not_ours, file_name.format(
        kind="d", pid=os.getpid(), time="2024-05-01-120000", ext="tsv")]
    assert everything(archived) == [expected]
    assert text(archived / expected) == HEADER + line("a@example.com")


def test_a_crash_while_a_spare_was_being_named_does_not_double_it(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    """The dead process had linked its spare to the visible name but not yet removed the
    hidden one: the file is taken over once, under its visible name."""
    active.mkdir()
    spare = active / ".spare-d%2E4242%2E2%2Etsv"
    spare.write_text(HEADER + line("a@example.com"))
    os.link(spare, active / "d.2024-05-01-115959.tsv")
    handler = make(archiving=True)
    handler.open()
    assert everything(active) == [f"{NAME}.tsv"]
    assert everything(archived) == ["d.2024-05-01-115959.tsv"]
    assert text(archived / "d.2024-05-01-115959.tsv") == HEADER + line("a@example.com")


def test_a_spare_deleted_before_it_is_used_is_replaced(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    """A cleanup job removes the hidden spare: the maintenance thread makes a new one, and the
    next rollover's record is in a file that has a name."""
    handler = make(archiving=True, max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com", "r001@example.com")
    handler.maintain()  # the spare is ready (the thread does this within a tenth of a second)
    (spare,) = [active / n for n in everything(active) if n.startswith(".spare-")]
    spare.unlink()
    handler.maintain()  # (ten times a second, the thread looks)
    assert [n for n in everything(active) if n.startswith(".spare-")] not in ([], [spare.name])
    log(handler, "r002@example.com")
    handler.flush()
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + line("r002@example.com")
    assert sorted(text(archived / n) for n in names(archived)) == [
        HEADER + line(f"r00{n}@example.com") for n in range(2)]


def test_a_live_writers_file_is_left_alone(make: Callable[..., AccountingFileHandler],
                                           active: Path, archived: Path) -> None:
    import fcntl

    active.mkdir()
    live = active / "d.2024-04-30-235959.tsv"
    live.write_text(HEADER + line("a@example.com") + "d\t20")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as its writer would
        handler = make(archiving=True)
        handler.open()
        assert text(live) == HEADER + line("a@example.com") + "d\t20"
        assert names(archived) == []


def test_a_crash_between_archiving_and_unlinking_does_not_double_a_file(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    active.mkdir()
    archived.mkdir()
    orphan = active / "d.2024-04-30-235959.tsv"
    orphan.write_text(HEADER + line("a@example.com"))
    os.link(orphan, archived / "d.2024-04-30-235959.3.tsv")  # linked there, not yet unlinked
    make(archiving=True).open()
    assert all_records(active) == Counter({"a@example.com": 1})
    assert names(archived) == ["d.2024-04-30-235959.3.tsv"]


@pytest.mark.parametrize("pending, not_ours", [
    (".pending-d%2E2024-04-30-235959%2Etsv", ".pending-other"),
    (".d.2024-04-30-235959.tsv.pending", ".other.pending"),  # an older version's names
])
def test_files_waiting_for_compression_are_compressed_at_the_next_start(
        make: Callable[..., AccountingFileHandler], archived: Path, pending: str,
        not_ours: str) -> None:
    archived.mkdir(parents=True)
    (archived / pending).write_text(HEADER + line("a@example.com"))
    (archived / not_ours).write_text("not ours")
    handler = make(archiving=True, compress=True)
    handler.maintain()
    assert sorted(os.listdir(archived)) == [not_ours, "d.2024-04-30-235959.tsv.gz"]
    assert text(archived / "d.2024-04-30-235959.tsv.gz") == HEADER + line("a@example.com")


def test_nothing_is_left_hidden_when_handlers_close_while_the_thread_compresses(
        make: Callable[..., AccountingFileHandler], tmp_path: Path) -> None:
    """Issue 20's leftover pending file after a clean shutdown: handlers that roll over at every
    record (all in one second, so names are used again as soon as compression frees them) are
    closed while the maintenance thread compresses their files. After each close every record
    is in a visible ``.gz`` and nothing hidden is left. (A stress test: 25 rounds, a few
    seconds; before the fix it failed in 4 of 6 runs.)"""
    keeper = make(directory=tmp_path / "keeper", archiving=True)  # the thread runs throughout
    log(keeper, "keeper@example.com")
    for round_ in range(25):
        handler = make(directory=tmp_path / f"d{round_}", archiving=True, compress=True,
                       fsync="rollover", max_size=(len(HEADER) + RECORD) / 1_000_000)
        rcpts = [f"r{index:03}@example.com" for index in range(12)]
        for rcpt in rcpts:
            log(handler, rcpt)
            time.sleep(0.004)  # the thread gets to compress meanwhile
        handler.close()
        archive = tmp_path / f"d{round_}" / "archive"
        assert [name for name in everything(archive) if name.startswith(".")] == [], round_
        written = Counter(rcpt_of(line_) for name in names(archive)
                          for line_ in text(archive / name).splitlines()[1:])
        assert written == Counter(rcpts), round_


def rcpt_of(record_line: str) -> str:
    return record_line.split("\t")[3]


# -- faults --------------------------------------------------------------------------------------

def test_disk_full_mid_record_cuts_the_partial_write_back_and_reports_the_record(
        make: Callable[..., AccountingFileHandler], active: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write = os.write
    calls: list[int] = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(handlers_module.os, "write", half_then_full)
    log(handler, "lost@example.com")
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "OSError: [Errno 28] No space left on device" in err
    assert "Arguments: ('delivered', 'lost@example.com', 'j1', '-')" in err
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com")
    log(handler, "c@example.com")  # space again: writing goes on where it was
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line("c@example.com")


def test_records_that_fail_the_same_way_are_reported_once_then_counted_until_writes_work(
        make: Callable[..., AccountingFileHandler], active: Path, fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write = os.write
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost1@example.com", "lost2@example.com")
    fault_clock[0] = T + 30
    handler.maintain(fault_clock[0])  # under a minute: nothing more to say
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1
    assert "OSError: [Errno 28] No space left on device" in err
    assert "Arguments: ('delivered', 'lost1@example.com', 'j1', '-')" in err
    assert "'lost2@example.com', 'j1'" not in err
    assert "mta_logging:" not in err
    log(handler, "lost3@example.com")
    fault_clock[0] = T + 61
    handler.maintain(fault_clock[0])
    handler.maintain(fault_clock[0] + 100)  # no record failed since the last line: nothing
    described = f"mta_logging: accounting file handler for delivered records in {active}: "
    cause = ("since 2024-05-01 12:00:00 (OSError: [Errno 28] No space left on device;"
             " the first one is reported above)\n")
    assert capsys.readouterr().err == (
        described + "still failing; 3 record(s) could not be written " + cause)
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    log(handler, "b@example.com")
    handler.maintain(fault_clock[0] + 101)
    assert capsys.readouterr().err == (
        described + "writes again; 3 record(s) could not be written " + cause)
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line("b@example.com")
    assert handler.records_not_written == 3
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost4@example.com")  # a new episode: reported in full again
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1
    assert "Arguments: ('delivered', 'lost4@example.com', 'j1', '-')" in err
    assert handler.records_not_written == 4


def test_a_record_failing_another_way_starts_an_episode_and_closing_tells_the_count(
        make: Callable[..., AccountingFileHandler], active: Path, fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    errors = iter([errno.ENOSPC, errno.ENOSPC, errno.EIO, errno.EIO])

    def failing(fd: int, data: bytes) -> int:
        code = next(errors)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(handlers_module.os, "write", failing)
    log(handler, "r1@example.com", "r2@example.com", "r3@example.com", "r4@example.com")
    handler.close()
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 2
    assert "'r1@example.com', 'j1'" in err and "'r3@example.com', 'j1'" in err
    assert "'r2@example.com', 'j1'" not in err and "'r4@example.com', 'j1'" not in err
    described = f"mta_logging: accounting file handler for delivered records in {active}: "
    assert described + (
        "fails another way now; 2 record(s) could not be written since 2024-05-01 12:00:00"
        " (OSError: [Errno 28] No space left on device; the first one is reported above)\n"
    ) in err
    assert err.endswith(described + (
        "closed; 2 record(s) could not be written since 2024-05-01 12:00:00"
        " (OSError: [Errno 5] Input/output error; the first one is reported above)\n"))
    assert handler.records_not_written == 4


def test_an_fsync_failing_at_every_record_is_one_episode(
        make: Callable[..., AccountingFileHandler], fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make(fsync="always")
    log(handler, "a@example.com")

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(handlers_module.os, "fsync", eio)
    log(handler, "l1@example.com", "l2@example.com", "l3@example.com")
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1  # not a new episode at each record
    assert "mta_logging:" not in err
    assert handler.records_not_written == 3


def test_a_record_written_before_a_rollover_ends_the_episode(
        make: Callable[..., AccountingFileHandler], active: Path, fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write = os.write
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost1@example.com")
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    log(handler, "ok@example.com")
    handler.doRollover()  # before the maintenance thread looked
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost2@example.com")  # a new episode
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 2
    assert "Arguments: ('delivered', 'lost2@example.com', 'j1', '-')" in err
    assert (f"mta_logging: accounting file handler for delivered records in {active}: writes"
            " again; 1 record(s) could not be written since 2024-05-01 12:00:00") in err


def test_a_file_written_anew_while_records_fail_does_not_end_the_episode(
        make: Callable[..., AccountingFileHandler], fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write = os.write

    def records_fail(fd: int, data: bytes) -> int:
        if b"lost" in data:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_write(fd, data)

    monkeypatch.setattr(handlers_module.os, "write", records_fail)
    log(handler, "lost1@example.com")
    path = handler.path
    assert path is not None
    path.unlink()
    handler.maintain(T)  # writes the deleted file anew: the records it held, not a new one
    log(handler, "lost2@example.com")
    handler.maintain(T + 1)
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1
    assert "writes again" not in err
    assert text(path) == HEADER + line("a@example.com")


def test_a_forked_child_does_not_take_over_the_parents_episode(
        make: Callable[..., AccountingFileHandler], fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write = os.write
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost1@example.com", "lost2@example.com")
    capsys.readouterr()
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    handler.after_fork_in_child()  # what the child of a fork runs
    log(handler, "child@example.com")
    handler.maintain(T + 1)
    assert capsys.readouterr().err == ""  # the parent's two records are the parent's to tell
    assert handler.records_not_written == 0


def test_records_failing_for_a_minute_are_counted_without_the_maintenance_thread(
        make: Callable[..., AccountingFileHandler], active: Path, fault_clock: list[float],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "lost1@example.com", "lost2@example.com")
    capsys.readouterr()
    fault_clock[0] = T + 60
    log(handler, "lost3@example.com")  # no maintain(): the failing call says it
    assert capsys.readouterr().err == (
        f"mta_logging: accounting file handler for delivered records in {active}: still"
        " failing; 3 record(s) could not be written since 2024-05-01 12:00:00 (OSError:"
        " [Errno 28] No space left on device; the first one is reported above)\n")


def test_a_short_write_is_completed(make: Callable[..., AccountingFileHandler], active: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write less than it was given (a signal, a full pipe-like device): the
    rest is written after it, and the record is whole, once."""
    handler = make()
    real_write = os.write
    sizes: list[int] = []

    def short(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, bytes(data)[: max(1, len(data) // 3)])

    log(handler, "a@example.com")
    monkeypatch.setattr(handlers_module.os, "write", short)
    log(handler, "b@example.com")
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    log(handler, "c@example.com")
    assert len(sizes) > 2  # it took several writes
    assert text(active / f"{NAME}.tsv") == HEADER + "".join(
        line(f"{r}@example.com") for r in "abc")


def test_a_torn_write_that_cannot_be_cut_back_is_cut_before_the_next_record(
        make: Callable[..., AccountingFileHandler], active: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    real_write, real_truncate = os.write, os.ftruncate

    def half(fd: int, data: bytes) -> int:
        monkeypatch.setattr(handlers_module.os, "write", disk_full)
        return real_write(fd, bytes(data)[:10])

    def cannot(fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(handlers_module.os, "write", half)
    monkeypatch.setattr(handlers_module.os, "ftruncate", cannot)
    log(handler, "lost@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line("lost")[:10]
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    monkeypatch.setattr(handlers_module.os, "ftruncate", real_truncate)
    log(handler, "c@example.com")
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line("c@example.com")
    assert "No space left on device" in capsys.readouterr().err


def test_disk_full_when_starting_a_new_file_leaves_no_headless_file(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    handler = make(archiving=True, max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com")
    real_write = os.write
    monkeypatch.setattr(handlers_module.os, "write", disk_full)
    log(handler, "r001@example.com")  # rollover: the old file is archived, the new one fails
    monkeypatch.setattr(handlers_module.os, "write", real_write)
    handler.flush()
    assert "No space left on device" in capsys.readouterr().err
    # no file without its header (a spare the thread had ready may hold just the header)
    assert all(text(active / n) == HEADER for n in everything(active))
    assert names(archived) == [f"{NAME}.tsv"]
    assert text(archived / f"{NAME}.tsv") == HEADER + line("r000@example.com")
    log(handler, "r002@example.com")
    handler.flush()
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + line("r002@example.com")


def test_a_removed_archive_directory_is_created_again(
        make: Callable[..., AccountingFileHandler], archived: Path) -> None:
    handler = make(archiving=True)
    log(handler, "a@example.com")
    shutil.rmtree(archived)
    handler.doRollover()
    assert text(archived / f"{NAME}.tsv") == HEADER + line("a@example.com")


def test_an_archive_directory_that_is_a_file_loses_no_record(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    handler = make(archiving=True, max_size=(len(HEADER) + RECORD) / 1_000_000)
    log(handler, "r000@example.com")
    archived.rmdir()
    archived.write_text("in the way\n")
    log(handler, "r001@example.com", "r002@example.com")  # two rollovers that cannot archive
    handler.flush()
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1  # the same fault is reported once
    message = (f"accounting file handler for delivered records in {active} failed while "
               f"archiving {active / (NAME + '.tsv')}: FileExistsError: [Errno 17] File exists: "
               f"{str(archived)!r}")
    assert f"Message: {message!r}\nArguments: None\n" in err
    assert [text(active / n) for n in (f"{NAME}.tsv", f"{NAME}.1.tsv", f"{NAME}.2.tsv")] == [
        HEADER + line(f"r00{n}@example.com") for n in range(3)]
    archived.unlink()  # the fault clears: the next tick archives what waited
    handler.maintain()
    assert names(active) == [f"{NAME}.2.tsv"]
    assert names(archived) == [f"{NAME}.1.tsv", f"{NAME}.tsv"]
    assert text(archived / f"{NAME}.1.tsv") == HEADER + line("r001@example.com")


def test_a_file_deleted_under_the_handler_is_written_anew(
        make: Callable[..., AccountingFileHandler], active: Path) -> None:
    handler = make()
    log(handler, "a@example.com")
    (active / f"{NAME}.tsv").unlink()
    log(handler, "b@example.com")
    handler.maintain()
    log(handler, "c@example.com")
    assert names(active) == [f"{NAME}.tsv"]
    assert text(active / f"{NAME}.tsv") == HEADER + "".join(
        line(f"{r}@example.com") for r in "abc")


def test_a_removed_active_directory_is_created_again_with_the_records(
        make: Callable[..., AccountingFileHandler], active: Path, archived: Path) -> None:
    handler = make(archiving=True)
    log(handler, "a@example.com")
    shutil.rmtree(active)
    log(handler, "b@example.com")
    handler.doRollover()  # a rollover notices too, without waiting for the tick
    assert names(archived) == [f"{NAME}.tsv"]
    assert text(archived / f"{NAME}.tsv") == HEADER + line("a@example.com") + line(
        "b@example.com")


def test_an_active_directory_blocked_by_a_file_is_reported_until_it_clears(
        make: Callable[..., AccountingFileHandler], active: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    handler = make()
    log(handler, "a@example.com")
    shutil.rmtree(active)
    active.write_text("in the way\n")
    log(handler, "b@example.com")  # still handed to the OS: the deleted file holds it
    handler.maintain()
    handler.maintain()
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 1
    assert f"failed while writing anew {active / (NAME + '.tsv')}, deleted under us: " in err
    assert "FileExistsError" in err
    active.unlink()
    handler.maintain()
    assert text(active / f"{NAME}.tsv") == HEADER + line("a@example.com") + line(
        "b@example.com")


def test_maintenance_failures_never_reach_the_caller(
        make: Callable[..., AccountingFileHandler], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    handler = make(archiving=True, compress=True)
    log(handler, "a@example.com")
    handler.doRollover()
    (pending,) = (tmp_path / "delivered" / "archive").iterdir()
    scratch = pending.parent / pending.name.replace(".pending-", ".gzipping-")
    scratch.mkdir()  # compression cannot write its file
    handler.maintain()
    err = capsys.readouterr().err
    assert f"failed while compressing {pending}: IsADirectoryError" in err
    scratch.rmdir()
    handler.maintain()
    assert text(pending.parent / f"{NAME}.tsv.gz") == HEADER + line("a@example.com")


@pytest.mark.parametrize("policy, after_records, after_rollover", [
    ("never", 0, 0), ("rollover", 0, 1), ("always", 2, 3)])
def test_fsync_policy(make: Callable[..., AccountingFileHandler], monkeypatch: pytest.MonkeyPatch,
                      policy: str, after_records: int, after_rollover: int) -> None:
    handler = make(archiving=True, fsync=policy)
    active_file = os.stat(handler.open())
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("file" if os.path.samestat(os.fstat(fd), active_file) else "directory")
        real(fd)

    monkeypatch.setattr(handlers_module.os, "fsync", fsync)
    log(handler, "a@example.com", "b@example.com")
    assert synced.count("file") == after_records
    handler.doRollover()
    assert synced.count("file") == after_rollover
    assert synced.count("directory") == (0 if policy == "never" else 2)  # archive and active


def test_filter_and_format_set_on_the_instance_or_the_class_later_are_used(
        make: Callable[..., AccountingFileHandler], active: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As with any logging.Handler: mock.patch.object(handler, "format") and a method patched
    on the class after the handler was made are used for the next record; taken away again,
    the handler's own are used."""
    handler = make()
    with monkeypatch.context() as patched:
        patched.setattr(handler, "format", lambda record: "formatted by the patch")
        patched.setattr(handler, "filter", lambda record: record.outcome.rcpt != "skip@x.test")
        log(handler, "a@example.com", "skip@x.test")
    log(handler, "b@example.com", "skip@x.test")

    class Later(AccountingFileHandler):
        pass

    later = make(directory=active / "later")
    monkeypatch.setattr(Later, "format", lambda self, record: "patched on the class")
    later.__class__ = Later
    log(later, "c@example.com")
    assert text(active / f"{NAME}.tsv") == (
        HEADER + "formatted by the patch\n" + line("b@example.com") + line("skip@x.test"))
    assert text(active / "later" / f"{NAME}.tsv") == HEADER + "patched on the class\n"


DICTCONFIG_WHILE_THE_THREAD_COLLECTS = """
import gc, logging, logging.config, sys, time
from mta_logging import configure, load, to_dict_config
from mta_logging import maintenance
configure({"path": sys.argv[1] + "/a"})
orphan = logging.StreamHandler()
orphan.cycle = orphan  # garbage only the cyclic collector frees: dropping it needs logging's lock
del orphan
gc.disable()
look = maintenance.Maintenance._look
def collecting_look(self, stop):  # forces the interleaving: the thread collects while the
    time.sleep(0.3)                # main thread closes the old handlers inside dictConfig
    gc.collect()
    return look(self, stop)
maintenance.Maintenance._look = collecting_look
time.sleep(0.15)
logging.config.dictConfig(to_dict_config(load({"path": sys.argv[1] + "/b"})))
print("configured")
"""


def test_dictconfig_replacing_our_handlers_does_not_deadlock_with_the_thread(
        tmp_path: Path) -> None:
    """dictConfig closes the old handlers holding the logging module's lock; the maintenance
    thread, told to stop, may need that lock (the garbage collector dropping a handler's weak
    reference there): close() must not wait for it then."""
    done = subprocess.run([sys.executable, "-c", DICTCONFIG_WHILE_THE_THREAD_COLLECTS,
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "configured\n"), done.stderr
