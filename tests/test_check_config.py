"""`mta-logging check-config` on relay configs checks the paths as the relay will."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mta_logging.cli import main
from mta_logging.relay.config import load_settings


def check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, object]
                 ) -> tuple[int, str, str]:
    path = tmp_path / "r6.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_spool_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "spool").write_text("")
    code, _, err = check_config(tmp_path, capsys, {"listen": "127.0.0.1:2525",
                                                   "spool_dir": str(tmp_path / "spool")})
    assert code == 2
    assert err == (f"mta-logging check-config: spool_dir: '{tmp_path / 'spool'}' is not valid; "
                   f"must be a directory (or to be made one), but {tmp_path / 'spool'} is not "
                   "a directory\n")


def test_an_accounting_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "acct").write_text("")
    code, _, err = check_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "spool_dir": str(tmp_path / "spool"),
        "accounting": {"path": str(tmp_path / "acct")}})
    assert code == 2
    assert err.startswith(f"mta-logging check-config: accounting.path: "
                          f"'{tmp_path / 'acct' / 'delivered'}' is not valid; must be a directory")


def test_the_printed_relay_config_is_valid_input(tmp_path, capsys):
    config = {"listen": "127.0.0.1:2600", "spool_dir": str(tmp_path / "spool"),
              "routes": {"example.com": "[::1]:2601", "*": "mx"}, "metrics": "127.0.0.1:9025",
              "accounting": False}
    code, out, _ = check_config(tmp_path, capsys, config)
    assert code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(out.split("\n", 1)[1])
    assert main(["check-config", str(printed)]) == 0
    assert load_settings(printed) == load_settings(tmp_path / "r6.yaml")


def test_bounces_need_rb_and_f_records_and_a_quarantine_directory(tmp_path, capsys):
    bounces = {"domains": ["bounces.example.com"]}
    code, _, err = check_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "spool_dir": str(tmp_path / "spool"), "bounces": bounces,
        "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,f"}})
    assert code == 2
    assert err == ("mta-logging check-config: accounting.records: 'd,df,b,f' is not valid; "
                   "bounces: records returned mail as rb and f records: expected d,df,b,f,rb\n")
    (tmp_path / "q").write_text("")
    code, _, err = check_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "spool_dir": str(tmp_path / "spool"),
        "bounces": {**bounces, "quarantine_dir": str(tmp_path / "q")},
        "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,rb,f"}})
    assert code == 2
    assert err.startswith(f"mta-logging check-config: bounces.quarantine_dir: "
                          f"'{tmp_path / 'q'}' is not valid; must be a directory")


def test_the_printed_bounces_section_never_holds_the_secret(tmp_path, capsys):
    (tmp_path / "verp.secret").write_text("a secret of enough bytes\n")
    config = {"listen": "127.0.0.1:2600", "spool_dir": str(tmp_path / "spool"),
              "accounting": {"path": str(tmp_path / "acct"), "records": "d,df,b,rb,f"},
              "bounces": {"domains": ["bounces.example.com"], "verp": {
                  "enabled": True, "secret_file": str(tmp_path / "verp.secret")}}}
    code, out, _ = check_config(tmp_path, capsys, config)
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
    code, out, _ = check_config(tmp_path, capsys, inline)
    assert code == 0 and "an inline secret" not in out


def test_errors_name_the_file_and_the_dotted_key(tmp_path, capsys):
    code, _, err = check_config(tmp_path, capsys, {
        "listen": "127.0.0.1:2525", "accounting": {"path": "./acct", "archving": True}})
    assert code == 2
    assert err.startswith("mta-logging check-config: " + str(tmp_path / "r6.yaml")
                          + ": accounting.archving: True is not valid; unknown setting; "
                          "allowed: path, ")


def test_an_accounting_setting_at_the_top_of_a_relay_config_gets_a_hint(tmp_path, capsys):
    code, _, err = check_config(tmp_path, capsys, {"listen": "127.0.0.1:2525",
                                                   "archiving": True})
    assert code == 2
    assert err.endswith(": archiving: True is not valid; an accounting setting, which a relay "
                        "config takes under accounting: (accounting: {archiving: ...})\n")


def test_a_file_of_unknown_keys_lists_both_kinds_of_keys(tmp_path, capsys):
    code, _, err = check_config(tmp_path, capsys, {"lisen": "127.0.0.1:2525", "spol_dir": "x"})
    assert code == 2
    assert ": lisen: '127.0.0.1:2525' is not valid; neither a relay nor an accounting " in err
    assert "a relay config takes listen, " in err and "an accounting config takes path, " in err


def test_a_yaml_syntax_error_is_said_once(tmp_path, capsys):
    path = tmp_path / "r9.yaml"
    path.write_text("listen: [a\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mta-logging check-config: config file: '{path}' is not valid; "
                          "expected a YAML file (while parsing")
    assert err.count("not valid") == 1
