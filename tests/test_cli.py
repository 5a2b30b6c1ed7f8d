"""The `mta-logging` command itself: a reader of the output that goes away is no failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_stops_quietly_when_its_reader_goes_away():
    """`check-config ... | head -0`: the pipe is closed before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mta_logging.cli", "check-config",
             str(ROOT / "configs" / "relay.yaml")],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
