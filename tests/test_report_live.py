"""Reading while the writer writes: every record handed to the OS is seen, none twice.

The writer archives finished files, lets them wait as hidden ``.NAME.pending`` files until
the maintenance thread compresses them, then publishes ``NAME.gz``. A reader pass that runs
meanwhile must count each record exactly once whatever step each file is at.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import shutil
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_report import emit

from mta_logging.archive import pending_name
from mta_logging.handlers import AccountingFileHandler
from mta_logging.outcome import Kind
from mta_logging.report import Reader
from mta_logging.report.reader import Seen, found_files

START = datetime(2026, 11, 26, 6, 0)
HEADER = "type\ttimeLogged\trcpt\n"


def records(count: int, first: int = 0) -> str:
    return "".join(f"d\t2026-11-26 06:00:00\tu{index}@example.com\n"
                   for index in range(first, first + count))


def rcpts(reader: Reader) -> list[str]:
    return sorted(record.rcpt or "" for record in reader)


def test_a_file_waiting_for_compression_is_read(tmp_path: Path) -> None:
    archive = tmp_path / "delivered" / "archive"
    archive.mkdir(parents=True)
    (archive / pending_name("d.2026-11-26-060000.tsv")).write_text(HEADER + records(3),
                                                                   encoding="utf-8")
    (archive / ".gzipping-d%2E2026-11-26-060000%2Etsv").write_bytes(b"half a gzip")
    assert rcpts(Reader([tmp_path])) == ["u0@example.com", "u1@example.com", "u2@example.com"]


def test_a_pending_file_and_its_published_copy_are_read_once(tmp_path: Path) -> None:
    archive = tmp_path / "delivered" / "archive"
    archive.mkdir(parents=True)
    pending = archive / pending_name("d.2026-11-26-060000.tsv")
    pending.write_text(HEADER + records(3), encoding="utf-8")
    with gzip.open(archive / "d.2026-11-26-060000.tsv.gz", "wb") as gz:  # published ...
        gz.write(pending.read_bytes())  # ... while the pending file is not yet removed
    # another file of the same first name, with other records, is another file
    (archive / "d.2026-11-26-060000.1.tsv").write_text(HEADER + records(1, first=7),
                                                       encoding="utf-8")
    reader = Reader([tmp_path])
    assert rcpts(reader) == ["u0@example.com", "u1@example.com", "u2@example.com",
                             "u7@example.com"]
    assert reader.stats.files == 2


def test_a_file_archived_after_it_was_listed_is_read_in_the_archive(tmp_path: Path) -> None:
    kind = tmp_path / "delivered"
    (kind / "archive").mkdir(parents=True)
    active = kind / "d.2026-11-26-060000.tsv"
    active.write_text(HEADER + records(2), encoding="utf-8")
    reader = Reader([tmp_path])
    listed = list(reader.files())
    assert listed == [active]
    pending = kind / "archive" / pending_name(active.name)  # the writer archives it ...
    active.rename(pending)
    assert rcpts(reader.read(listed)) == ["u0@example.com", "u1@example.com"]
    with gzip.open(kind / "archive" / (active.name + ".gz"), "wb") as gz:  # ... compresses it
        gz.write(pending.read_bytes())
    pending.unlink()
    assert rcpts(reader.read(listed)) == ["u0@example.com", "u1@example.com"]


def test_a_running_writer_sampled_many_times(tmp_path: Path) -> None:
    """Each pass sees at least what was written before it began, at most what was written
    before it ended: nothing hidden, nothing twice. (The writer counts a record once its
    logging call has returned: the one in the call at the end of a pass may be seen too.)"""
    handler = AccountingFileHandler(Kind.DELIVERED, path=tmp_path, archiving=True,
                                    compress=True, max_size=0.01)
    written = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal written
        index = 0
        while not stop.is_set() and index < 8_000:
            emit(handler, Kind.DELIVERED, START + timedelta(seconds=index),
                 f"u{index}@example.com")
            index += 1
            written = index

    writer = threading.Thread(target=write)
    writer.start()
    samples = []
    deadline = time.monotonic() + 60
    try:
        while (len(samples) < 25 or written < 3000) and time.monotonic() < deadline:
            time.sleep(0.01)  # let the writer run between passes
            before = written
            seen = sum(1 for _record in Reader([tmp_path]))
            samples.append((before, seen, written))
    finally:
        stop.set()
        writer.join(timeout=60)
        handler.close()
    wrong = [(before, seen, after) for before, seen, after in samples
             if not before <= seen <= after + 1]
    assert not wrong, wrong
    assert samples[-1][0] >= 3000 > samples[0][2]  # the writer wrote while we read
    archive = tmp_path / "delivered" / "archive"
    assert any(path.name.endswith(".gz") for path in archive.iterdir())
    reader = Reader([tmp_path])
    assert rcpts(reader) == sorted(f"u{index}@example.com" for index in range(written))
    shutil.rmtree(tmp_path / "delivered")


def test_a_worker_notes_a_moved_file_for_the_caller_to_read(tmp_path: Path) -> None:
    """A worker process does not look for a file that moved (two workers could both find
    it); the caller reads it afterwards, knowing what every worker read."""
    kind = tmp_path / "delivered"
    (kind / "archive").mkdir(parents=True)
    active = kind / "d.2026-11-26-060000.tsv"
    active.write_text(HEADER + records(2), encoding="utf-8")
    older = kind / "archive" / "d.2026-11-26-050000.tsv"
    older.write_text(HEADER + records(1, first=5), encoding="utf-8")
    reader = Reader([tmp_path])
    listed = [(path, inode) for path, inode in found_files([tmp_path])]
    active.rename(kind / "archive" / pending_name(active.name))
    worker = Seen(follow=False)
    assert rcpts(reader.read(listed, worker)) == ["u5@example.com"]
    assert worker.vanished == [active]
    caller = Seen()
    caller.merge(worker)
    assert rcpts(reader.read_vanished(caller)) == ["u0@example.com", "u1@example.com"]


VISIBLE_GLOBS = ("*.tsv", "*.tsv.gz", "*.tsv*", "*.gz", "*.jsonl*")


def test_no_glob_for_visible_files_matches_a_working_file_of_a_live_writer(
        tmp_path: Path) -> None:
    """Snapshots of a directory a writer fills (small files, compression on): the hidden
    working files (files waiting for compression, their compressed copies in the making,
    spares) match none of the usual globs, in ``fnmatch``, ``pathlib`` and DuckDB (which does
    not leave dot files out); after close none is left."""
    duckdb = pytest.importorskip("duckdb")
    handler = AccountingFileHandler(Kind.DELIVERED, path=tmp_path, archiving=True,
                                    compress=True, max_size=0.002)
    stop = threading.Event()

    def write() -> None:
        for index in range(20_000):
            if stop.is_set():
                return
            emit(handler, Kind.DELIVERED, START + timedelta(seconds=index),
                 f"u{index}@example.com")

    writer = threading.Thread(target=write)
    writer.start()
    hidden: set[str] = set()
    matched: list[str] = []
    deadline = time.monotonic() + 15
    try:
        for snapshot in range(300):
            roles = {name.partition("-")[0] for name in hidden}
            if time.monotonic() > deadline or (snapshot >= 50 and {".pending", ".spare"} <= roles):
                break
            for directory, _dirs, files in os.walk(tmp_path):
                for name in files:
                    if name.startswith("."):
                        hidden.add(name)
                        matched += [f"{directory}/{name} ~ {glob}" for glob in VISIBLE_GLOBS
                                    if fnmatch.fnmatch(name, glob)]
            matched += [str(path) for path in tmp_path.rglob("*.tsv*")
                        if path.name.startswith(".")]
            found = duckdb.sql(f"SELECT file FROM glob('{tmp_path}/**/*.tsv*')").fetchall()
            matched += [file for (file,) in found if Path(file).name.startswith(".")]
    finally:
        stop.set()
        writer.join(timeout=60)
        handler.close()
    assert not matched, matched
    assert any(name.startswith(".pending-") for name in hidden), hidden
    assert any(name.startswith(".spare-") for name in hidden), hidden
    left = [path.name for path in tmp_path.rglob(".*")]
    assert not left, left
