"""The relay's own log, for the operator: text or JSON lines, on stderr or in a file.

Accounting records never go here (they have their own logger and files). At INFO the log has
one line per accepted message and one per recipient outcome, Postfix-style
(``<queue id>: to=<rcpt>, relay=..., delay=..., dsn=..., status=sent (reply)``); their values
are also attributes of the log record, which the JSON lines carry as fields. A log file is
opened with :class:`logging.handlers.WatchedFileHandler`, so logrotate can move it away.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# every attribute a plain LogRecord has; anything else on a record came in ``extra``
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    ``extra`` fields, and the traceback (``exc``) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        data.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def setup(level: str, log_format: str = "text", log_file: str | None = None) -> logging.Handler:
    """Send the package's log (``mta_logging.*``) to stderr or ``log_file``; returns the
    handler (its level is the package logger's, which a reload may change)."""
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    package_logger = logging.getLogger("mta_logging")
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    package_logger.propagate = False
    return handler
