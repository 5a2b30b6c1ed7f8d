"""`mta-logging check-config` tells relay, ship, accounting and dictConfig files apart, checks
the paths as the relay (or dictConfig) will and a ship file as ship and ingest will, names file
and dotted key with the value spelt as in the file, and prints a normalized relay config that is
valid input again."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
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


def tree(root: Path) -> list[tuple[str, bool]]:
    """Every path under ``root`` and whether it is a directory."""
    return sorted((str(p.relative_to(root)), p.is_dir()) for p in root.rglob("*"))


# -- relay configs -------------------------------------------------------------------------------

def test_a_relay_config_whose_keys_are_all_misspelt_lists_every_kind_of_key(tmp_path, capsys):
    path = tmp_path / "r1.yaml"
    code, _, err = check_config(path, "lisen: 127.0.0.1:2525\nspol_dir: ./spool\n"
                                      "acounting: {path: ./acct}\n", capsys)
    assert code == 2
    assert err.startswith(f"mta-logging check-config: {path}: lisen: '127.0.0.1:2525' is not "
                          "valid; neither a relay, a ship nor an accounting setting (no key of "
                          "this file is); a relay config takes listen, hostname, ")
    assert ("; a ship config takes paths, state_dir, host, nats, webhooks, ingest, time_format, "
            "poll_interval, hold_archives; an accounting config takes path, extension, ") in err
    assert err.endswith("; a dictConfig file has version: 1\n")


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


def test_a_suppression_list_whose_directory_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "passwd").write_text("")
    listed = tmp_path / "passwd" / "x.db"
    path = tmp_path / "relay.yaml"
    expected = (f"suppression.path: '{listed}' is not valid; must be a directory (or to be "
                f"made one), but {tmp_path / 'passwd'} is not a directory\n")
    code, out, err = check_config(path, f"spool_dir: {tmp_path}/spool\n"
                                        f"suppression: {{enabled: true, path: {listed}}}\n",
                                  capsys)
    assert (code, out, err) == (2, "", f"mta-logging check-config: {path}: {expected}")
    # the relay's own check names no file, as for spool_dir (--spool-dir may override it)
    assert main(["relay", "--check", "--config", str(path)]) == 2
    assert capsys.readouterr() == ("", f"mta-logging relay: {expected}")
    assert not (tmp_path / "spool").exists()  # refused before anything is made


@pytest.mark.parametrize("name", ["acct.ini", "acct.yaml"])
def test_an_accounting_file_that_cannot_be_read_names_the_relay_config_and_the_key(
        tmp_path, capsys, name):
    missing = tmp_path / "nonexist" / name
    path = tmp_path / "relay.yaml"
    expected = (f"{path}: accounting: '{missing}' is not valid; cannot be read (No such file or "
                "directory)\n")
    code, out, err = check_config(path, f"spool_dir: {tmp_path}/spool\naccounting: {missing}\n",
                                  capsys)
    assert (code, out, err) == (2, "", f"mta-logging check-config: {expected}")
    assert main(["relay", "--check", "--config", str(path)]) == 2
    assert capsys.readouterr() == ("", f"mta-logging relay: {expected}")


@pytest.mark.parametrize(("name", "text"), [("acct.yaml", "path: {acct}\n"),
                                             ("accounting_files.ini", "[main]\npath={acct}\n")])
def test_an_accounting_config_whose_path_is_a_file_is_refused(tmp_path, capsys, name, text):
    acct = tmp_path / "acct"
    acct.write_text("")
    path = tmp_path / name
    code, out, err = check_config(path, text.format(acct=acct), capsys)
    assert (code, out) == (2, "")
    assert err == (f"mta-logging check-config: {path}: path: '{acct / 'delivered'}' is not "
                   f"valid; must be a directory (or to be made one), but {acct} is not a "
                   "directory\n")


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
    assert err == (f"mta-logging check-config: config file: '{path}' is not valid; expected a "
                   "YAML file (line 2, column 1: expected ',' or ']', but got '<stream end>', "
                   "while parsing a flow sequence)\n")
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


def test_the_printed_relay_config_shows_the_hostname_as_the_reporting_mta(tmp_path, capsys):
    config = tmp_path / "relay.yaml"
    config.write_text(f"hostname: relay.example.test\nspool_dir: {tmp_path}/spool\n")
    printed = yaml.safe_load(round_trip(tmp_path, config, capsys).read_text())
    assert printed["dsn"]["reporting_mta"] == "relay.example.test"


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


def test_a_refused_ini_file_is_never_said_to_be_ok(tmp_path, capsys):
    path = tmp_path / "accounting_files.ini"
    code, out, err = check_config(path, "[main]\narchiving=perhaps\n", capsys)
    assert (code, out) == (2, "")
    assert err == (f"mta-logging check-config: {path}: archiving: 'perhaps' is not valid; "
                   "expected true or false\n")


def test_a_directory_given_as_the_config_is_never_said_to_be_ok(tmp_path, capsys):
    code = main(["check-config", str(tmp_path)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (f"mta-logging check-config: config file: '{tmp_path}' is not valid; cannot be "
                   "read (Is a directory)\n")


# -- dictConfig files ----------------------------------------------------------------------------

def test_the_shipped_logging_yaml_is_checked_dry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logging.yaml").write_text((ROOT / "logging.yaml").read_text())
    before = (tree(tmp_path), list(logging.root.handlers),
              dict(logging.Logger.manager.loggerDict))
    assert main(["check-config", "logging.yaml"]) == 0
    out, err = capsys.readouterr()
    assert (tree(tmp_path), list(logging.root.handlers),
            dict(logging.Logger.manager.loggerDict)) == before
    assert err == ""
    assert out.startswith("logging.yaml: OK (dictConfig)\n")
    assert yaml.safe_load(out.split("\n", 1)[1]) == {
        "handlers": {f"mta.accounting.{kind}": {
            "class": "mta_logging.handlers.AccountingFileHandler",
            "directories": [f"accounting_files/{kind}"]}
            for kind in ("delivered", "deferred", "bounce")},
        "loggers": {"mta.accounting": [f"mta.accounting.{kind}"
                                       for kind in ("delivered", "deferred", "bounce")]}}


ACCOUNTING = "class: mta_logging.handlers.AccountingFileHandler"

# a dictConfig file → what check-config says of it: dictConfig refuses every one of them
REFUSED = {
    "version: 2\n": "version: 2 is not valid; expected 1, the only version dictConfig knows",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    retention_files: 2.5\n":
        "handlers.accounting.retention_files: 2.5 is not valid; expected a whole number of "
        "files such as 10, at least 1, or empty for no limit",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    compress: null\n":
        "handlers.accounting.compress: null is not valid; expected true or false",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    archving: true\n":
        "handlers.accounting.archving: true is not valid; not an argument of "
        "AccountingFileHandler; it takes kind, directory, path, extension, file_name, "
        "archiving, archive_to, archive_interval, max_size, compress, retention_days, "
        "retention_files, archive_empty, fsync, level",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    formatter: tsv\n":
        "handlers.accounting.formatter: 'tsv' is not valid; no formatter of that name; the "
        "file has no formatters",
    "version: 1\nhandlers:\n  console:\n    class: logging.StreamHandler\n    level: LOUD\n":
        "handlers.console.level: 'LOUD' is not valid; expected a level name (CRITICAL, ERROR, "
        "WARNING, INFO, DEBUG, NOTSET) or a number",
    "version: 1\nhandlers:\n  console:\n    class: logging.StreamHander\n":
        "handlers.console.class: 'logging.StreamHander' is not valid; cannot be imported",
    "version: 1\nhandlers:\n  console:\n    class: logging.StreamHandler\n    strem: x\n":
        "handlers.console.strem: 'x' is not valid; not an argument of StreamHandler; it takes "
        "stream",
    "version: 1\nhandlers:\n  file:\n    class: logging.FileHandler\n":
        "handlers.file: {'class': 'logging.FileHandler'} is not valid; FileHandler cannot be "
        "called with these arguments (missing a required argument: 'filename')",
    "version: 1\nhandlers:\n  console:\n    class: logging.StreamHandler\n    filters: [one]\n":
        "handlers.console.filters: 'one' is not valid; no filter of that name; the file has "
        "no filters",
    "version: 1\nloggers:\n  app:\n    handlers: [console]\n":
        "loggers.app.handlers: 'console' is not valid; no handler of that name; the file has "
        "no handlers",
    "version: 1\nhandlers:\n  console: {class: logging.StreamHandler}\nroot:\n"
    "  handlers: [consol]\n":
        "root.handlers: 'consol' is not valid; no handler of that name; handlers: console",
    "version: 1\nformatters:\n  tsv:\n    (): mta_logging.formatters.AccountingFormatter\n"
    "    separator: ab\n":
        "formatters.tsv.separator: 'ab' is not valid; expected one character",
    "version: 1\nformatters:\n  plain:\n    format: '%(message'\n":
        "formatters.plain: {'format': '%(message'} is not valid; dictConfig cannot make this "
        "formatter (ValueError: Invalid format '%(message' for '%' style)",
    "version: 1\nfilters:\n  kind:\n    (): mta_logging.handlers.KindFilter\n    kind: x\n":
        "filters.kind.kind: 'x' is not valid; expected one of d, df, b, r",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    path: afile\n":
        "handlers.accounting.path: 'afile' is not valid; must be a directory (or to be made "
        "one), but afile is not a directory",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    directory: afile/d\n":
        "handlers.accounting.directory: 'afile/d' is not valid; must be a directory (or to be "
        "made one), but afile is not a directory",
    "version: 1\nhandlers:\n  file: {class: logging.FileHandler, filename: nodir/app.log}\n":
        "handlers.file.filename: 'nodir/app.log' is not valid; must be a file in an existing "
        "directory (a FileHandler makes none), but nodir is not a directory",
    "version: 1\nhandlers:\n  file:\n    class: logging.handlers.RotatingFileHandler\n"
    "    filename: acct\n    maxBytes: 1000\n":
        "handlers.file.filename: 'acct' is not valid; must be a file to write to, but acct is a "
        "directory",
    f"version: 1\nhandlers:\n  accounting:\n    {ACCOUNTING}\n    directory: acct\n"
    "    archiving: on\n    archive_to: old\n":
        "handlers.accounting.archive_to: 'old' is not valid; must be a directory (or to be "
        "made one), but acct/old is not a directory",
    "version: 1\nhandlers:\n  suppression:\n    class: mta_logging.suppression.SuppressionHandler"
    "\n    path: s.db\n    expiry: {bad-mailbox: forever}\n":
        "handlers.suppression.expiry.bad-mailbox: 'forever' is not valid; expected a number of "
        "seconds",
    "version: 1\nhandlers:\n  suppression:\n    class: mta_logging.suppression.SuppressionHandler"
    "\n    path: s.db\n    timeout: soon\n":
        "handlers.suppression.timeout: 'soon' is not valid; expected a number of seconds",
}


def refused_files(tmp_path: Path) -> Path:
    """A directory with what the REFUSED files refer to: a file ``afile``, a file where
    ``acct``'s archive should be."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "acct").mkdir()
    (tmp_path / "acct" / "old").write_text("")
    return tmp_path


@pytest.mark.parametrize("text", REFUSED, ids=[said.split(":")[0] for said in REFUSED.values()])
def test_check_config_refuses_what_dictconfig_refuses(tmp_path, capsys, monkeypatch, text):
    monkeypatch.chdir(refused_files(tmp_path))
    (tmp_path / "logging.yaml").write_text(text)
    before = tree(tmp_path)
    code, out, err = check_config(tmp_path / "logging.yaml", text, capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"mta-logging check-config: {tmp_path / 'logging.yaml'}: "
                          + REFUSED[text])
    assert tree(tmp_path) == before


def test_dictconfig_refuses_them_too(tmp_path):
    """The same files given to logging.config.dictConfig, in a process of their own."""
    script = ("import json, logging.config, sys, yaml\n"
              "refused = []\n"
              "for text in json.load(sys.stdin):\n"
              "    try:\n"
              "        logging.config.dictConfig(yaml.safe_load(text))\n"
              "    except (ValueError, TypeError):\n"
              "        refused.append(text)\n"
              "print(json.dumps(refused))\n")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(list(REFUSED)),
                          cwd=refused_files(tmp_path), capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(done.stdout) == list(REFUSED)


def test_what_dictconfig_ignores_is_warned_of(tmp_path, capsys):
    path = tmp_path / "logging.yaml"
    code, out, err = check_config(path, "version: 1\nhandler: {}\nloggers:\n  app:\n"
                                        "    propogate: false\n    propagate: 'no'\n", capsys)
    assert code == 0
    assert out.startswith(f"{path}: OK (dictConfig)\n")
    assert err.splitlines() == [
        f"mta-logging check-config: warning: {path}: handler: dictConfig ignores this key; it "
        "reads version, incremental, disable_existing_loggers, formatters, filters, handlers, "
        "loggers, root",
        f"mta-logging check-config: warning: {path}: loggers.app.propogate: dictConfig ignores "
        "this key; it reads level, handlers, filters, propagate",
        f"mta-logging check-config: warning: {path}: loggers.app.propagate: 'no' is taken for "
        "true (dictConfig takes any value as its truth); write true or false"]


def test_a_dictconfig_file_the_check_accepts_is_set_up_as_printed(tmp_path, capsys):
    """What check-config prints of a file is what dictConfig then makes."""
    path = tmp_path / "logging.yaml"
    text = f"""\
version: 1
disable_existing_loggers: false
formatters:
  tsv: {{(): mta_logging.formatters.AccountingFormatter, fields: [type, rcpt]}}
  plain: {{format: "%(levelname)s %(message)s"}}
filters:
  bounces: {{(): mta_logging.handlers.KindFilter, kind: b}}
handlers:
  accounting:
    {ACCOUNTING}
    formatter: tsv
    path: {tmp_path}/acct
    archiving: true
    archive_to: {tmp_path}/old
  console: {{class: logging.StreamHandler, stream: "ext://sys.stdout", formatter: plain,
            filters: [bounces], level: WARNING}}
  file: {{class: logging.handlers.WatchedFileHandler, filename: {tmp_path}/app.log}}
  later: {{class: logging.FileHandler, filename: {tmp_path}/later/app.log, delay: true}}
loggers:
  mta.accounting: {{handlers: [accounting, console], level: INFO, propagate: false}}
root: {{handlers: [file, later]}}
"""
    code, out, err = check_config(path, text, capsys)
    assert (code, err) == (0, "")
    assert yaml.safe_load(out.split("\n", 1)[1]) == {
        "handlers": {"accounting": {"class": "mta_logging.handlers.AccountingFileHandler",
                                    "directories": [f"{tmp_path}/acct/delivered",
                                                    f"{tmp_path}/old"]},
                     "console": {"class": "logging.StreamHandler"},
                     "file": {"class": "logging.handlers.WatchedFileHandler",
                              "file": f"{tmp_path}/app.log"},
                     "later": {"class": "logging.FileHandler"}},
        "loggers": {"mta.accounting": ["accounting", "console"], "root": ["file", "later"]}}
    assert tree(tmp_path) == [("logging.yaml", False)]
    script = ("import logging.config, sys, yaml\n"
              "logging.config.dictConfig(yaml.safe_load(open(sys.argv[1])))\n"
              "logging.shutdown()\n")
    subprocess.run([sys.executable, "-c", script, str(path)], timeout=60, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert tree(tmp_path) == [("acct", True), ("acct/delivered", True), ("app.log", False),
                              ("logging.yaml", False), ("old", True)]


def check_relay_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       config: dict[str, object]) -> tuple[int, str, str]:
    """``mta-logging check-config`` on ``config`` written as ``r6.yaml``."""
    return check_config(tmp_path / "r6.yaml", yaml.safe_dump(config), capsys)


def test_bounces_need_rb_and_f_records_and_a_quarantine_directory(tmp_path, capsys):
    bounces = {"domains": ["bounces.example.com"]}
    code, _, err = check_relay_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "spool_dir": str(tmp_path / "spool"), "bounces": bounces,
        "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,f"}})
    assert code == 2
    assert err == (f"mta-logging check-config: {tmp_path / 'r6.yaml'}: accounting.records: "
                   "'d,df,b,f' is not valid; bounces: records returned mail as rb and f records: "
                   "expected d,df,b,f,rb\n")
    (tmp_path / "q").write_text("")
    code, _, err = check_relay_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "spool_dir": str(tmp_path / "spool"),
        "bounces": {**bounces, "quarantine_dir": str(tmp_path / "q")},
        "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,rb,f"}})
    assert code == 2
    assert err.startswith(f"mta-logging check-config: {tmp_path / 'r6.yaml'}: "
                          f"bounces.quarantine_dir: '{tmp_path / 'q'}' is not valid; must be a "
                          "directory")


def test_the_printed_bounces_section_never_holds_the_secret(tmp_path, capsys):
    (tmp_path / "verp.secret").write_text("a secret of enough bytes\n")
    config: dict[str, object] = {
        "listen": "127.0.0.1:2600", "spool_dir": str(tmp_path / "spool"),
        "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,rb,f"},
        "bounces": {"domains": ["bounces.example.com"], "verp": {
            "enabled": True, "secret_file": str(tmp_path / "verp.secret")}}}
    code, out, _ = check_relay_config(tmp_path, capsys, config)
    assert code == 0 and "a secret of enough bytes" not in out
    printed = yaml.safe_load(out.split("\n", 1)[1])
    assert printed["bounces"] == {
        "domains": ["bounces.example.com"], "complaint_addresses": [],
        "verp": {"enabled": True, "prefix": "bounces",
                 "secret_file": str(tmp_path / "verp.secret")}}
    (tmp_path / "printed.yaml").write_text(out.split("\n", 1)[1])
    assert (load_settings(tmp_path / "printed.yaml").bounces
            == load_settings(tmp_path / "r6.yaml").bounces)
    inline = {**config, "bounces": {"domains": ["bounces.example.com"], "verp": {
        "enabled": True, "secret": "an inline secret, long enough"}}}
    code, out, _ = check_relay_config(tmp_path, capsys, inline)
    assert code == 0 and "an inline secret" not in out


# -- ship configs --------------------------------------------------------------------------------

SHIP_CONFIG = """\
paths: [./acct, /var/log/mail/accounting]
state_dir: ./ship-state
host: relay1
nats: {servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222], stream: ACCT, replicas: 3}
webhooks: [{url: https://hooks.example.com/acct, secret: s3cret, batch: 50}]
ingest: {dsn: "postgresql://mail:pa55@db.example.com/mail", table: records}
"""


def test_a_ship_config_is_checked_and_printed_without_its_secrets(tmp_path, capsys):
    path = tmp_path / "ship.yaml"
    code, out, err = check_config(path, SHIP_CONFIG, capsys)
    assert (code, err) == (0, "")
    assert out == f"""{path}: OK (ship config, for ship and ingest)
paths:
- acct
- /var/log/mail/accounting
state_dir: ship-state
host: relay1
nats:
  servers:
  - nats://10.0.0.1:4222
  - nats://10.0.0.2:4222
  stream: ACCT
  subject_prefix: acct
  replicas: 3
  retention: limits
  max_age: 0
  duplicate_window: 120
  window: 1024
  ack_timeout: 5
webhooks:
- url: https://hooks.example.com/acct
  name: webhook1
  batch: 50
  timeout: 10
  retry_for: 604800
  backoff_initial: 1
  backoff_max: 300
ingest:
  dsn: postgresql://mail:***@db.example.com/mail
  durable: ingest
  table: records
  batch: 500
  ack_wait: 30
time_format: '%Y-%m-%d %H:%M:%S'
poll_interval: 1
hold_archives: true
"""


def test_a_ship_config_for_ingest_only_says_so(tmp_path, capsys):
    path = tmp_path / "ingest.yaml"
    code, out, err = check_config(
        path, "nats: {servers: nats://127.0.0.1:4222}\n"
              "ingest: {dsn: 'postgresql://mail@db/mail'}\n", capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: OK (ship config, for ingest)\npaths: []\n")
    assert "  dsn: postgresql://mail@db/mail\n" in out


def test_a_password_given_as_a_dsn_parameter_is_not_printed_either(tmp_path, capsys):
    path = tmp_path / "ingest.yaml"
    code, out, err = check_config(
        path, "nats: {servers: nats://127.0.0.1:4222}\n"
              "ingest: {dsn: 'postgresql://mail@db/mail?password=pa55&sslmode=require'}\n",
        capsys)
    assert (code, err) == (0, "")
    assert "  dsn: postgresql://mail@db/mail?password=***&sslmode=require\n" in out
    assert "pa55" not in out


@pytest.mark.parametrize(("text", "error"), [
    (SHIP_CONFIG.replace("replicas: 3", "replicas: 0"),
     "nats.replicas: 0 is not valid; expected a whole number of at least 1"),
    (SHIP_CONFIG.replace("host: relay1", "host: relay 1"),
     "host: 'relay 1' is not valid; expected letters, digits, '_' or '-' only (it becomes part "
     "of a NATS subject or name)"),
    ("paths: [./acct]\nstate_dir: ./s\npoll_intervall: 2\n",
     "poll_intervall: 2 is not valid; unknown setting; allowed: paths, state_dir, "
     "host, nats, webhooks, ingest, time_format, poll_interval, hold_archives"),
    # which webhook of several is wrong: its place in the list, from 0
    ("paths: [./acct]\nwebhooks: [{url: 'http://a.test/', secret: s}, {url: 'ftp://b.test/', "
     "secret: s}]\n",
     "webhooks[1].url: 'ftp://b.test/' is not valid; expected an http:// or https:// URL"),
    ("paths: [./acct]\nwebhooks: [{url: 'http://a.test/', secret: s, batch: 0}]\n",
     "webhooks[0].batch: 0 is not valid; expected a whole number of at least 1"),
])
def test_a_bad_ship_config_gets_the_error_ship_gives(tmp_path, capsys, text, error):
    path = tmp_path / "ship.yaml"
    code, out, err = check_config(path, text, capsys)
    assert (code, out) == (2, "")
    assert err == f"mta-logging check-config: {path}: {error}\n"
    assert main(["ship", "--config", str(path)]) == 2
    assert capsys.readouterr() == ("", f"mta-logging ship: {path}: {error}\n")


@pytest.mark.parametrize(("text", "ship_error", "ingest_error"), [
    ("paths: [./acct]\nstate_dir: ./s\n",
     "nats: null is not valid; expected at least one sink: nats or webhooks",
     "nats: null is not valid; expected a mapping (ingest needs nats: and ingest:)"),
    ("state_dir: ./s\ningest: {dsn: postgresql:///mail}\n",
     "paths: [] is not valid; expected a list of accounting files or directories",
     "nats: null is not valid; expected a mapping (ingest needs nats: and ingest:)"),
    ("state_dir: ./s\nnats: {servers: nats://127.0.0.1:4222}\n",
     "paths: [] is not valid; expected a list of accounting files or directories",
     "ingest: null is not valid; expected a mapping (ingest needs nats: and ingest:)"),
])
def test_a_file_that_suits_neither_ship_nor_ingest_says_what_each_lacks(
        tmp_path, capsys, text, ship_error, ingest_error):
    path = tmp_path / "ship.yaml"
    code, out, err = check_config(path, text, capsys)
    assert (code, out) == (2, "")
    assert err == (f"mta-logging check-config: {path}: {ship_error} — and for mta-logging "
                   f"ingest, {ingest_error}\n")
    assert main(["ship", "--config", str(path)]) == 2
    assert capsys.readouterr() == ("", f"mta-logging ship: {path}: {ship_error}\n")


@pytest.mark.parametrize("dsn", ["mysql://mail:pa55@db/mail", "db.example?password=pa55"])
def test_a_bad_ingest_dsn_is_shown_without_its_password(tmp_path, capsys, dsn):
    path = tmp_path / "ingest.yaml"
    code, out, err = check_config(
        path, f"nats: {{servers: nats://127.0.0.1:4222}}\ningest: {{dsn: '{dsn}'}}\n", capsys)
    assert (code, out) == (2, "")
    shown = dsn.replace("pa55", "***")
    assert err == (f"mta-logging check-config: {path}: ingest.dsn: '{shown}' is not valid; "
                   "expected a URL such as postgresql://user@127.0.0.1:5432/mail\n")
