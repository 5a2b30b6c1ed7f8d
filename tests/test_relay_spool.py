"""The spool: what is stored comes back after a restart, with each recipient's progress."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.relay import spool as spool_module
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.spool import (
    CutShort,
    Envelope,
    QueuedMessage,
    Spool,
    SpoolLock,
    locked,
    move_messages,
    new_queue_id,
    open_spool_dir,
    read_queue_file,
    worker_dir,
    worker_dirs,
)

ENVELOPE = Envelope("sender@example.test", ("a@one.test", "b@two.test", "c@one.test"),
                    1700000000.25, client_ip="127.0.0.1", client_helo="client.test")

addresses = st.text(min_size=0, max_size=40)  # any text, lone surrogates included


@given(mail_from=addresses, rcpts=st.lists(addresses, min_size=1, max_size=5),
       time_queued=st.floats(min_value=0, max_value=4e9), helo=st.none() | addresses,
       smtputf8=st.booleans(), body_8bit=st.booleans(), content=st.binary(max_size=200))
def test_envelope_round_trip(mail_from, rcpts, time_queued, helo, smtputf8, body_8bit,
                             content):
    envelope = Envelope(mail_from, tuple(rcpts), time_queued, client_ip="::1", client_helo=helo,
                        smtputf8=smtputf8, body_8bit=body_8bit)
    line = envelope.to_json(content)
    assert b"\n" not in line and line.isascii()
    assert read_queue_file(line + b"\n" + content) == (envelope, content)


def test_store_then_load(tmp_path):
    spool = Spool.open(tmp_path)
    queue_id = new_queue_id()
    spool.store(queue_id, ENVELOPE, b"Subject: x\r\n\r\nbody\r\n")
    assert os.listdir(spool.tmp_dir) == []
    [message] = Spool.open(tmp_path).load()
    assert message.queue_id == queue_id
    assert message.envelope == ENVELOPE
    assert message.pending() == [0, 1, 2]
    assert spool.read_content(queue_id) == b"Subject: x\r\n\r\nbody\r\n"


def test_journal_restores_progress(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    spool.journal("Q1", ["d 0", "b 2"])
    spool.journal("Q1", ["a 3 1700000900.500"])
    [message] = spool.load()
    assert message.final == [True, False, True]
    assert message.pending() == [1]
    assert (message.failures, message.next_try) == (3, 1700000900.5)
    assert message.journaled


def test_a_torn_journal_line_is_ignored(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    spool.journal("Q1", ["d 1"])
    with open(spool.state_dir / "Q1", "a") as journal:
        journal.write("d")  # a crash in the middle of a write
    [message] = spool.load()
    assert message.pending() == [0, 2]


def test_a_journal_line_cut_short_after_its_number_does_not_count(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    with open(spool.state_dir / "Q1", "a") as journal:
        journal.write("d 0\nd 2")  # "d 2" was about to be "d 21\n" when the relay died
    [message] = spool.load()
    assert message.pending() == [1, 2]


def test_a_journal_write_that_fails_part_way_is_cut_back(tmp_path, monkeypatch):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    spool.journal("Q1", ["d 0"])
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spool_module.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left on device"):
        spool.journal("Q1", ["d 1", "b 2"])
    monkeypatch.setattr(spool_module.os, "write", real_write)
    assert (spool.state_dir / "Q1").read_text() == "d 0\n"
    spool.journal("Q1", ["b 2"])
    [message] = spool.load()
    assert message.pending() == [1]


def test_finished_and_unacknowledged_leftovers_are_removed(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("DONE", ENVELOPE, b"x\r\n")
    spool.journal("DONE", ["d 0", "d 1", "b 2"])
    (spool.tmp_dir / "HALF").write_bytes(b"half-written")
    (spool.state_dir / "ORPHAN").write_text("d 0\n")
    assert spool.load() == []
    assert os.listdir(spool.queue_dir) == []
    assert os.listdir(spool.state_dir) == []
    assert os.listdir(spool.tmp_dir) == []


def test_a_queue_file_is_written_in_place_with_the_length_and_crc_of_its_content(tmp_path):
    spool = Spool.open(tmp_path)
    content = b"Subject: x\r\n\r\nbody\r\n"
    spool.store("Q1", ENVELOPE, content)
    data = (spool.queue_dir / "Q1").read_bytes()
    assert data.startswith(b'{"v":2,"len":%d,"crc":%d,"from":"sender@example.test",'
                           % (len(content), zlib.crc32(content)))
    assert data.endswith(b"}\n" + content)
    assert os.listdir(spool.tmp_dir) == []


@pytest.mark.parametrize(("module", "call"), [(os, "fsync"), (spool_module, "fsync_directory")],
                         ids=["file-fsync", "directory-fsync"])
def test_a_queue_file_that_cannot_be_made_durable_is_removed(tmp_path, monkeypatch, module,
                                                            call):
    """The client is refused and sends again: a file left behind would go out twice."""
    spool = Spool.open(tmp_path)

    def failing(target: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(module, call, failing)
    with pytest.raises(OSError, match="Input/output error"):
        spool.store("Q1", ENVELOPE, b"x\r\n")
    assert os.listdir(spool.queue_dir) == []


def test_a_queue_file_cut_short_at_any_point_is_removed_on_load(tmp_path, caplog):
    """A crash while the file was written in place: at every cut point the file is recognised
    (never acknowledged), skipped by scan, removed by load with a log line, and the whole file
    next to it loads."""
    spool = Spool.open(tmp_path)
    content = b"Subject: x\r\n\r\nbody\r\n"
    spool.store("WHOLE", ENVELOPE, content)
    whole = (spool.queue_dir / "WHOLE").read_bytes()
    for cut in range(len(whole)):
        (spool.queue_dir / f"CUT{cut:04d}").write_bytes(whole[:cut])
    with caplog.at_level(logging.WARNING, logger="mta_logging.relay.spool"):
        assert [m.queue_id for m in spool.scan()] == ["WHOLE"]
        assert len(os.listdir(spool.queue_dir)) == len(whole) + 1
        assert [m.queue_id for m in spool.load()] == ["WHOLE"]
    assert os.listdir(spool.queue_dir) == ["WHOLE"]
    removed = [r.getMessage() for r in caplog.records if "cut short by a crash" in r.getMessage()]
    assert len(removed) == len(whole)
    assert removed[0] == (f"removing queue file {spool.queue_dir / 'CUT0000'}, cut short by a "
                          "crash before it was acknowledged (no end to its envelope line after "
                          "0 bytes)")
    assert removed[-1].endswith(f"({len(content) - 1} bytes of content, not {len(content)})")


def test_a_queue_file_whose_content_does_not_match_its_crc_is_removed_on_load(tmp_path,
                                                                              caplog):
    """Its full length, but its last block never written (zeros after a crash)."""
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"Subject: x\r\n\r\n" + b"a line of the body\r\n" * 400)
    path = spool.queue_dir / "Q1"
    data = path.read_bytes()
    path.write_bytes(data[:4096] + bytes(len(data) - 4096))
    with pytest.raises(CutShort, match="content with CRC-32"):
        read_queue_file(path.read_bytes())
    assert spool.read_message("Q1") is None
    assert spool.scan() == []
    assert path.exists()
    with caplog.at_level(logging.WARNING, logger="mta_logging.relay.spool"):
        assert spool.load() == []
    assert not path.exists()
    assert "content with CRC-32" in caplog.text


@pytest.mark.parametrize(("change", "why"), [
    (lambda data: data.replace(b"body", b"BODY"), "not the {crc} it was written with: changed "
                                                   "since"),
    (lambda data: data + b"more\r\n", "26 bytes of content, more than the 20 it was written with"),
    (lambda data: data[:-6] + bytes(6), "not the {crc} it was written with: changed since"),
], ids=["edited", "longer", "zeros-inside-a-block"])
def test_an_accepted_queue_file_changed_since_is_left_for_a_human(tmp_path, caplog, change, why):
    """What no crash before the fsync can leave (a file changed after the 250: a disk error, an
    edit) may be accepted mail: never removed."""
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"Subject: x\r\n\r\nbody\r\n")
    path = spool.queue_dir / "Q1"
    crc = json.loads(path.read_bytes().partition(b"\n")[0])["crc"]
    path.write_bytes(change(path.read_bytes()))
    with caplog.at_level(logging.ERROR, logger="mta_logging.relay.spool"):
        assert spool.load() == []
    assert path.exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"cannot read queue file {path} (")
    assert line.endswith(why.format(crc=crc) + "); left in place")


def test_an_unreadable_queue_file_is_left_for_a_human(tmp_path):
    spool = Spool.open(tmp_path)
    (spool.queue_dir / "BROKEN").write_bytes(b"not json\nbody")
    spool.store("GOOD", ENVELOPE, b"x\r\n")
    assert [m.queue_id for m in spool.load()] == ["GOOD"]
    assert (spool.queue_dir / "BROKEN").exists()


def test_remove_forgets_message_and_journal(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    spool.journal("Q1", ["d 0"])
    spool.remove("Q1")
    assert not (spool.queue_dir / "Q1").exists()
    assert not (spool.state_dir / "Q1").exists()


def test_queue_ids_are_unique_and_sort_by_arrival():
    ids = [new_queue_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_a_new_message_has_every_recipient_pending():
    message = QueuedMessage("Q", ENVELOPE)
    assert message.pending() == [0, 1, 2] and not message.complete


def test_directory_sync_serves_many_threads_with_fewer_fsyncs(tmp_path, monkeypatch):

    fsyncs = []

    def slow_fsync(directory):
        fsyncs.append(directory)
        time.sleep(0.02)

    monkeypatch.setattr(spool_module, "fsync_directory", slow_fsync)
    syncer = spool_module.DirectorySync(tmp_path)
    threads = [threading.Thread(target=syncer.sync) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert 1 <= len(fsyncs) < 20


def test_a_failed_directory_sync_is_reported_and_the_next_caller_retries(tmp_path, monkeypatch):

    outcomes = iter([OSError(5, "Input/output error"), None])

    def flaky_fsync(directory):
        error = next(outcomes)
        if error is not None:
            raise error

    monkeypatch.setattr(spool_module, "fsync_directory", flaky_fsync)
    syncer = spool_module.DirectorySync(tmp_path)
    with pytest.raises(OSError):
        syncer.sync()
    syncer.sync()


def test_the_dsn_parameters_and_the_report_link_round_trip(tmp_path):
    envelope = Envelope("s@example.test", ("a@one.test", "b@one.test"), 1700000000.0,
                        mail_dsn=MailDsn(ret="FULL", envid="id=1"),
                        rcpt_dsn=(RcptDsn(notify=("NEVER",)),
                                  RcptDsn(notify=("SUCCESS", "FAILURE"), orcpt="rfc822;B@x")))
    assert read_queue_file(envelope.to_json(b"x") + b"\nx") == (envelope, b"x")
    assert envelope.dsn_of(1).orcpt == "rfc822;B@x"
    report = Envelope("", ("s@example.test",), 1700000001.0, report_of="Q1",
                      report_entries=("b 0", "w 1"))
    assert read_queue_file(report.to_json(b"") + b"\n") == (report, b"")


def test_a_queue_file_written_before_dsn_loads_with_no_parameters(tmp_path):
    spool = Spool.open(tmp_path)
    (spool.queue_dir / "Q1").write_bytes(
        b'{"v":1,"from":"s@example.test","rcpts":["a@one.test","b@two.test"],"t":1700000000.0,'
        b'"ip":"127.0.0.1","helo":"client.test","utf8":false,"8bit":false}\nSubject: x\r\n\r\n')
    [message] = spool.load()
    envelope = message.envelope
    assert (envelope.mail_dsn, envelope.rcpt_dsn, envelope.report_of) == (MailDsn(), (), None)
    assert envelope.dsn_of(1) == RcptDsn() and envelope.dsn_of(1).wants("FAILURE")


def test_a_delay_notice_is_remembered(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    [message] = spool.load()
    assert not message.delay_notified
    spool.journal("Q1", ["a 1 1700000900.000", "w 1"])
    [message] = spool.load()
    assert message.delay_notified


def test_a_report_whose_entries_are_missing_completes_the_journal_on_load(tmp_path, caplog):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"x\r\n")
    spool.journal("Q1", ["d 0"])
    # the crash came after the report was stored and before "b 1" and "b 2" were journaled
    report = Envelope("", ("sender@example.test",), 1700000001.0, report_of="Q1",
                      report_entries=("b 1", "b 2", "b 7", "x"))  # the last two: no such
    spool.store("R1", report, b"report\r\n")
    caplog.set_level("INFO", "mta_logging.relay.spool")
    assert [m.queue_id for m in spool.load()] == ["R1"]  # Q1 is complete, so removed
    assert sorted(os.listdir(spool.queue_dir)) == ["R1"] and os.listdir(spool.state_dir) == []
    assert "queue Q1: completing the journal from its report R1: b 1, b 2" in caplog.text
    # a delay notice is remembered the same way, and the message stays queued
    spool.store("Q2", ENVELOPE, b"x\r\n")
    spool.store("R2", Envelope("", ("sender@example.test",), 1700000002.0, report_of="Q2",
                               report_entries=("w 1",)), b"report\r\n")
    loaded = {m.queue_id: m for m in spool.load()}
    assert sorted(loaded) == ["Q2", "R1", "R2"]
    assert loaded["Q2"].delay_notified and loaded["Q2"].pending() == [0, 1, 2]
    assert (spool.state_dir / "Q2").read_text() == "w 1\n"
    spool.load()
    assert (spool.state_dir / "Q2").read_text() == "w 1\n"  # in effect: not written again


def test_the_ids_of_two_workers_never_share_a_tag(monkeypatch):
    monkeypatch.setattr(spool_module, "_PROCESS_TAG", spool_module._PROCESS_TAG)
    tags = []
    for index in (1, 2, 64):
        spool_module.use_worker_tag(index)
        tags.append(int(new_queue_id()[-3:], 16))
    assert [tag % 64 for tag in tags] == [0, 1, 63]


def test_worker_spools_are_found_in_order_of_their_number(tmp_path):
    for name in ("worker-10", "worker-2", "worker-1", "worker-x", "queue"):
        (tmp_path / name).mkdir()
    (tmp_path / "worker-3").write_text("a file")
    assert [p.name for p in worker_dirs(tmp_path)] == ["worker-1", "worker-2", "worker-10"]
    assert worker_dir(tmp_path, 2) == tmp_path / "worker-2"
    assert worker_dirs(tmp_path / "missing") == []


def test_moving_messages_keeps_each_journal_with_its_message(tmp_path):
    source, target = Spool.open(tmp_path / "one"), Spool.open(tmp_path / "two")
    source.store("Q1", ENVELOPE, b"first\r\n")
    source.journal("Q1", ["d 1"])
    source.store("Q2", ENVELOPE, b"second\r\n")
    target.store("Q3", ENVELOPE, b"third\r\n")
    assert move_messages(source, target) == 2
    assert [m.queue_id for m in target.load()] == ["Q1", "Q2", "Q3"]
    assert [m.pending() for m in target.load()] == [[0, 2], [0, 1, 2], [0, 1, 2]]
    assert list(source.queue_dir.iterdir()) == list(source.state_dir.iterdir()) == []


def test_moving_onto_a_name_already_there_stops_and_overwrites_nothing(tmp_path):
    source, target = Spool.open(tmp_path / "one"), Spool.open(tmp_path / "two")
    source.store("Q1", ENVELOPE, b"mine\r\n")
    target.store("Q1", ENVELOPE, b"theirs\r\n")
    with pytest.raises(MtaLoggingError) as caught:
        move_messages(source, target)
    assert str(caught.value) == (f"cannot move {source.queue_dir / 'Q1'} into "
                                 f"{target.queue_dir}: {target.queue_dir / 'Q1'} exists")
    assert target.read_content("Q1") == b"theirs\r\n"
    assert source.read_content("Q1") == b"mine\r\n"


def test_a_spool_dir_that_cannot_be_made_is_a_config_error_naming_it(tmp_path):
    (tmp_path / "spool").write_text("a file where the spool must be\n")
    with pytest.raises(ConfigError) as caught:
        open_spool_dir(tmp_path / "spool")
    text = str(caught.value)
    assert "spool_dir" in text and str(tmp_path / "spool") in text
    assert "must be a directory the relay can write" in text
    assert (tmp_path / "spool").read_text() == "a file where the spool must be\n"


def test_a_held_spool_lock_names_the_spool_and_its_lock_file(tmp_path):
    spool = Spool.open(tmp_path / "spool")
    holder = SpoolLock(spool)
    assert holder.acquire()
    try:
        with pytest.raises(MtaLoggingError) as caught, locked(spool):
            pass
    finally:
        holder.release()
    assert str(caught.value) == (f"the spool {spool.root} is in use by another relay (its lock "
                                 f"file {spool.lock_path} is held)")
