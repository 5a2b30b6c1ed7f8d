"""`dry_run` checks a dictConfig dictionary as dictConfig would, and changes nothing."""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import pytest

from mta_logging.config import load, to_dict_config
from mta_logging.dry_dictconfig import HANDLER_CHECKS, PlannedPath, dry_run
from mta_logging.errors import ConfigError
from mta_logging.handlers import AccountingFileHandler

HANDLER = "mta_logging.handlers.AccountingFileHandler"


def one_handler(**arguments: object) -> dict[str, object]:
    return {"version": 1, "handlers": {"acct": {"class": HANDLER, **arguments}}}


def test_every_argument_of_the_handler_is_checked():
    """``level`` aside: dictConfig takes it itself, as of every handler."""
    arguments = set(inspect.signature(AccountingFileHandler).parameters) - {"level"}
    assert set(HANDLER_CHECKS) == arguments


@pytest.mark.parametrize(("argument", "value"), [
    ("kind", "x"), ("directory", " "), ("path", ""), ("extension", "a/b"),
    ("file_name", "{nope}"), ("archiving", "perhaps"), ("archive_to", ""),
    ("archive_interval", 0), ("max_size", -1), ("compress", None), ("retention_days", 0),
    ("retention_files", 2.5), ("archive_empty", "x"), ("fsync", "sometimes")])
def test_a_bad_argument_is_refused_as_the_handler_refuses_it(tmp_path, argument, value):
    arguments = {"path": str(tmp_path), argument: value}
    with pytest.raises(ConfigError) as by_handler:
        AccountingFileHandler(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as by_dry_run:
        dry_run(one_handler(**arguments), "logging.py")
    assert str(by_dry_run.value) == (f"logging.py: handlers.acct.{argument}: "
                                     + str(by_handler.value).split(": ", 1)[1])
    assert list(tmp_path.iterdir()) == []


def test_the_directories_the_handlers_would_make_are_planned(tmp_path):
    config = {"version": 1, "handlers": {
        "given": {"class": HANDLER, "directory": f" {tmp_path}/d ", "archiving": "yes",
                  "archive_to": "/srv/old"},
        "derived": {"class": HANDLER, "kind": "b", "path": str(tmp_path)},
        "default": {"class": HANDLER}}}
    assert dry_run(config).directories == (
        PlannedPath("default", "handlers.default.path", "accounting_files",
                         Path("accounting_files/delivered")),
        PlannedPath("derived", "handlers.derived.path", str(tmp_path), tmp_path / "bounce"),
        PlannedPath("given", "handlers.given.directory", f" {tmp_path}/d ", tmp_path / "d"),
        PlannedPath("given", "handlers.given.archive_to", "/srv/old", Path("/srv/old")))
    assert list(tmp_path.iterdir()) == []


def test_the_dictionary_of_any_accounting_settings_passes(tmp_path):
    settings = load({"path": str(tmp_path), "archiving": True, "records": "d,df,b,r",
                     "format": "json"})
    result = dry_run(to_dict_config(settings))
    assert result.warnings == ()
    assert result.loggers == {"mta.accounting": tuple(
        f"mta.accounting.{kind}" for kind in ("delivered", "deferred", "bounce", "received"))}
    assert {planned.path for planned in result.directories} == {
        path for kind in settings.records
        for path in (settings.directory(kind), settings.archive_directory(kind))}


def test_nothing_in_logging_changes_and_nothing_is_made(tmp_path):
    before = (list(logging.root.handlers), dict(logging.Logger.manager.loggerDict),
              {name: (logger.level, list(logger.handlers), logger.disabled)
               for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)},
              dict(logging._handlers))  # type: ignore[attr-defined]
    config = to_dict_config(load({"path": str(tmp_path), "archiving": True}))
    config["root"] = {"level": "DEBUG", "handlers": ["mta.accounting.delivered"]}
    config["disable_existing_loggers"] = True
    dry_run(config)
    assert (list(logging.root.handlers), dict(logging.Logger.manager.loggerDict),
            {name: (logger.level, list(logger.handlers), logger.disabled)
             for name, logger in logging.Logger.manager.loggerDict.items()
             if isinstance(logger, logging.Logger)},
            dict(logging._handlers)) == before  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


def test_an_incremental_file_is_checked_for_its_levels_only():
    config = {"version": 1, "incremental": True,
              "handlers": {"made.before": {"level": "INFO"}},
              "loggers": {"app": {"level": "DEBUG", "handlers": ["no.such"]}}}
    assert dry_run(config).handlers == {}
    config["loggers"] = {"app": {"level": "LOUD"}}
    with pytest.raises(ConfigError, match=r"^dictConfig: loggers\.app\.level: 'LOUD' is not "):
        dry_run(config)


def test_a_memory_handler_may_name_a_target_made_after_it():
    config = {"version": 1, "handlers": {
        "a_buffer": {"class": "logging.handlers.MemoryHandler", "capacity": 10,
                     "target": "z_console"},
        "z_console": {"class": "logging.StreamHandler"}}}
    assert dry_run(config).handlers == {"a_buffer": "logging.handlers.MemoryHandler",
                                        "z_console": "logging.StreamHandler"}


def test_a_class_that_is_no_handler_is_refused():
    with pytest.raises(ConfigError, match=r"^dictConfig: handlers\.acct\.class: 'logging\."
                                          r"Formatter' is not valid; expected a logging\."):
        dry_run({"version": 1, "handlers": {"acct": {"class": "logging.Formatter"}}})


def test_older_argument_names_that_dictconfig_retries_with_pass():
    """dictConfig retries ``stream`` as ``strm`` and a formatter's ``format`` as ``fmt``."""
    config = {"version": 1,
              "formatters": {"old": {"()": f"{__name__}.OldFormatter",
                                     "format": "%(message)s"}},
              "handlers": {"old": {"()": f"{__name__}.OldHandler",
                                   "stream": "ext://sys.stderr", "formatter": "old"}}}
    assert dry_run(config).handlers == {"old": f"{__name__}.OldHandler"}


class OldFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)


class OldHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, strm: object = None) -> None:
        super().__init__(strm)  # type: ignore[arg-type]


def test_objects_given_in_code_are_taken_as_they_are():
    config = {"version": 1, "handlers": {"console": {"class": "logging.StreamHandler",
                                                     "stream": sys.stderr}}}
    assert dry_run(config).handlers == {"console": "logging.StreamHandler"}
    assert config["handlers"]["console"]["stream"] is sys.stderr


def test_the_file_a_file_handler_opens_at_once_is_planned(tmp_path):
    config = {"version": 1, "handlers": {
        "now": {"class": "logging.handlers.RotatingFileHandler", "filename": "app.log"},
        "later": {"class": "logging.FileHandler", "filename": "later.log", "delay": True}}}
    assert dry_run(config).files == (
        PlannedPath("now", "handlers.now.filename", "app.log", Path("app.log")),)
