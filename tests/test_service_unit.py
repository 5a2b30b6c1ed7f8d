"""The example systemd unit: verified by systemd-analyze (where the tool exists), and what an
operator relies on in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mta_logging import __version__
from mta_logging.cli import main

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "examples" / "mta-logging-relay.service"


def test_the_unit_reloads_with_hup_and_raises_the_descriptor_limit():
    lines = UNIT.read_text().splitlines()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "LimitNOFILE=65536" in lines
    assert "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines
    assert ("ExecStartPre=/usr/local/bin/mta-logging relay --config /etc/mta-logging/relay.yaml "
            "--check") in lines


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify wants the commands to exist: this checkout's own mta-logging stands in
    command = Path(sys.executable).with_name("mta-logging")
    if not command.exists():
        pytest.skip(f"{command} is not installed (pip install -e .)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/mta-logging", str(command)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"mta-logging {__version__}\n"
