"""The shipped examples run and write what their docstrings promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.stderr


def records(cwd: Path, kind: str) -> list[list[str]]:
    (active,) = (cwd / "accounting_files" / kind).glob("*.tsv")
    return [line.split("\t") for line in active.read_text().splitlines()]


def test_app_outcomes_writes_all_three_kinds_and_logs_them(tmp_path: Path) -> None:
    log = run_example("app_outcomes.py", tmp_path)
    assert "INFO delivered bob@example.com job report-1: 250 2.0.0 OK queued as 4XyZ" in log
    assert "ERROR bounce dave@example.net job report-1: 550 5.1.1" in log
    delivered, deferred, bounce = (records(tmp_path, k) for k in ("delivered", "deferred",
                                                                   "bounce"))
    assert [r[3] for r in delivered[1:]] == ["bob@example.com"]
    assert deferred[1][-1] == "300"
    assert bounce[1][-1] == "bad-mailbox"  # classified from the reply, no category given


def test_dictconfig_app_needs_no_mta_logging_configuration(tmp_path: Path) -> None:
    run_example("dictconfig_app.py", tmp_path)
    (header, record) = records(tmp_path, "delivered")
    assert dict(zip(header, record, strict=True)) | {"timeLogged": "-"} == {
        "type": "d", "timeLogged": "-", "timeQueued": "", "rcpt": "bob@example.com",
        "srcMta": "", "srcIp": "", "vmta": "", "jobId": "42", "dsnStatus": "2.0.0",
        "dsnMsg": "250 2.0.0 OK"}
