"""`mta-logging check-config` checks the paths as the relay will, names file and dotted key
with the value spelt as in the file, and prints a normalized relay config that is valid input
again."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mta_logging.cli import main
from mta_logging.relay.config import load_settings
from mta_logging.relay.passwords import hash_password
from mta_logging.relay.preflight import accounting_settings

ROOT = Path(__file__).resolve().parent.parent


def check_config(path: Path, text: str, capsys: pytest.CaptureFixture[str]
                 ) -> tuple[int, str, str]:
    """Write ``text`` to ``path`` and run ``mta-logging check-config`` on it."""
    path.write_text(text, encoding="utf-8")
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# -- relay configs -------------------------------------------------------------------------------

def test_a_relay_config_whose_keys_are_all_misspelt_lists_every_kind_of_key(tmp_path, capsys):
    path = tmp_path / "r1.yaml"
    code, _, err = check_config(path, "lisen: 127.0.0.1:2525\nspol_dir: ./spool\n"
                                      "acounting: {path: ./acct}\n", capsys)
    assert code == 2
    assert err.startswith(f"mta-logging check-config: {path}: lisen: '127.0.0.1:2525' is not "
                          "valid; neither a relay nor an accounting setting (no key of this "
                          "file is); a relay config takes listen, hostname, ")
    assert "; an accounting config takes path, extension, " in err


def test_a_spool_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "spool").write_text("")
    path = tmp_path / "r2.yaml"
    code, out, err = check_config(path, f"listen: 127.0.0.1:2525\nspool_dir: {tmp_path}/spool\n",
                                  capsys)
    assert (code, out) == (2, "")
    assert err == (f"mta-logging check-config: {path}: spool_dir: '{tmp_path / 'spool'}' is not "
                   f"valid; must be a directory (or to be made one), but {tmp_path / 'spool'} "
                   "is not a directory\n")


def test_an_accounting_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "acct").write_text("")
    path = tmp_path / "r3.yaml"
    code, _, err = check_config(path, f"spool_dir: {tmp_path}/spool\n"
                                      f"accounting: {{path: {tmp_path}/acct}}\n", capsys)
    assert code == 2
    assert err == (f"mta-logging check-config: {path}: accounting.path: "
                   f"'{tmp_path / 'acct' / 'delivered'}' is not valid; must be a directory (or "
                   f"to be made one), but {tmp_path / 'acct'} is not a directory\n")


@pytest.mark.parametrize("accounting", ["{path: ACCT}", "{path: ACCT, location: {bounce: b}}"])
def test_a_kinds_directory_that_is_a_file_is_refused(tmp_path, capsys, accounting):
    (tmp_path / "acct").mkdir()
    name = "b" if "location" in accounting else "bounce"
    (tmp_path / "acct" / name).write_text("")
    path = tmp_path / "r4.yaml"
    code, _, err = check_config(path, f"spool_dir: {tmp_path}/spool\naccounting: "
                                      + accounting.replace("ACCT", f"{tmp_path}/acct") + "\n",
                                capsys)
    assert code == 2
    assert err.endswith(f"is not valid; must be a directory (or to be made one), but "
                        f"{tmp_path / 'acct' / name} is not a directory\n")
    assert not (tmp_path / "acct" / "delivered").exists()  # nothing made on the way


def test_errors_inside_accounting_name_the_file_and_the_dotted_key(tmp_path, capsys):
    path = tmp_path / "r6.yaml"
    code, _, err = check_config(path, "listen: 127.0.0.1:2525\n"
                                      "accounting: {path: ./acct, archving: true}\n", capsys)
    assert code == 2
    assert err.startswith(f"mta-logging check-config: {path}: accounting.archving: true is not "
                          "valid; unknown setting; allowed: path, ")


def test_an_accounting_setting_at_the_top_of_a_relay_config_gets_a_hint(tmp_path, capsys):
    path = tmp_path / "r5.yaml"
    code, _, err = check_config(path, "listen: 127.0.0.1:2525\narchiving: true\n", capsys)
    assert code == 2
    assert err == (f"mta-logging check-config: {path}: archiving: true is not valid; an "
                   "accounting setting, which a relay config takes under accounting: "
                   "(accounting: {archiving: ...})\n")


def test_a_yaml_syntax_error_is_said_once(tmp_path, capsys):
    path = tmp_path / "r9.yaml"
    code, _, err = check_config(path, "listen: [a\n", capsys)
    assert code == 2
    assert err.startswith(f"mta-logging check-config: config file: '{path}' is not valid; "
                          "expected a YAML file (while parsing")
    assert err.count("not valid") == 1


def round_trip(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Check ``config``, write what check-config prints to a file, check that file too; the
    second print is the first, and both files mean the same relay and accounting settings."""
    assert main(["check-config", str(config)]) == 0
    first = capsys.readouterr().out
    assert first.startswith(f"{config}: OK (relay config)\n")
    printed = tmp_path / "printed.yaml"
    printed.write_text(first.split("\n", 1)[1], encoding="utf-8")
    assert main(["check-config", str(printed)]) == 0
    assert capsys.readouterr().out.split("\n", 1)[1] == first.split("\n", 1)[1]
    given, again = load_settings(config), load_settings(printed)
    assert dataclasses.replace(again, accounting=given.accounting) == given
    assert accounting_settings(again, None) == accounting_settings(given, None)
    return printed


def test_the_printed_relay_config_is_valid_input_again(tmp_path, capsys):
    (tmp_path / "cert.pem").write_text("")
    (tmp_path / "key.pem").write_text("")
    config = tmp_path / "relay.yaml"
    config.write_text(f"""\
listen: "[::1]:2600"
hostname: relay.example.com
relay_networks: [10.0.0.0/8, "2001:db8::/32"]
auth_users: {{alice: "{hash_password('secret')}"}}
tls: {{cert: {tmp_path}/cert.pem, key: {tmp_path}/key.pem}}
max_message_size: 5M
max_recipients: 10
source_ip: 127.0.0.1
vmta: pool-a
spool_dir: {tmp_path}/spool
routes: {{example.com: "[::1]:2601", .example.org: mx, "*": 127.0.0.1:2602}}
retry: {{intervals: [1, 2.5], max_queue_lifetime: 60}}
concurrency: 4
max_per_destination: 2
timeouts: {{connect: 1, data: 2}}
connection_reuse: false
starttls: "off"
shutdown_timeout: 0
log_level: debug
min_free_space: 0
listen_backlog: 8
max_connections: 9
max_connections_per_ip: 3
metrics: 127.0.0.1:9025
accounting: {{path: {tmp_path}/acct, archiving: yes, records: "d, r", max_size: "0.5",
             fields: {{delivered: "type,rcpt"}}, location: {{received: in}}}}
""", encoding="utf-8")
    printed = yaml.safe_load(round_trip(tmp_path, config, capsys).read_text())
    assert printed["listen"] == "[::1]:2600"
    assert printed["routes"] == {"example.com": "[::1]:2601", ".example.org": "mx",
                                 "*": "127.0.0.1:2602"}
    assert printed["accounting"]["records"] == ["d", "r"]
    assert printed["accounting"]["archiving"] is True


def test_a_relay_config_with_an_accounting_file_prints_the_settings_inline(tmp_path, capsys):
    ini = tmp_path / "accounting_files.ini"
    ini.write_text(f"path={tmp_path}/acct\narchiving=true\n[location]\nbounce=/b\n")
    config = tmp_path / "relay.yaml"
    config.write_text(f"spool_dir: {tmp_path}/spool\naccounting: {ini}\n")
    printed = yaml.safe_load(round_trip(tmp_path, config, capsys).read_text())
    assert printed["accounting"]["location"]["bounce"] == "b"


def test_the_shipped_relay_config_prints_valid_input_again(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    round_trip(tmp_path, ROOT / "configs" / "relay.yaml", capsys)


def test_a_reader_that_leaves_after_the_first_line_ends_nothing_badly(tmp_path):
    """`check-config relay.yaml | head -1` with more output than a pipe holds."""
    routes = "".join(f"  d{n}.example.com: 10.0.{n // 250}.{n % 250}:25\n" for n in range(8000))
    config = tmp_path / "relay.yaml"
    config.write_text(f"spool_dir: {tmp_path}/spool\naccounting: false\nroutes:\n{routes}")
    with subprocess.Popen([sys.executable, "-m", "mta_logging.cli", "check-config", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == f"{config}: OK (relay config)\n".encode()
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=60) == 0
    assert err == b""


# -- accounting configs --------------------------------------------------------------------------

def test_an_accounting_yaml_value_is_spelt_as_yaml(tmp_path, capsys):
    path = tmp_path / "acct.yaml"
    code, _, err = check_config(path, "compress: null\n", capsys)
    assert code == 2
    assert err == (f"mta-logging check-config: {path}: compress: null is not valid; expected "
                   "true or false\n")


def test_an_ini_value_is_spelt_as_written(tmp_path, capsys):
    path = tmp_path / "accounting_files.ini"
    code, _, err = check_config(path, "compress=None\n", capsys)
    assert code == 2
    assert err == (f"mta-logging check-config: {path}: compress: 'None' is not valid; expected "
                   "true or false\n")
