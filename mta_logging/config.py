"""Configuration: the Haraka plugin's ``accounting_files.ini``, YAML, or a mapping.

Every source is parsed and validated once, here, into an :class:`AccountingSettings`; the
settings turn into a ``logging.config.dictConfig`` dictionary (``to_dict_config``), and
:func:`configure` installs the handlers that dictionary describes on the accounting logger.
"""

from __future__ import annotations

import logging
import logging.config
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from mta_logging import settings as _settings
from mta_logging.errors import ConfigError
from mta_logging.fields import DEFAULT_FIELDS, DEFAULT_TIME_FORMAT
from mta_logging.formatters import TAB
from mta_logging.handlers import AccountingFileHandler
from mta_logging.logger import DEFAULT_LOGGER
from mta_logging.naming import DEFAULT_FILE_NAME
from mta_logging.outcome import Kind

KIND_SECTIONS = ("location", "archive_to", "fields")
_LEGACY = {"move": "archiving", "move_interval": "archive_interval", "move_to": "archive_to"}
_log = logging.getLogger("mta_logging")


@dataclass(frozen=True, slots=True)
class AccountingSettings:
    """Validated accounting settings. Field docs: see configs/accounting.yaml."""

    path: str = "accounting_files"
    extension: str = "tsv"
    separator: str = TAB
    format: str = "separated"
    archiving: bool = False
    archive_interval: float = 86400.0
    max_size: float = 200.0
    compress: bool = False
    retention_days: float | None = None
    retention_files: int | None = None
    archive_empty: bool = False
    fsync: str = "never"
    file_name: str = DEFAULT_FILE_NAME
    placeholder: str = ""
    time_format: str = DEFAULT_TIME_FORMAT
    utc: bool = False
    logger: str = DEFAULT_LOGGER
    propagate: bool = True
    records: tuple[Kind, ...] = _settings.DEFAULT_RECORDS
    location: Mapping[str, str] = field(
        default_factory=lambda: {k.directory: k.directory for k in Kind})
    archive_to: Mapping[str, str] = field(
        default_factory=lambda: {k.directory: "archive" for k in Kind})
    fields: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {k.directory: DEFAULT_FIELDS[k] for k in Kind})

    def directory(self, kind: Kind) -> Path:
        """The active directory of a kind (``location`` is relative to ``path`` unless absolute)."""
        return Path(self.path) / self.location[kind.directory]

    def archive_directory(self, kind: Kind) -> Path:
        return self.directory(kind) / self.archive_to[kind.directory]


SETTING_KEYS = tuple(f for f in AccountingSettings.__dataclass_fields__)


# -- parsing --------------------------------------------------------------------------------------

def parse_ini(text: str, source: str = "accounting_files.ini") -> dict[str, Any]:
    """Read the Haraka plugin's INI format into a settings mapping.

    Keys before any ``[section]`` (or in ``[main]``) are main settings; ``[location]``,
    ``[archive_to]`` and ``[fields]`` hold per-kind values. ``;`` and ``#`` start comments. As in
    Haraka, ``location`` and ``archive_to`` values are joined onto their parent directory, so
    ``delivered=/delivered`` means the directory ``delivered`` inside ``path``.
    """
    data: dict[str, Any] = {}
    section = "main"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip(" \r\n")
        if not line.strip() or line.lstrip()[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = _LEGACY.get(line[1:-1].strip(), line[1:-1].strip())
            if section != "main" and section not in KIND_SECTIONS:
                raise ConfigError(f"[{section}]", line, "unknown section; allowed: [main], "
                                  + ", ".join(f"[{s}]" for s in KIND_SECTIONS),
                                  source=f"{source}:{number}")
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"line {number}", raw, "expected key=value, a [section] or a "
                              "comment", source=source)
        key = key.strip()
        # a literal tab as the value (the separator) survives; other white space is trimmed
        value = TAB if value.strip() == "" and "\t" in value else value.strip()
        if section == "main":
            data[_LEGACY.get(key, key)] = value
        else:
            if section in ("location", "archive_to"):
                value = value.lstrip("/") or value
            data.setdefault(section, {})[key] = value
    return data


def load(source: str | os.PathLike[str] | Mapping[str, Any] | AccountingSettings | None = None,
         ) -> AccountingSettings:
    """Settings from an INI or YAML file path, a mapping, or defaults (None)."""
    if source is None:
        return AccountingSettings()
    if isinstance(source, AccountingSettings):
        return source
    if isinstance(source, Mapping):
        return from_mapping(source, "settings")
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        return from_mapping(read_yaml_mapping(path, "settings"), str(path))
    return from_mapping(parse_ini(read_text(path), str(path)), str(path))


def read_text(path: Path) -> str:
    """A config file's text; ConfigError naming the file when it cannot be read or is not
    UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config file", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("config file", str(path), "expected UTF-8 text; byte "
                          f"0x{exc.object[exc.start]:02x} at offset {exc.start} is not") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (YAML forbids it; the
    safe loader would keep the last value and say nothing)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the safe loader refuses it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found the key {key!r} twice in one mapping",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parser's complaint on one line: where (line and column, from 1) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" + (f", {context}" if context else "")


def read_yaml_mapping(path: Path, what: str) -> Mapping[str, Any]:
    """A YAML config file that must hold a mapping of ``what`` (an empty file is {}); a key
    given twice in one mapping is refused."""
    try:
        data = yaml.load(read_text(path), Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError("config file", str(path),
                          f"expected a YAML file ({_yaml_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError("config file", str(path), f"expected a mapping of {what}")
    return data


def from_mapping(data: Mapping[str, Any], source: str = "settings") -> AccountingSettings:
    """Validate a mapping of settings (the YAML form); ConfigError names key, value, rule.

    Every key is checked by its function in :mod:`mta_logging.settings`, the same that the
    handler and the formatters use, so a value means here what it means under ``dictConfig``.
    """
    unknown = [k for k in data if _LEGACY.get(k, k) not in SETTING_KEYS]
    if unknown:
        raise ConfigError(unknown[0], data[unknown[0]],
                          "unknown setting; allowed: " + ", ".join(SETTING_KEYS), source=source)
    values = {_LEGACY.get(k, k): v for k, v in data.items()}
    defaults = AccountingSettings()
    if "extension" not in values and "format" in values:  # the format's own extension
        values["extension"] = _settings.DEFAULT_EXTENSIONS[
            _settings.output_format(values["format"])]
    try:
        checked: dict[str, Any] = {
            key: check(values[key]) for key, check in _settings.VALIDATORS.items()
            if key in values}
        for key, check_one in _PER_KIND.items():
            if key in values:
                checked[key] = _per_kind(values, key, getattr(defaults, key), check_one)
        settings = replace(defaults, **checked)
        if settings.format == "separated":
            _settings.placeholder(settings.placeholder, beside=settings.separator)
    except ConfigError as exc:
        if exc.source is None:
            raise ConfigError(exc.key, exc.value, exc.allowed, source=source) from None
        raise
    return settings


def _per_kind(values: Mapping[str, Any], key: str, defaults: Mapping[str, Any],
              check: Callable[[Any, str], Any]) -> dict[str, Any]:
    """The per-kind mapping of ``key``: the defaults, with each kind given checked by ``check``
    (``archive_to`` may also be one value for every kind)."""
    given = values[key]
    result = dict(defaults)
    if key == "archive_to" and isinstance(given, str):
        given = {kind.directory: given for kind in Kind}
    if not isinstance(given, Mapping):
        raise ConfigError(key, given, "expected a mapping with keys " + _KIND_KEYS)
    for name, value in given.items():
        kind = str(name).strip().lower()
        if kind not in result:
            raise ConfigError(f"{key}.{name}", value, "unknown kind; expected " + _KIND_KEYS)
        checked = check(value, f"{key}.{kind}")
        if checked is not None:  # None: the kind's default (a field list not given)
            result[kind] = checked
    return result


_KIND_KEYS = ", ".join(kind.directory for kind in Kind)

# the keys that hold one value per kind → the check of one value (its key names the kind)
_PER_KIND: dict[str, Callable[[Any, str], Any]] = {
    "location": _settings.directory_name,
    "archive_to": _settings.directory_name,
    "fields": _settings.fields,
}


# -- dictConfig --------------------------------------------------------------------------------

def handler_name(settings: AccountingSettings, kind: Kind) -> str:
    return f"{settings.logger}.{kind.directory}"


def to_dict_config(settings: AccountingSettings) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` dictionary that writes these settings' files.

    It is incremental-safe to merge into an application's own dictConfig: it names only its own
    formatters, handlers and logger, and sets ``disable_existing_loggers: false``.
    """
    formatters: dict[str, Any] = {}
    handlers: dict[str, Any] = {}
    level = logger_level(settings)
    for kind in settings.records:
        name = handler_name(settings, kind)
        fields = list(settings.fields[kind.directory])
        if settings.format == "json":
            formatters[name] = {"()": "mta_logging.formatters.AccountingJsonFormatter",
                                "fields": fields, "time_format": settings.time_format,
                                "utc": settings.utc}
        else:
            formatters[name] = {"()": "mta_logging.formatters.AccountingFormatter",
                                "fields": fields, "separator": settings.separator,
                                "placeholder": settings.placeholder,
                                "time_format": settings.time_format, "utc": settings.utc}
        handlers[name] = {
            "class": "mta_logging.handlers.AccountingFileHandler",
            "formatter": name,
            "kind": kind.directory,
            "directory": str(settings.directory(kind)),
            "extension": settings.extension,
            "file_name": settings.file_name,
            "archiving": settings.archiving,
            "archive_to": settings.archive_to[kind.directory],
            "archive_interval": settings.archive_interval,
            "max_size": settings.max_size,
            "compress": settings.compress,
            "retention_days": settings.retention_days,
            "retention_files": settings.retention_files,
            "archive_empty": settings.archive_empty,
            "fsync": settings.fsync,
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": handlers,
        "loggers": {settings.logger: {"level": "INFO" if level == logging.INFO else level,
                                      "handlers": list(handlers),
                                      "propagate": settings.propagate}},
    }


def logger_level(settings: AccountingSettings) -> int:
    """The accounting logger's level: INFO, or lower when ``records`` asks for a kind logged
    below it (received records, see :data:`~mta_logging.outcome.RECEIVED_LEVEL`)."""
    return min(logging.INFO, *(kind.level for kind in settings.records))


def build_handlers(settings: AccountingSettings) -> list[AccountingFileHandler]:
    """The handlers ``to_dict_config`` describes, built the way dictConfig builds them."""
    config = to_dict_config(settings)
    configurator = logging.config.DictConfigurator(config)
    built: list[AccountingFileHandler] = []
    try:
        for name, spec in config["handlers"].items():
            kwargs = {k: v for k, v in spec.items() if k not in ("class", "formatter")}
            formatter = configurator.configure_formatter(dict(config["formatters"][name]))
            try:
                handler = AccountingFileHandler(**kwargs)
            except OSError as exc:
                raise ConfigError(
                    "path", settings.path,
                    f"cannot create {kwargs['directory']} ({exc.strerror}); expected a "
                    "writable directory") from None
            handler.setFormatter(formatter)
            handler.name = name
            built.append(handler)
    except BaseException:
        for handler in built:
            handler.close()
        raise
    return built


def configure(source: str | os.PathLike[str] | Mapping[str, Any] | AccountingSettings | None
              = None, **overrides: Any) -> AccountingSettings:
    """Install accounting file handlers on the accounting logger; returns the settings used.

    ``source`` is an INI or YAML file, a mapping of settings, or None for the defaults; keyword
    arguments override single settings (``configure("acct.ini", path="/var/log/acct")``). A
    mapping with a ``version`` key is a complete ``dictConfig`` dictionary and is passed to
    ``logging.config.dictConfig`` as it is. Calling configure again replaces the handlers it
    installed before (their files are finished and archived as on close).
    """
    if isinstance(source, Mapping) and "version" in source:
        logging.config.dictConfig(dict(source))
        return AccountingSettings()
    settings = load(source)
    if overrides:
        base = _as_mapping(settings)
        if ("format" in overrides and "extension" not in overrides
                and settings.extension == _settings.DEFAULT_EXTENSIONS[settings.format]):
            del base["extension"]  # the extension follows the new format
        settings = from_mapping({**base, **overrides}, "configure()")
    handlers = build_handlers(settings)
    logger = logging.getLogger(settings.logger)
    for old in [h for h in logger.handlers if isinstance(h, AccountingFileHandler)]:
        logger.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.open()
        logger.addHandler(handler)
    level = logger_level(settings)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    logger.propagate = settings.propagate
    _log.info("accounting files ready: %s", ", ".join(str(h.path) for h in handlers))
    return settings


def _as_mapping(settings: AccountingSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["fields"] = {k: list(v) for k, v in settings.fields.items()}
    data["records"] = ",".join(kind.code for kind in settings.records)
    return data


def describe(settings: AccountingSettings) -> str:
    """The resolved settings as YAML (what ``mta-logging check-config`` prints)."""
    data = _as_mapping(settings)
    data["directories"] = {kind.directory: {
        "active": str(settings.directory(kind)),
        "archive": str(settings.archive_directory(kind)) if settings.archiving else None,
    } for kind in settings.records}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
