"""A dry run of ``logging.config.dictConfig``: every check it would make, nothing it would do.

:func:`dry_run` walks a ``dictConfig`` dictionary as ``logging.config.DictConfigurator`` does
and refuses what it would refuse, with :class:`~mta_logging.errors.ConfigError` naming the
dotted key (``handlers.accounting.retention_files``) and the value as given. It changes nothing:
no handler is made (a handler makes its directories and files, and is known to ``logging`` once
made), no logger is touched. Formatters and filters are made, as they have no side effects.

* :class:`~mta_logging.handlers.AccountingFileHandler` arguments are checked by the checks the
  handler itself runs (:mod:`mta_logging.settings`); the directories it would make are
  returned (:attr:`DryRun.directories`), for the caller to check as the relay checks its own.
* :class:`~mta_logging.suppression.SuppressionHandler` arguments are checked as the handler
  checks them when it is made (its expiry times and timeout).
* Any other handler class is imported and its arguments bound to its signature; the file a
  ``logging.FileHandler`` (or subclass) would open at once is returned (:attr:`DryRun.files`).
* References are checked: a handler's formatter and filters, a logger's handlers and filters,
  a ``MemoryHandler``'s target.
* Keys that ``dictConfig`` ignores (``handler:`` for ``handlers:``, ``propogate:``) and flags
  that are not true or false are not errors, since ``dictConfig`` takes them, but are returned
  as warnings (:attr:`DryRun.warnings`).
"""

from __future__ import annotations

import inspect
import logging
import logging.config
import logging.handlers
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta_logging import settings as _settings
from mta_logging.checks import seconds
from mta_logging.errors import ConfigError, spell_value
from mta_logging.handlers import AccountingFileHandler
from mta_logging.outcome import Kind
from mta_logging.suppression import DEFAULT_TIMEOUT, SuppressionHandler, checked_expiry

TOP_LEVEL_KEYS = ("version", "incremental", "disable_existing_loggers", "formatters", "filters",
                  "handlers", "loggers", "root")
# a formatter's keys without "()" (Python 3.12 reads "defaults" too)
_FORMATTER_KEYS = ("format", "datefmt", "style", "validate", "class",
                   *(("defaults",) if sys.version_info >= (3, 12) else ()))
_FILTER_KEYS = ("name",)
_ROOT_KEYS = ("level", "handlers", "filters")
_LOGGER_KEYS = (*_ROOT_KEYS, "propagate")
# keys of a handler's settings that dictConfig takes itself; the others are the class's arguments
_HANDLER_KEYS = ("formatter", "level", "filters", "class", "()", ".")
_LEVELS = "a level name (CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET) or a number"


@dataclass(frozen=True, slots=True)
class PlannedPath:
    """A directory a handler would make, or a file it would open: the handler's name, the
    dotted key that says so, the value given there, and the path."""

    handler: str
    key: str
    value: Any
    path: Path


@dataclass(frozen=True, slots=True)
class DryRun:
    """What ``dictConfig`` would set up: each handler's class (by handler name), each
    logger's handlers (``""`` for the root logger), the directories the accounting handlers
    would make, the files other file handlers would open, and warnings about what it would
    take but probably not as meant."""

    handlers: Mapping[str, str]
    loggers: Mapping[str, tuple[str, ...]]
    directories: tuple[PlannedPath, ...]
    files: tuple[PlannedPath, ...]
    warnings: tuple[str, ...]


def level(value: Any) -> int | str:
    """A level as ``dictConfig`` takes it (``logging._checkLevel``): a number or a registered
    level name."""
    if isinstance(value, int) or (isinstance(value, str)
                                  and value in logging.getLevelNamesMapping()):
        return value
    raise ConfigError("level", value, "expected " + _LEVELS)


# each argument of AccountingFileHandler → the check the handler runs on it (``level`` aside,
# which dictConfig takes itself, as it does of every handler)
HANDLER_CHECKS: Mapping[str, Callable[[Any], Any]] = {
    "kind": Kind.parse,
    "directory": lambda value: None if value is None else _settings.path(value, "directory"),
    "archive_to": lambda value: _settings.directory_name(value, "archive_to"),
    **{name: _settings.VALIDATORS[name] for name in (
        "path", "extension", "file_name", "archiving", "archive_interval", "max_size",
        "compress", "retention_days", "retention_files", "archive_empty", "fsync")},
}


def dry_run(config: Mapping[str, Any], source: str = "dictConfig") -> DryRun:
    """Check ``config`` as ``logging.config.dictConfig(config)`` would, changing nothing;
    ConfigError naming ``source`` (the file) for what it would refuse."""
    try:
        return _DryRun(config, source).run()
    except ConfigError as exc:
        raise exc.located(source) from None


class _DryRun:
    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        _mapping("dictConfig", config, "a mapping of dictConfig settings")
        self.config = config
        self.source = source
        # the stdlib's configurator makes the formatters and filters and imports the classes,
        # on a copy: it converts (ext://, cfg://) and pops keys in place
        self.configurator = logging.config.DictConfigurator(_copied(config))
        self.warnings: list[str] = []
        self.directories: list[PlannedPath] = []
        self.files: list[PlannedPath] = []

    def run(self) -> DryRun:
        config = self.config
        if config.get("version") != 1:
            raise ConfigError("version", config.get("version"),
                              "expected 1, the only version dictConfig knows")
        self._known_keys("", config, TOP_LEVEL_KEYS)
        sections = {name: _mapping(name, config.get(name) or {},
                                   f"a mapping of {name[:-1]} names to their settings")
                    for name in ("formatters", "filters", "handlers", "loggers")}
        if config.get("incremental", False):
            return self._incremental(sections["handlers"], sections["loggers"])
        self._flag("disable_existing_loggers", config.get("disable_existing_loggers"))
        for name, spec in sections["formatters"].items():
            self._formatter(name, spec)
        for name, spec in sections["filters"].items():
            self._filter(name, spec)
        filters = sections["filters"]
        made = {name: self._handler(name, spec, sections)  # in dictConfig's order
                for name, spec in sorted(sections["handlers"].items())}
        handlers = {name: made[name] for name in sections["handlers"]}
        loggers = {name: self._logger(f"loggers.{name}", spec, _LOGGER_KEYS, handlers, filters)
                   for name, spec in sections["loggers"].items()}
        if config.get("root"):
            loggers[""] = self._logger("root", config["root"], _ROOT_KEYS, handlers, filters)
        return DryRun(handlers, loggers, tuple(self.directories), tuple(self.files),
                      tuple(self.warnings))

    def _incremental(self, handlers: Mapping[str, Any], loggers: Mapping[str, Any]) -> DryRun:
        """``incremental: true`` sets only levels (of handlers made before) and propagation."""
        for name, spec in handlers.items():
            spec = _mapping(f"handlers.{name}", spec, "a mapping of the handler's settings")
            if spec.get("level"):
                _checked(f"handlers.{name}", "level", spec["level"], level)
        for name, spec in loggers.items():
            self._levels_and_flag(f"loggers.{name}", spec)
        if self.config.get("root"):
            self._levels_and_flag("root", self.config["root"])
        return DryRun({}, {}, (), (), tuple(self.warnings))

    def _levels_and_flag(self, key: str, spec: Any) -> None:
        spec = _mapping(key, spec, "a mapping of the logger's settings")
        if spec.get("level") is not None:
            _checked(key, "level", spec["level"], level)
        self._flag(f"{key}.propagate", spec.get("propagate"))

    # -- formatters and filters: made, as dictConfig makes them ---------------------------------

    def _formatter(self, name: str, spec: Any) -> None:
        key = f"formatters.{name}"
        spec = _mapping(key, spec, "a mapping of the formatter's settings")
        if "()" in spec:
            self._custom(key, spec, aliases={"format": "fmt"})
        else:
            self._known_keys(f"{key}.", spec, _FORMATTER_KEYS)
            if spec.get("class"):
                self._resolve(f"{key}.class", spec["class"])
        converted = self.configurator.config["formatters"][name]
        _made(key, spec, "formatter", lambda: self.configurator.configure_formatter(converted))

    def _filter(self, name: str, spec: Any) -> None:
        key = f"filters.{name}"
        spec = _mapping(key, spec, "a mapping of the filter's settings")
        if "()" in spec:
            self._custom(key, spec)
        else:
            self._known_keys(f"{key}.", spec, _FILTER_KEYS)
        converted = self.configurator.config["filters"][name]
        _made(key, spec, "filter", lambda: self.configurator.configure_filter(converted))

    def _custom(self, key: str, spec: Mapping[str, Any],
                aliases: Mapping[str, str] | None = None) -> None:
        """A ``()`` factory: importable, and its arguments bound to its signature."""
        factory = self._resolve(f"{key}.()", spec["()"])
        _bind(key, factory, spec, _arguments(spec, ("()", ".")), aliases or {})

    # -- handlers: checked, not made -----------------------------------------------------------

    def _handler(self, name: str, spec: Any, sections: Mapping[str, Mapping[str, Any]]) -> str:
        """The handler's class name, after every check dictConfig would make."""
        key = f"handlers.{name}"
        spec = _mapping(key, spec, "a mapping of the handler's settings")
        formatter = spec.get("formatter")
        if formatter and not _names_one(formatter, sections["formatters"]):
            raise ConfigError(f"{key}.formatter", formatter, "no formatter of that name; "
                              + _names("formatters", sections["formatters"]))
        if spec.get("level") is not None:
            _checked(key, "level", spec["level"], level)
        self._filter_names(f"{key}.filters", spec.get("filters"), sections["filters"])
        if "()" in spec:
            factory = self._resolve(f"{key}.()", spec["()"])
            described = spec["()"]
        elif spec.get("class"):
            factory = self._resolve(f"{key}.class", spec["class"])
            described = spec["class"]
            if not (isinstance(factory, type) and issubclass(factory, logging.Handler)):
                raise ConfigError(f"{key}.class", spec["class"],
                                  "expected a logging.Handler class")
        else:
            raise ConfigError(key, spec, "expected class: (a logging.Handler class) or (): "
                                         "(a factory that makes the handler)")
        arguments = _arguments(spec, _HANDLER_KEYS)
        if isinstance(factory, type) and issubclass(factory, logging.handlers.MemoryHandler) \
                and "target" in arguments \
                and not _names_one(arguments["target"], sections["handlers"]):
            raise ConfigError(f"{key}.target", arguments["target"], "no handler of that name; "
                              + _names("handlers", sections["handlers"]))
        if "." in spec:
            _mapping(f"{key}..", spec["."], "a mapping of attribute names to values")
        _bind(key, factory, spec, arguments, {"stream": "strm"})
        converted = {argument: self._converted(f"{key}.{argument}", value)
                     for argument, value in arguments.items()}
        if isinstance(factory, type) and issubclass(factory, AccountingFileHandler):
            self._accounting_handler(name, factory, converted)
        elif isinstance(factory, type) and issubclass(factory, SuppressionHandler):
            _suppression_handler(key, converted)
        elif isinstance(factory, type) and issubclass(factory, logging.FileHandler):
            self._file_handler(name, factory, converted)
        return str(described)

    def _file_handler(self, name: str, handler: type[logging.FileHandler],
                      arguments: Mapping[str, Any]) -> None:
        """The file a FileHandler opens when it is made (unless ``delay``)."""
        values = {**_defaults(handler), **arguments}
        filename = values.get("filename")
        if not values.get("delay") and isinstance(filename, str | os.PathLike):
            self.files.append(PlannedPath(name, f"handlers.{name}.filename", filename,
                                          Path(filename)))

    def _accounting_handler(self, name: str, handler: type[AccountingFileHandler],
                            arguments: Mapping[str, Any]) -> None:
        """The handler's own checks of its arguments; the directories it would make."""
        key = f"handlers.{name}"
        values = {**_defaults(handler), **arguments}
        checked = {argument: _checked(key, argument, value, HANDLER_CHECKS[argument])
                   for argument, value in values.items() if argument in HANDLER_CHECKS}
        kind: Kind = checked["kind"]
        if checked["directory"] is not None:
            directory = PlannedPath(name, f"{key}.directory", values["directory"],
                                         Path(checked["directory"]))
        else:
            directory = PlannedPath(name, f"{key}.path", values["path"],
                                         Path(checked["path"]) / kind.directory)
        self.directories.append(directory)
        if checked["archiving"]:  # the handler makes its archive directory at once
            self.directories.append(PlannedPath(
                name, f"{key}.archive_to", values["archive_to"],
                directory.path / checked["archive_to"]))

    # -- loggers ---------------------------------------------------------------------------------

    def _logger(self, key: str, spec: Any, allowed: tuple[str, ...],
                handlers: Mapping[str, str], filters: Mapping[str, Any]) -> tuple[str, ...]:
        spec = _mapping(key, spec, "a mapping of the logger's settings")
        self._known_keys(f"{key}.", spec, allowed)
        if spec.get("level") is not None:
            _checked(key, "level", spec["level"], level)
        if "propagate" in allowed:
            self._flag(f"{key}.propagate", spec.get("propagate"))
        names = _list(f"{key}.handlers", spec.get("handlers") or [], "handler names")
        for name in names:
            if not _names_one(name, handlers):
                raise ConfigError(f"{key}.handlers", name,
                                  "no handler of that name; " + _names("handlers", handlers))
        self._filter_names(f"{key}.filters", spec.get("filters"), filters)
        return tuple(str(name) for name in names)

    def _filter_names(self, key: str, value: Any, filters: Mapping[str, Any]) -> None:
        """Each entry names a filter of ``filters:``, or is an ``ext://`` object that filters."""
        for entry in _list(key, value or [], "filter names"):
            converted = self._converted(key, entry)
            if callable(converted) or callable(getattr(converted, "filter", None)):
                continue
            if not _names_one(entry, filters):
                raise ConfigError(key, entry, "no filter of that name; "
                                  + _names("filters", filters))

    # -- single values ---------------------------------------------------------------------------

    def _resolve(self, key: str, name: Any) -> Any:
        """The object a dotted name (``mta_logging.handlers.AccountingFileHandler``) names."""
        if callable(name):
            return name
        if not isinstance(name, str):
            raise ConfigError(key, name, "expected a dotted name such as logging.StreamHandler")
        try:
            return self.configurator.resolve(name)
        except ValueError as exc:
            raise ConfigError(key, name, f"cannot be imported ({exc.__cause__ or exc})"
                              ) from None

    def _converted(self, key: str, value: Any) -> Any:
        """A value as dictConfig hands it on (``ext://sys.stderr`` is that object)."""
        try:
            return self.configurator.convert(value)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ConfigError(key, value, f"cannot be resolved ({exc})") from None

    def _known_keys(self, prefix: str, spec: Mapping[str, Any], allowed: tuple[str, ...]
                    ) -> None:
        for key in spec:
            if key not in allowed:
                self.warnings.append(f"{prefix}{key}: dictConfig ignores this key; it reads "
                                     + ", ".join(allowed))

    def _flag(self, key: str, value: Any) -> None:
        if value is not None and not isinstance(value, bool):
            self.warnings.append(f"{key}: {spell_value(value, self.source)} is taken for "
                                 f"{spell_value(bool(value), self.source)} (dictConfig takes "
                                 "any value as its truth); write true or false")


def _copied(value: Any) -> Any:
    """The mappings and lists of a config copied; the values in them (which may be objects,
    such as a stream, given in code) shared."""
    if isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copied(item) for item in value]
    return value


def _mapping(key: str, value: Any, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "expected " + expected)
    return value


def _names_one(value: Any, known: Mapping[str, Any]) -> bool:
    """``value`` is the name of an entry of ``known`` (a section of the file)."""
    return isinstance(value, Hashable) and value in known


def _list(key: str, value: Any, what: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ConfigError(key, value, f"expected a list of {what}")
    return list(value)


def _names(section: str, known: Iterable[str]) -> str:
    names = ", ".join(str(name) for name in known)
    return f"{section}: {names}" if names else f"the file has no {section}"


def _arguments(spec: Mapping[str, Any], taken: tuple[str, ...]) -> dict[str, Any]:
    """The keys dictConfig passes as keyword arguments (identifiers it does not take itself)."""
    return {key: value for key, value in spec.items()
            if key not in taken and logging.config.valid_ident(key)}


def _defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The default values of ``factory``'s arguments."""
    return {name: parameter.default
            for name, parameter in inspect.signature(factory).parameters.items()
            if parameter.default is not parameter.empty}


def _suppression_handler(key: str, arguments: Mapping[str, Any]) -> None:
    """The checks a SuppressionHandler makes when it is made: its expiry times (named by
    reason, ``handlers.suppression.expiry.bad-mailbox``) and its timeout."""
    checked_expiry(arguments.get("expiry"), key=f"{key}.expiry")
    if "timeout" in arguments:
        seconds(f"{key}.timeout", arguments["timeout"], DEFAULT_TIMEOUT)


def _checked(key: str, name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)``, its ConfigError named under ``key`` (``handlers.acct.max_size``)."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}.{name}", value, exc.allowed) from None


def _made(key: str, spec: Mapping[str, Any], what: str, make: Callable[[], Any]) -> None:
    """``make()``; a ConfigError is named under ``key``; any other exception, which dictConfig
    would refuse the file for, is told with the settings that caused it."""
    try:
        make()
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", exc.value, exc.allowed) from None
    except Exception as exc:  # dictConfig refuses the file for any exception
        raise ConfigError(key, dict(spec), f"dictConfig cannot make this {what} "
                                           f"({type(exc).__name__}: {exc})") from None


def _bind(key: str, factory: Any, spec: Mapping[str, Any], arguments: Mapping[str, Any],
          aliases: Mapping[str, str]) -> None:
    """``factory`` can be called with ``arguments`` (taken from ``spec``) as keywords (an
    argument in ``aliases`` may go by its older name, as dictConfig retries with it)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # no signature to bind to (a builtin): dictConfig's call alone would tell
    parameters = signature.parameters
    keywords = [name for name, parameter in parameters.items()
                if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    named = getattr(factory, "__qualname__", str(factory))
    bound = {}
    for name, value in arguments.items():
        if name not in keywords and aliases.get(name) in keywords:
            name = aliases[name]
        elif name not in keywords and not takes_any:
            raise ConfigError(f"{key}.{name}", value, f"not an argument of {named}; it takes "
                              + ", ".join(keywords))
        bound[name] = value
    try:
        signature.bind(**bound)
    except TypeError as exc:
        raise ConfigError(key, dict(spec), f"{named} cannot be called with these arguments "
                                           f"({exc})") from None
