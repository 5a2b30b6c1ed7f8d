"""Review of queue file version 2 (written in place, ``len`` and ``crc`` in the envelope
line): what a crash or an older relay leaves behind, as ``Spool`` sees it."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from mta_logging.relay.spool import Envelope, Spool

ENVELOPE = Envelope("sender@example.test", ("a@one.test", "b@two.test"), 1700000000.25,
                    client_ip="127.0.0.1", client_helo="client.test")
CONTENT = b"Subject: x\r\n\r\nbody\r\n"


def test_the_journal_of_a_queue_file_cut_short_goes_with_it(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, CONTENT)
    spool.journal("Q1", ["d 0"])
    path = spool.queue_dir / "Q1"
    path.write_bytes(path.read_bytes()[:-3])
    assert spool.load() == []
    assert os.listdir(spool.queue_dir) == []
    assert os.listdir(spool.state_dir) == []


def test_a_queue_file_with_no_content_loads(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store("Q1", ENVELOPE, b"")
    [message] = spool.load()
    assert message.envelope == ENVELOPE
    assert spool.read_content("Q1") == b""


def test_content_with_the_bytes_of_an_envelope_line_is_only_content(tmp_path):
    """The content is what follows the first line end; a JSON line in it changes nothing."""
    spool = Spool.open(tmp_path)
    content = b'{"v":2,"len":0,"crc":0}\n' + CONTENT
    spool.store("Q1", ENVELOPE, content)
    [message] = spool.load()
    assert message.envelope == ENVELOPE
    assert spool.read_content("Q1") == content


def test_a_file_whose_envelope_block_was_never_written_is_left_for_a_human(tmp_path, caplog):
    """A crash that left zeros where the envelope line was, and later blocks written: no
    message is made of it and nothing is deleted (an error names the file)."""
    spool = Spool.open(tmp_path)
    content = b"Subject: x\r\n\r\n" + b"line\r\n" * 2000
    spool.store("Q1", ENVELOPE, content)
    path = spool.queue_dir / "Q1"
    data = path.read_bytes()
    path.write_bytes(b"\0" * 4096 + data[4096:])
    with caplog.at_level(logging.ERROR, logger="mta_logging.relay.spool"):
        assert spool.load() == []
    assert path.exists()
    assert f"cannot read queue file {path}" in caplog.text


def test_queue_files_of_both_versions_load_side_by_side(tmp_path):
    spool = Spool.open(tmp_path)
    (spool.queue_dir / "A1").write_bytes(
        b'{"v":1,"from":"s@example.test","rcpts":["a@one.test"],"t":1700000000.0,'
        b'"ip":"127.0.0.1","helo":"client.test","utf8":false,"8bit":false}\nSubject: v1\r\n')
    spool.store("B2", ENVELOPE, CONTENT)
    assert [m.queue_id for m in spool.load()] == ["A1", "B2"]
    assert spool.read_content("A1") == b"Subject: v1\r\n"
    assert spool.read_content("B2") == CONTENT


def test_a_failed_store_leaves_no_file_in_place(tmp_path, monkeypatch):
    """ENOSPC in the write: the file is removed, so a restart delivers nothing the client
    was refused."""
    spool = Spool.open(tmp_path)
    real_write = os.write

    def short_then_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            return real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError, match="No space left"):
        spool.store("Q1", ENVELOPE, CONTENT)
    monkeypatch.undo()
    assert os.listdir(spool.queue_dir) == []
    assert spool.load() == []
