"""Time fields (``fields.TimeText``) written across a daylight-saving change and read back.

Local times without an offset jump back an hour when the clocks go back; with ``%z`` in
``time_format`` (or ``utc: true``) each time says where it is, and the reader's queue delays
are right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BERLIN_FALL_BACK = 1792890000  # 2026-10-25 01:00:00 UTC: 03:00 CEST becomes 02:00 CET
WRITER = """
import logging, os, sys, time
os.environ["TZ"] = "Europe/Berlin"
time.tzset()
from mta_logging import AccountingFileHandler, AccountingLogger
from mta_logging.formatters import AccountingFormatter
handler = AccountingFileHandler("delivered", directory=sys.argv[1])
handler.setFormatter(AccountingFormatter(["timeLogged", "timeQueued", "rcpt"], kind="d",
                                         time_format=sys.argv[2], utc=sys.argv[3] == "utc"))
for logged, queued, rcpt in [(-7200.5, -7800, "before"), (-0.5, -60, "last-second-of-cest"),
                             (0.25, -120, "first-second-of-cet"), (300, -600, "across"),
                             (3600, 3000, "after")]:
    record = logging.LogRecord("mta.accounting", logging.INFO, "", 0, rcpt, None, None)
    record.outcome = AccountingLogger.outcome("delivered", rcpt + "@example.com",
                                              time_queued=float(sys.argv[4]) + queued)
    record.created = float(sys.argv[4]) + logged
    handler.handle(record)
handler.close()
"""


def write(directory: Path, time_format: str, utc: bool) -> list[str]:
    """The records written by a process in Europe/Berlin around the change, as lines."""
    subprocess.run([sys.executable, "-c", WRITER, str(directory), time_format,
                    "utc" if utc else "local", str(BERLIN_FALL_BACK)], check=True, timeout=60)
    (file,) = directory.iterdir()
    return file.read_text(encoding="utf-8").splitlines()


def report(directory: Path, time_format: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "mta_logging.cli", "report", "--json",
                           "--time-format", time_format, str(directory)],
                          env={**os.environ, "TZ": "Europe/Berlin"}, capture_output=True,
                          text=True, check=True, timeout=60)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("time_format, utc, lines", [
    ("%Y-%m-%d %H:%M:%S%z", False, [
        "timeLogged\ttimeQueued\trcpt",
        "2026-10-25 00:59:59+0200\t2026-10-25 00:50:00+0200\tbefore@example.com",
        "2026-10-25 02:59:59+0200\t2026-10-25 02:59:00+0200\tlast-second-of-cest@example.com",
        "2026-10-25 02:00:00+0100\t2026-10-25 02:58:00+0200\tfirst-second-of-cet@example.com",
        "2026-10-25 02:05:00+0100\t2026-10-25 02:50:00+0200\tacross@example.com",
        "2026-10-25 03:00:00+0100\t2026-10-25 02:50:00+0100\tafter@example.com"]),
    ("%Y-%m-%d %H:%M:%S", True, [
        "timeLogged\ttimeQueued\trcpt",
        "2026-10-24 22:59:59\t2026-10-24 22:50:00\tbefore@example.com",
        "2026-10-25 00:59:59\t2026-10-25 00:59:00\tlast-second-of-cest@example.com",
        "2026-10-25 01:00:00\t2026-10-25 00:58:00\tfirst-second-of-cet@example.com",
        "2026-10-25 01:05:00\t2026-10-25 00:50:00\tacross@example.com",
        "2026-10-25 02:00:00\t2026-10-25 01:50:00\tafter@example.com"]),
])
def test_times_written_across_a_dst_change_give_the_right_queue_delays(
        tmp_path: Path, time_format: str, utc: bool, lines: list[str]) -> None:
    """Each second's text has that second's offset (the one-second cache of the text does
    not carry +0200 past the change), and the delays read back are the real ones (59 s to
    15 minutes), also for mail queued before the change and delivered after it."""
    assert write(tmp_path, time_format, utc) == lines
    delays = report(tmp_path, time_format)["queue_delay"]
    assert isinstance(delays, dict)
    assert (delays["count"], delays["min"], delays["max"]) == (5, 59, 900)


def test_local_times_without_an_offset_read_back_wrong_across_the_change(
        tmp_path: Path) -> None:
    """What the README warns about: without ``%z`` or ``utc`` a delay across the change reads
    an hour short, and the report says why."""
    write(tmp_path, "%Y-%m-%d %H:%M:%S", False)
    result = report(tmp_path, "%Y-%m-%d %H:%M:%S")
    delays = result["queue_delay"]
    assert isinstance(delays, dict) and delays["min"] == 120 - 3600
    warnings = result["warnings"]
    assert isinstance(warnings, list) and "2026-10-25" in warnings[0]
