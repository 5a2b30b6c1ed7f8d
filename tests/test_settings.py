"""Every setting means the same on every path (mta_logging/settings.py).

The paths: ``configure(mapping)``, an ``accounting_files.ini``, an accounting YAML file,
``logging.config.dictConfig`` of the handler (and its formatter), and the handler's (or the
formatter's) constructor. For each key, a table of good values (with what the handler then
holds) and bad values is run through every path: a good value gives the same result on each, a
bad one the same ConfigError (key, what is allowed) on each, naming the value as written.

A value's INI form is its text (``true``/``false`` for a bool, nothing for None); a value
marked ``Given`` has none (a list, or a bool where text is expected) and skips the INI path.
The INI format's own rules (values trimmed, a leading ``/`` in ``[location]``/``[archive_to]``
meaning inside ``path``, as in Haraka) are tested in test_config.py; values here avoid them.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import logging.config
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import mta_logging
from mta_logging import AccountingFileHandler, AccountingFormatter, AccountingJsonFormatter, Kind
from mta_logging import settings as settings_module
from mta_logging.config import SETTING_KEYS
from mta_logging.errors import ConfigError


@dataclass(frozen=True)
class Given:
    """A value that an INI file cannot carry."""

    value: Any


@dataclass(frozen=True)
class Key:
    """One setting: where it goes, good values → what the handler holds, bad values."""

    name: str
    read: Callable[[AccountingFileHandler], Any]
    good: tuple[tuple[Any, Any], ...]
    bad: tuple[Any, ...]
    on: str = "handler"  # "handler", "formatter" (its constructor takes it) or "config" only
    per_kind: bool = False  # a [section] in INI, a mapping of kind → value elsewhere


def _flag(name: str, read: Callable[[AccountingFileHandler], Any], on: str = "handler") -> Key:
    return Key(name, read, on=on,
               good=((True, True), ("yes", True), ("OFF", False), (0, False), (1, True)),
               bad=("perhaps", 2, None, "", Given(["true"])))


KEYS = (
    Key("path", lambda h: h.directory.parent,
        good=(("acct", Path("acct")), ("deep/acct", Path("deep/acct")), (2026, Path("2026"))),
        bad=("", None, "a\0b", Given(True), Given(["acct"]))),
    Key("extension", lambda h: h.file_names.extension,
        good=(("log", "log"), (".csv", "csv"), (2026, "2026")),
        bad=("", None, "a/b", "..", Given(True))),
    Key("file_name", lambda h: h.file_names.template,
        good=(("{kind}-{seq}.{ext}", "{kind}-{seq}.{ext}"),
              (" {kind}.{time}.{ext} ", "{kind}.{time}.{ext}")),
        bad=("{kind}.{date}.tsv", "d.tsv", "../{seq}", ".{seq}", "", None)),
    _flag("archiving", lambda h: h.archiving),
    _flag("compress", lambda h: h.compress),
    _flag("archive_empty", lambda h: h.archive_empty),
    Key("archive_interval", lambda h: h.archive_interval,
        good=((600, 600.0), ("0.5", 0.5), (86400.0, 86400.0)),
        bad=(0, -5, "soon", "inf", "nan", "", None, Given(True))),
    Key("max_size", lambda h: h.max_bytes,
        good=((0, sys.maxsize), (0.5, 500_000), ("1.5", 1_500_000), (200, 200_000_000)),
        bad=(-1, "200MB", "inf", "", None, Given(True))),
    Key("retention_days", lambda h: h.retention_days,
        good=((7, 7.0), (0.5, 0.5), ("", None), (None, None)),
        bad=(0, -1, "week", "nan", Given(True))),
    Key("retention_files", lambda h: h.retention_files,
        good=((10, 10), ("3", 3), ("", None), (None, None)),
        bad=(2.5, 2.0, "2.5", 0, -1, "ten", Given(True))),
    Key("fsync", lambda h: h.fsync,
        good=(("rollover", "rollover"), ("ALWAYS", "always"), (" Never ", "never")),
        bad=("sometimes", "", None, 1, Given(True))),
    Key("archive_to", lambda h: h.archive_dir.relative_to(h.directory), per_kind=True,
        good=(("old", Path("old")), ("a/b", Path("a/b")), (2026, Path("2026"))),
        bad=("", None, Given(True), Given(["old"]))),
    Key("separator", lambda h: h.formatter.separator, on="formatter",
        good=((",", ","), ("tab", "\t"), ("TAB", "\t"), ("\\t", "\t"), (Given("\t"), "\t")),
        bad=("::", "", None, '"', "\\", Given("\n"), Given(True))),
    Key("placeholder", lambda h: h.formatter.placeholder,
        on="formatter",
        good=(("-", "-"), ("", ""), ("n/a", "n/a"), (0, "0")),
        bad=("a\\b", "\t", Given("a\nb"), Given(None), Given(["-"]))),
    Key("time_format", lambda h: h.formatter.times.time_format,
        on="formatter",
        good=(("%H:%M", "%H:%M"), ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"), (5, "5")),
        bad=("", None, Given(True), Given(["%H"]))),
    _flag("utc", lambda h: h.formatter.times.utc, on="formatter"),
    Key("fields", lambda h: h.formatter.fields, on="formatter",
        per_kind=True,
        good=(("type,rcpt", ("type", "rcpt")), (" type , custom_X-Id ", ("type", "custom_X-Id")),
              (Given(["rcpt", "jobId"]), ("rcpt", "jobId")),
              (Given(None), mta_logging.DEFAULT_FIELDS[Kind.DELIVERED])),
        bad=("type,sender", "", ",", Given([]), Given(5), Given({"type": 1}))),
    Key("format", lambda h: type(h.formatter), on="config",
        good=(("json", AccountingJsonFormatter), ("TSV", AccountingFormatter),
              ("separated", AccountingFormatter)),
        bad=("xml", "", None, Given(True))),
    Key("logger", lambda h: h.name, on="config",
        good=(("my.acct", "my.acct.delivered"), ("mta.accounting", "mta.accounting.delivered")),
        bad=("", None, Given(["my.acct"]))),
    _flag("propagate", lambda h: logging.getLogger(str(h.name).rpartition(".")[0]).propagate,
          on="config"),
    Key("records", lambda h: tuple(
        each.kind for each in logging.getLogger(str(h.name).rpartition(".")[0]).handlers),
        on="config",
        good=(("d,df,b,r", (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE, Kind.RECEIVED)),
              (" delivered , R ", (Kind.DELIVERED, Kind.RECEIVED)),
              (Given(["d", "bounce"]), (Kind.DELIVERED, Kind.BOUNCE))),
        bad=("d,x", "", "d,,b", "d,delivered", None, Given(5), Given(True), Given([]))),
    Key("location", lambda h: h.directory, on="config", per_kind=True,
        good=(("later", Path("accounting_files/later")),),
        bad=("", None, Given(True))),
)


def _value(entry: Any) -> Any:
    return entry.value if isinstance(entry, Given) else entry


def _ini_text(entry: Any) -> str | None:
    if isinstance(entry, Given):
        return None
    if isinstance(entry, bool):
        return "true" if entry else "false"
    return "" if entry is None else str(entry)


def _settings_of(key: Key, value: Any) -> dict[str, Any]:
    return {key.name: {"delivered": value} if key.per_kind else value}


def _handler_of(settings: mta_logging.AccountingSettings) -> AccountingFileHandler:
    (handler,) = [h for h in logging.getLogger(settings.logger).handlers
                  if isinstance(h, AccountingFileHandler) and h.kind is Kind.DELIVERED]
    return handler


def _closing_configured(
        settings: mta_logging.AccountingSettings) -> Iterator[AccountingFileHandler]:
    logger = logging.getLogger(settings.logger)
    try:
        yield _handler_of(settings)
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def via_configure(key: Key, entry: Any, _: Path) -> Iterator[AccountingFileHandler]:
    yield from _closing_configured(mta_logging.configure(_settings_of(key, _value(entry))))


def via_ini(key: Key, entry: Any, directory: Path) -> Iterator[AccountingFileHandler]:
    text = _ini_text(entry)
    assert text is not None
    line = f"[{key.name}]\ndelivered={text}\n" if key.per_kind else f"{key.name}={text}\n"
    ini = directory / "accounting_files.ini"
    ini.write_text(line, encoding="utf-8")
    yield from _closing_configured(mta_logging.configure(ini))


def via_yaml(key: Key, entry: Any, directory: Path) -> Iterator[AccountingFileHandler]:
    path = directory / "accounting.yaml"
    path.write_text(yaml.safe_dump(_settings_of(key, _value(entry))), encoding="utf-8")
    yield from _closing_configured(mta_logging.configure(path))


def via_dict_config(key: Key, entry: Any, _: Path) -> Iterator[AccountingFileHandler]:
    handler: dict[str, Any] = {"class": "mta_logging.handlers.AccountingFileHandler",
                               "kind": "delivered", "formatter": "f"}
    formatter: dict[str, Any] = {"()": "mta_logging.formatters.AccountingFormatter",
                                 "kind": "delivered"}
    (handler if key.on == "handler" else formatter)[key.name] = _value(entry)
    try:
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"f": formatter}, "handlers": {"h": handler},
            "loggers": {"settings.test": {"handlers": ["h"]}}})
    except ValueError as exc:  # dictConfig: "Unable to configure handler 'h'" from the error
        assert isinstance(exc.__cause__, ConfigError), exc
        raise exc.__cause__ from None
    logger = logging.getLogger("settings.test")
    (built,) = logger.handlers
    try:
        assert isinstance(built, AccountingFileHandler)
        yield built
    finally:
        logger.removeHandler(built)
        built.close()


def via_constructor(key: Key, entry: Any, _: Path) -> Iterator[AccountingFileHandler]:
    if key.on == "handler":
        handler = AccountingFileHandler("delivered", **{key.name: _value(entry)})
    else:
        formatter = AccountingFormatter(kind="delivered", **{key.name: _value(entry)})
        handler = AccountingFileHandler("delivered")
        handler.setFormatter(formatter)
    try:
        yield handler
    finally:
        handler.close()


CONFIG_PATHS = {"configure": via_configure, "ini": via_ini, "yaml": via_yaml}
PATHS = {**CONFIG_PATHS, "dictConfig": via_dict_config, "constructor": via_constructor}
Way = Callable[[Key, Any, Path], Iterator[AccountingFileHandler]]


def paths_of(key: Key, entry: Any) -> dict[str, Way]:
    paths = CONFIG_PATHS if key.on == "config" else PATHS
    return {name: run for name, run in paths.items()
            if name != "ini" or _ini_text(entry) is not None}


_cases = itertools.count()


def outcome(run: Way, key: Key, entry: Any, tmp_path: Path) -> Any:
    """What the handler holds for the key, or the ConfigError raised, in a fresh directory."""
    directory = tmp_path / str(next(_cases))
    directory.mkdir()
    with contextlib.chdir(directory):
        try:
            with contextlib.contextmanager(run)(key, entry, directory) as handler:
                return key.read(handler)
        except ConfigError as exc:
            return exc


@pytest.fixture(autouse=True)
def _no_accounting_handlers_left() -> Iterator[None]:
    yield
    for name in ("mta.accounting", "my.acct", "settings.test"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True


@pytest.mark.parametrize("key", KEYS, ids=[key.name for key in KEYS])
def test_a_key_means_the_same_on_every_path(key: Key, tmp_path: Path) -> None:
    for entry, expected in key.good:
        results = {name: outcome(run, key, entry, tmp_path)
                   for name, run in paths_of(key, entry).items()}
        assert results == dict.fromkeys(results, expected), (key.name, entry)
    for entry in key.bad:
        errors = {name: outcome(run, key, entry, tmp_path)
                  for name, run in paths_of(key, entry).items()}
        assert all(isinstance(e, ConfigError) for e in errors.values()), (key.name, entry, errors)
        # the key named (a per-kind key with its kind), the same rule given on every path
        assert {e.key.partition(".")[0] for e in errors.values()} == {key.name}, errors
        assert len({e.allowed for e in errors.values()}) == 1, errors
        # the value as the user wrote it: typed where the file or the call is typed ...
        typed = {name: e.value for name, e in errors.items() if name != "ini"}
        assert len({repr(value) for value in typed.values()}) == 1, errors
        if "ini" in errors:  # ... and as text in an INI file
            value = errors["yaml"].value
            assert errors["ini"].value == (value if isinstance(value, str) else _ini_text(entry))


def test_the_table_holds_every_setting_and_every_handler_argument() -> None:
    names = {key.name for key in KEYS}
    assert names == set(SETTING_KEYS)
    handler_arguments = set(inspect.signature(AccountingFileHandler).parameters)
    formatter_arguments = set(inspect.signature(AccountingFormatter).parameters)
    assert handler_arguments - {"kind", "directory", "level"} == {
        key.name for key in KEYS if key.on == "handler"}
    assert formatter_arguments - {"kind"} == {key.name for key in KEYS if key.on == "formatter"}


def test_every_single_value_key_has_its_check() -> None:
    per_kind = {key.name for key in KEYS if key.per_kind}
    assert set(settings_module.VALIDATORS) == set(SETTING_KEYS) - per_kind


@pytest.mark.parametrize(("key", "value", "message"), [
    ("retention_files", 2.5, "retention_files: 2.5 is not valid; expected a whole number of "
                             "files such as 10, at least 1, or empty for no limit"),
    ("retention_files", "2.5", "retention_files: '2.5' is not valid; expected a whole number"),
    ("fsync", "sometimes", "fsync: 'sometimes' is not valid; expected one of never, rollover, "
                           "always"),
    ("archiving", "perhaps", "archiving: 'perhaps' is not valid; expected true or false"),
    ("max_size", "200MB", "max_size: '200MB' is not valid; expected a size in megabytes"),
    ("extension", "a/b", "extension: 'a/b' is not valid; expected a file extension such as tsv"),
])
def test_an_error_names_the_key_the_value_as_written_and_what_is_allowed(
        key: str, value: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        AccountingFileHandler("delivered", tmp_path, **{key: value})
    assert str(err.value).startswith(message)
    with pytest.raises(ConfigError) as err:
        mta_logging.configure({key: value, "path": str(tmp_path)})
    assert str(err.value).startswith("settings: " + message)


def test_the_handler_directory_is_checked_as_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory: '' is not valid; expected a directory"):
        AccountingFileHandler("delivered", "")
    handler = AccountingFileHandler("delivered", f" {tmp_path}/d ")
    try:
        assert handler.directory == tmp_path / "d"
    finally:
        handler.close()


def test_the_json_formatter_reads_utc_and_time_format_as_the_other_does() -> None:
    for utc, time_format in (("false", 5), ("on", "%H")):
        json_times = AccountingJsonFormatter(kind="d", utc=utc, time_format=time_format).times
        times = AccountingFormatter(kind="d", utc=utc, time_format=time_format).times
        assert (json_times.utc, json_times.time_format) == (times.utc, times.time_format)
    with pytest.raises(ConfigError, match="utc: 'perhaps' is not valid; expected true or false"):
        AccountingJsonFormatter(kind="d", utc="perhaps")


def test_old_homes_still_export_the_moved_names() -> None:
    from mta_logging.formatters import check_separator
    from mta_logging.handlers import FSYNC_POLICIES, parse_flag

    assert FSYNC_POLICIES == ("never", "rollover", "always")
    assert parse_flag("compress", "Yes") is True
    assert check_separator("tab") == "\t"


def test_a_refused_handler_is_not_left_behind_in_logging(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        AccountingFileHandler("delivered", tmp_path, fsync="sometimes")
    assert err.value.key == "fsync"
    # dictConfig flushes and closes every handler logging knows of: none is half-built
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
