"""Configuration: the Haraka INI unchanged, YAML, dictConfig, and the errors bad values get."""

from __future__ import annotations

import dataclasses
import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mta_logging
from mta_logging import AccountingFileHandler, AccountingSettings, ConfigError, Kind
from mta_logging.config import from_mapping, load, parse_ini, to_dict_config
from mta_logging.relay.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_accounting_logger() -> object:
    yield
    logger = logging.getLogger("mta.accounting")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_shipped_ini_and_yaml_are_the_defaults() -> None:
    assert load(ROOT / "configs" / "accounting_files.ini") == AccountingSettings()
    assert load(ROOT / "configs" / "accounting.yaml") == AccountingSettings()


def test_haraka_defaults() -> None:
    s = AccountingSettings()
    assert (s.path, s.extension, s.separator, s.archiving) == ("accounting_files", "tsv", "\t",
                                                               False)
    assert (s.archive_interval, s.max_size) == (86400, 200)
    # r, rb, f: off, as in PowerMTA
    assert s.records == (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)
    assert dict(s.location) == {"delivered": "delivered", "deferred": "deferred",
                                "bounce": "bounce", "received": "received",
                                "remote_bounce": "remote_bounce", "feedback": "feedback"}
    assert dict(s.archive_to) == {"delivered": "archive", "deferred": "archive",
                                  "bounce": "archive", "received": "archive",
                                  "remote_bounce": "archive", "feedback": "archive"}
    assert s.fields["bounce"][-1] == "bounceCat" and s.fields["deferred"][-1] == "delay"


HARAKA_INI = """\
;Main path
path={path}
extension=csv
separator=;
archiving=true
archive_interval=3600
max_size=0.5

[archive_to]
delivered=/archive
deferred=/old
bounce=/archive

[location]
delivered=/delivered
deferred=/deferred
bounce=/bounces

[fields]
delivered=type,timeLogged,rcpt,jobId,custom_X-Campaign
deferred= type,rcpt,delay
bounce=   type,rcpt,dsnStatus,bounceCat
"""


def test_every_haraka_key_is_read_with_its_meaning(tmp_path: Path) -> None:
    ini = write(tmp_path, "accounting_files.ini", HARAKA_INI.format(path=tmp_path / "acct"))
    s = load(ini)
    assert s.path == str(tmp_path / "acct")
    assert (s.extension, s.separator, s.archiving, s.archive_interval, s.max_size) == (
        "csv", ";", True, 3600.0, 0.5)
    # Haraka joined these onto their parent directory: "/bounces" is inside path
    assert s.directory(mta_logging.Kind.BOUNCE) == tmp_path / "acct" / "bounces"
    assert s.archive_directory(mta_logging.Kind.DEFERRED) == tmp_path / "acct" / "deferred" / "old"
    assert s.fields["delivered"] == ("type", "timeLogged", "rcpt", "jobId", "custom_X-Campaign")
    assert s.fields["deferred"] == ("type", "rcpt", "delay")


def test_haraka_ini_writes_where_haraka_wrote(tmp_path: Path) -> None:
    ini = write(tmp_path, "accounting_files.ini", HARAKA_INI.format(path=tmp_path / "acct"))
    mta_logging.configure(ini)
    acct = mta_logging.AccountingLogger()
    acct.delivered("bob@example.com", job_id="7", headers={"x-campaign": "spring; summer"})
    acct.bounced("dave@example.net", dsn_status="5.1.1", bounce_cat="bad-mailbox")
    logging.getLogger("mta.accounting").handlers[0].close()
    names = files(tmp_path / "acct")
    assert [n.split("/")[0] for n in names] == ["bounces", "deferred", "delivered"]
    (delivered,) = (tmp_path / "acct" / "delivered" / "archive").iterdir()
    lines = delivered.read_text().splitlines()
    assert lines[0] == "type;timeLogged;rcpt;jobId;custom_X-Campaign"
    assert lines[1].startswith("d;") and lines[1].endswith(';bob@example.com;7;"spring; summer"')


def test_legacy_key_names_and_literal_tab(tmp_path: Path) -> None:
    ini = write(tmp_path, "a.ini", "move=true\nmove_interval=60\nseparator=\t\n[move_to]\n"
                                    "delivered=/done\n")
    s = load(ini)
    assert (s.archiving, s.archive_interval, s.separator, s.archive_to["delivered"]) == (
        True, 60.0, "\t", "done")


def test_explicit_main_section_and_comments(tmp_path: Path) -> None:
    s = load(write(tmp_path, "a.ini", "# comment\n[main]\nextension=log ; not a comment\n"))
    assert s.extension == "log ; not a comment"


def test_every_extra_key_in_ini(tmp_path: Path) -> None:
    s = load(write(tmp_path, "a.ini", "\n".join([
        "compress=true", "retention_days=30", "retention_files=100", "archive_empty=yes",
        "fsync=rollover", "file_name={kind}-{host}-{pid}-{seq}.{ext}", "placeholder= - ",
        "time_format=%Y-%m-%dT%H:%M:%S", "utc=true", "format=json", "logger=my.acct",
        "propagate=false"])))
    assert (s.compress, s.retention_days, s.retention_files, s.archive_empty, s.fsync) == (
        True, 30.0, 100, True, "rollover")
    assert (s.file_name, s.placeholder, s.time_format, s.utc, s.format, s.logger, s.propagate) == (
        "{kind}-{host}-{pid}-{seq}.{ext}", "-", "%Y-%m-%dT%H:%M:%S", True, "json", "my.acct",
        False)


def test_yaml_accepts_lists_single_archive_to_and_absolute_paths(tmp_path: Path) -> None:
    cfg = write(tmp_path, "a.yaml", yaml.safe_dump({
        "path": str(tmp_path), "archive_to": str(tmp_path / "all-archives"),
        "location": {"bounce": str(tmp_path / "b")},
        "fields": {"bounce": ["type", "rcpt", "bounceCat"]}}))
    s = load(cfg)
    assert s.archive_directory(mta_logging.Kind.DELIVERED) == tmp_path / "all-archives"
    assert s.directory(mta_logging.Kind.BOUNCE) == tmp_path / "b"
    assert s.fields["bounce"] == ("type", "rcpt", "bounceCat")


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_size": "big"}, "max_size: 'big' is not valid; expected a size in megabytes"),
    ({"archive_interval": -5}, "archive_interval: -5 is not valid; expected a number of seconds"),
    ({"archive_interval": 0}, "archive_interval: 0 is not valid; expected a number of seconds"),
    ({"archiving": "perhaps"}, "archiving: 'perhaps' is not valid; expected true or false"),
    ({"fields": {"delivered": "type,rcpt,sender"}},
     "fields.delivered: 'sender' is not valid; unknown field; allowed fields: type, timeLogged"),
    ({"fields": {"later": "type"}}, "fields.later: 'type' is not valid; unknown kind"),
    ({"fsync": "sometimes"}, "fsync: 'sometimes' is not valid; expected one of never, rollover"),
    ({"separator": "::"}, "separator: '::' is not valid; expected one character"),
    ({"retention_files": 0}, "retention_files: 0 is not valid; expected a whole number"),
    ({"file_name": "{kind}.{date}.tsv"},
     "file_name: '{kind}.{date}.tsv' is not valid; unknown placeholder {date}; allowed: "
     "{ext}, {host}, {kind}, {pid}, {seq}, {time}"),
    ({"time_format": ["%H"]}, "time_format: ['%H'] is not valid; expected a strftime format"),
    ({"colour": "blue"}, "colour: 'blue' is not valid; unknown setting; allowed: path, extension"),
])
def test_bad_values_name_key_value_and_what_is_allowed(settings: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(settings, "test.yaml")
    assert str(err.value).startswith("test.yaml: " + message)


def test_bad_ini_value_names_the_file(tmp_path: Path) -> None:
    ini = write(tmp_path, "accounting_files.ini", "max_size=200MB\n")
    with pytest.raises(ConfigError, match=r"accounting_files.ini: max_size: '200MB' is not valid"):
        load(ini)


def test_bad_ini_syntax_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2: 'archiving true' is not valid; expected key="):
        parse_ini("path=x\narchiving true\n", "a.ini")
    with pytest.raises(ConfigError, match=r"a.ini:1: \[paths\]"):
        parse_ini("[paths]\n", "a.ini")


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file: .*nope.ini' is not valid; cannot be read"):
        load(tmp_path / "nope.ini")
    with pytest.raises(ConfigError, match="expected a YAML file"):
        load(write(tmp_path, "b.yaml", "path: [unclosed\n"))


def test_a_yaml_syntax_error_is_one_line_naming_where(tmp_path: Path) -> None:
    path = write(tmp_path, "b.yaml", "path: x\nfields: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"config file: '{path}' is not valid; expected a YAML file (line 3, column 1: "
        "expected ',' or ']', but got '<stream end>', while parsing a flow sequence)")


def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "twice.yaml", "path: first\narchiving: true\npath: second\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"config file: '{path}' is not valid; expected a YAML file (line 3, column 1: found "
        "the key 'path' twice in one mapping)")
    relay = write(tmp_path, "relay.yaml", "accounting:\n  path: a\n  path: b\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: found the key 'path' twice"):
        load_settings(relay)


def test_a_yaml_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "merge.yaml", "archive_to: &a {delivered: old, bounce: arch}\n"
                 "location:\n  <<: *a\n  delivered: dl\n")
    location = load(path).location
    assert (location["delivered"], location["bounce"]) == ("dl", "arch")


@pytest.mark.parametrize("name", ["accounting_files.ini", "accounting.yaml"])
def test_a_config_file_that_is_not_utf8_is_refused_naming_the_byte(tmp_path: Path,
                                                                   name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"path: x\n\xff\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (f"config file: '{path}' is not valid; expected UTF-8 text; "
                                 "byte 0xff at offset 8 is not")


def test_unwritable_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = write(tmp_path, "blocker", "a file where a directory must be")
    expected = r"path: .*blocker/acct' is not valid; cannot create .*/delivered \(Not a direc"
    with pytest.raises(ConfigError, match=expected):
        mta_logging.configure({"path": str(blocker / "acct")})


def test_configure_twice_replaces_handlers(tmp_path: Path) -> None:
    mta_logging.configure({"path": str(tmp_path / "one")})
    mta_logging.configure({"path": str(tmp_path / "two")})
    handlers = logging.getLogger("mta.accounting").handlers
    assert len(handlers) == 3
    assert all(isinstance(h, AccountingFileHandler) for h in handlers)
    assert {h.directory.parent for h in handlers} == {tmp_path / "two"}  # type: ignore[attr-defined]
    mta_logging.AccountingLogger().delivered("bob@example.com")
    assert files(tmp_path / "one") == []  # the replaced handlers left no empty files behind
    assert len(files(tmp_path / "two" / "delivered")) == 1


def test_configure_logs_that_files_are_ready(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mta_logging"):
        mta_logging.configure({"path": str(tmp_path)})
    (ready,) = [r.getMessage() for r in caplog.records if r.name == "mta_logging"]
    assert ready.startswith("accounting files ready: " + str(tmp_path / "delivered" / "d."))


def test_logging_yaml_is_the_dict_config_of_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "logging.yaml").read_text())
    assert shipped == to_dict_config(AccountingSettings())


def test_logging_yaml_with_dictconfig_alone(tmp_path: Path) -> None:
    """No Python configuration code: dictConfig(logging.yaml) from the repository root."""
    script = (
        "import logging, logging.config, yaml\n"
        f"logging.config.dictConfig(yaml.safe_load(open({str(ROOT / 'logging.yaml')!r})))\n"
        "from mta_logging import AccountingLogger\n"
        "acct = AccountingLogger()\n"
        "acct.delivered('bob@example.com', job_id='42', dsn_msg='250 2.0.0 OK')\n"
        "acct.deferred('carol@example.org', dsn_status='4.2.0', delay=300)\n"
        "acct.bounced('dave@example.net', dsn_status='5.1.1', bounce_cat='bad-mailbox')\n"
        "logging.getLogger('mta.accounting').info('not an accounting record')\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    names = files(tmp_path / "accounting_files")
    assert [n.rsplit("/", 1)[0] for n in names] == ["bounce", "deferred", "delivered"]
    body = {n.split("/")[0]: (tmp_path / "accounting_files" / n).read_text().splitlines()
            for n in names}
    assert body["delivered"][1].split("\t")[3::6] == ["bob@example.com", "250 2.0.0 OK"]
    assert body["deferred"][1].split("\t")[-1] == "300"
    assert body["bounce"][1].split("\t")[-1] == "bad-mailbox"
    assert all(len(lines) == 2 for lines in body.values())


def test_check_config_prints_resolved_settings(tmp_path: Path) -> None:
    ini = write(tmp_path, "accounting_files.ini", "archiving=true\nmax_size=0.5\n")
    out = subprocess.run([sys.executable, "-m", "mta_logging.cli", "check-config", str(ini)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith(f"{ini}: OK\n")
    settings = yaml.safe_load(out.split("\n", 1)[1])
    assert settings["max_size"] == 0.5 and settings["archiving"] is True
    assert settings["directories"]["bounce"] == {"active": "accounting_files/bounce",
                                                 "archive": "accounting_files/bounce/archive"}


def test_check_config_rejects_bad_config_with_exit_2(tmp_path: Path) -> None:
    ini = write(tmp_path, "accounting_files.ini", "archiving=perhaps\n")
    done = subprocess.run([sys.executable, "-m", "mta_logging.cli", "check-config", str(ini)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"mta-logging check-config: {ini}: archiving: 'perhaps' is not valid; "
                           "expected true or false\n")


def test_every_key_reaches_the_handlers_through_dict_config(tmp_path: Path) -> None:
    settings = from_mapping({
        "path": str(tmp_path), "extension": "log", "separator": ";", "archiving": True,
        "archive_interval": 600, "max_size": 1.5, "compress": True, "retention_days": 7,
        "retention_files": 10, "archive_empty": True, "fsync": "rollover",
        "file_name": "{kind}-{seq}.{ext}", "placeholder": "-", "time_format": "%H:%M",
        "utc": True, "logger": "acct.test", "propagate": False,
        "location": {"deferred": "later"}, "archive_to": {"bounce": "old"},
        "fields": {"delivered": "type,rcpt"}})
    logging.config.dictConfig(to_dict_config(settings))
    logger = logging.getLogger("acct.test")
    try:
        by_kind = {h.kind.directory: h for h in logger.handlers}  # type: ignore[attr-defined]
        d, df, b = by_kind["delivered"], by_kind["deferred"], by_kind["bounce"]
        assert logger.propagate is False and logger.level == logging.INFO
        assert df.directory == tmp_path / "later"
        assert b.archive_dir == tmp_path / "bounce" / "old"
        assert (d.file_names.template, d.file_names.extension, d.archiving,
                d.archive_interval) == (
            "{kind}-{seq}.{ext}", "log", True, 600.0)
        assert (d.max_bytes, d.compress, d.retention_days, d.retention_files) == (
            1_500_000, True, 7.0, 10)
        assert (d.archive_empty, d.fsync) == (True, "rollover")
        fmt = d.formatter
        assert (fmt.fields, fmt.separator, fmt.placeholder) == (("type", "rcpt"), ";", "-")
        assert (fmt.times.time_format, fmt.times.utc) == ("%H:%M", True)
        mta_logging.AccountingLogger("acct.test").delivered("a@example.com")
        assert (tmp_path / "delivered" / "d-1.log").read_text() == "type;rcpt\nd;a@example.com\n"
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def test_json_format_setting_writes_json_lines(tmp_path: Path) -> None:
    mta_logging.configure({"path": str(tmp_path), "format": "json"})  # extension: jsonl
    mta_logging.AccountingLogger().deferred("c@example.org", delay=60)
    (active,) = (tmp_path / "deferred").glob("df.*.jsonl")
    (line,) = active.read_text().splitlines()
    assert line.startswith('{"type": "df", "timeLogged": "') and line.endswith('"delay": 60}')


@pytest.mark.parametrize(("given", "extension"), [
    ({"format": "json"}, "jsonl"), ({"format": "JSON", "extension": "log"}, "log"),
    ({"format": "tsv"}, "tsv"), ({}, "tsv")])
def test_the_extension_follows_the_format_unless_given(
        given: dict[str, str], extension: str) -> None:
    assert load(given).extension == extension


def test_configure_with_a_new_format_takes_its_extension(tmp_path: Path) -> None:
    ini = write(tmp_path, "acct.ini", f"path={tmp_path}\n")
    assert mta_logging.configure(ini, format="json").extension == "jsonl"
    kept = write(tmp_path, "kept.ini", f"path={tmp_path}\nextension=log\n")
    assert mta_logging.configure(kept, format="json").extension == "log"


def test_received_records_are_off_by_default_and_on_with_records(tmp_path: Path) -> None:
    acct = mta_logging.AccountingLogger()
    mta_logging.configure({"path": str(tmp_path / "off")})
    acct.received("a@example.org", orig="s@example.com", job_id="Q1")
    assert not (tmp_path / "off" / "received").exists()
    ini = write(tmp_path, "acct.ini", f"path={tmp_path / 'on'}\nrecords=d,df,b,r\n")
    assert mta_logging.configure(ini).records[-1] is Kind.RECEIVED
    acct.received("a@example.org", orig="", job_id="Q1", rcv_ip="192.0.2.1",
                  rcv_helo="client.example", size=321)
    (active,) = (tmp_path / "on" / "received").glob("r.*.tsv")
    header, line = active.read_text().splitlines()
    assert header == ("type\ttimeLogged\torig\trcpt\torcpt\tenvId\tjobId\trcvSourceIp\trcvHelo\t"
                      "rcvAuthUser\tdlvSize\trcvTlsProtocol\trcvTlsCipher")
    assert line.split("\t")[2:] == ["", "a@example.org", "a@example.org", "", "Q1", "192.0.2.1",
                                    "client.example", "", "321", "", ""]


def test_remote_bounce_and_feedback_records_are_off_by_default_and_on_with_records(
        tmp_path: Path) -> None:
    acct = mta_logging.AccountingLogger()
    mta_logging.configure({"path": str(tmp_path / "off")})
    acct.remote_bounce("a@example.org", orig="s@example.com", dsn_status="5.1.1")
    acct.feedback("a@example.org", orig="s@example.com", feedback_type="abuse")
    assert sorted(p.name for p in (tmp_path / "off").iterdir()) == [
        "bounce", "deferred", "delivered"]
    ini = write(tmp_path, "acct.ini", f"path={tmp_path / 'on'}\nrecords=d,df,b,rb,f\n")
    assert mta_logging.configure(ini).records[-2:] == (Kind.REMOTE_BOUNCE, Kind.FEEDBACK)
    acct.remote_bounce("a@example.org", orig="s@example.com", job_id="Q1", dsn_status="5.1.1",
                       dsn_diag="smtp; 550 5.1.1 <a@example.org>: user unknown",
                       dsn_mta="dns; mx.example.org")
    acct.feedback("b@example.org", orig="s@example.com", job_id="Q2", feedback_type="abuse",
                  feedback_user_agent="SomeGenerator/1.0",
                  feedback_arrival_date="Thu, 8 Mar 2005 14:00:00 EDT",
                  feedback_source_ip="192.0.2.1", feedback_reported_domain="example.net")
    (bounced,) = (tmp_path / "on" / "remote_bounce").glob("rb.*.tsv")
    header, line = bounced.read_text().splitlines()
    assert header == ("type\ttimeLogged\torig\trcpt\torcpt\tjobId\tdsnAction\tdsnStatus\t"
                      "dsnDiag\tdsnMta\tbounceCat")
    assert line.split("\t")[2:] == [
        "s@example.com", "a@example.org", "a@example.org", "Q1", "failed", "5.1.1",
        "smtp; 550 5.1.1 <a@example.org>: user unknown", "dns; mx.example.org", "bad-mailbox"]
    (complaint,) = (tmp_path / "on" / "feedback").glob("f.*.tsv")
    header, line = complaint.read_text().splitlines()
    assert header == ("type\ttimeLogged\torig\trcpt\tjobId\tfeedbackType\tuserAgent\t"
                      "arrivalDate\tsourceIp\treportedDomain")
    assert line.split("\t")[:1] + line.split("\t")[2:] == [
        "f", "s@example.com", "b@example.org", "Q2", "abuse", "SomeGenerator/1.0",
        "Thu, 8 Mar 2005 14:00:00 EDT", "192.0.2.1", "example.net"]


def test_check_config_understands_a_relay_config(tmp_path: Path) -> None:
    cfg = write(tmp_path, "relay.yaml", "listen: 127.0.0.1:2600\n"
                                         "accounting: {path: /var/acct, archiving: true}\n")
    out = subprocess.run([sys.executable, "-m", "mta_logging.cli", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith(f"{cfg}: OK (relay config)\n")
    data = yaml.safe_load(out.split("\n", 1)[1])
    assert data["listen"] == "127.0.0.1:2600"
    assert data["accounting"]["path"] == "/var/acct" and data["accounting"]["archiving"] is True
    # what it prints is a relay config again, with the same settings
    assert load_settings(data) == dataclasses.replace(
        load_settings(cfg), accounting=data["accounting"])
    assert load(data["accounting"]) == load({"path": "/var/acct", "archiving": True})
    shipped = subprocess.run(
        [sys.executable, "-m", "mta_logging.cli", "check-config", str(ROOT / "configs/relay.yaml")],
        capture_output=True, text=True, timeout=60)
    assert shipped.returncode == 0, shipped.stderr


def test_check_config_names_a_bad_relay_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, "relay.yaml", "listen: 127.0.0.1:99999\n")
    done = subprocess.run([sys.executable, "-m", "mta_logging.cli", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"mta-logging check-config: {cfg}: listen: ")


def test_a_haraka_ini_writes_the_same_bytes_whatever_details_are_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new fields are written only where configured: the Haraka defaults stay the lines
    they were, byte for byte, when a caller (the relay) gives every detail."""
    import time

    t0 = 1_764_138_000.25
    monkeypatch.setattr(time, "time", lambda: t0)
    ini = write(tmp_path, "accounting_files.ini", f"path={tmp_path / 'acct'}\n")
    mta_logging.configure(ini)
    details = {"orig": "s@example.com", "orcpt": "rfc822;b@example.com", "env_id": "E1",
               "dsn_mta": "mx.example.net", "size": 99, "tls_protocol": "TLSv1.3",
               "tls_cipher": "TLS_AES_128_GCM_SHA256", "time_first_attempt": t0 - 5,
               "event_id": "id-1"}
    common = {"time_queued": t0 - 60, "src_mta": "relay.example", "src_ip": "192.0.2.1",
              "dest_ip": "192.0.2.9", "vmta": "pool", "job_id": "Q1", **details}
    acct = mta_logging.AccountingLogger()
    acct.delivered("b@example.com", dsn_status="2.0.0", dsn_msg="250 2.0.0 Ok", **common)
    acct.deferred("b@example.com", dsn_status="4.2.0", dsn_msg="451 4.2.0 busy", delay=300,
                  **common)
    acct.bounced("b@example.com", dsn_status="5.1.1", dsn_msg="550 5.1.1 unknown",
                 bounce_cat="bad-mailbox", **common)
    logged, queued = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for t in (t0, t0 - 60))
    start = f"{logged}\t{queued}\tb@example.com\trelay.example\t192.0.2.1\tpool\tQ1"
    header = "type\ttimeLogged\ttimeQueued\trcpt\tsrcMta\tsrcIp\tvmta\tjobId\tdsnStatus\tdsnMsg"
    expected = {
        "delivered": f"{header}\nd\t{start}\t2.0.0\t250 2.0.0 Ok\n",
        "deferred": f"{header}\tdelay\ndf\t{start}\t4.2.0\t451 4.2.0 busy\t300\n",
        "bounce": f"{header}\tbounceCat\nb\t{start}\t5.1.1\t550 5.1.1 unknown\tbad-mailbox\n",
    }
    for kind, text in expected.items():
        (path,) = (tmp_path / "acct" / kind).glob("*.tsv")
        assert path.read_bytes() == text.encode()
    assert sorted(p.name for p in (tmp_path / "acct").iterdir()) == [
        "bounce", "deferred", "delivered"]  # no received records unless asked for
