"""Speed tricks of the accounting file handler that copy stdlib internals, beside the plain
versions they must stay equivalent to (tests/test_speedups_handler_part.py checks both).

``handle_routed`` is ``logging.Handler.handle`` of CPython 3.11 for a handler that takes only
records of its own kind; ``handle_plain`` is the same routing in front of the stdlib's own
``Handler.handle``. ``RoutedHandler`` notices ``filter``/``format`` set on an instance (as
``mock.patch.object`` does), so that the tricks, here and in the handler's ``emit``, step
aside for them.
"""

from __future__ import annotations

import logging
from typing import Any

from mta_logging.outcome import Kind

FILTER = logging.Filterer.filter  # a subclass or a patched class that filters differs
FORMAT = logging.Handler.format  # a subclass or a patched class that formats differs


class RoutedHandler(logging.Handler):
    """A handler for records of one ``kind`` (``record.outcome.kind``)."""

    kind: Kind
    # ``filter``/``format`` set on the instance are noticed here; a subclass's or a patched
    # class's are noticed by comparing the class attribute with FILTER/FORMAT at each record
    _filter_set = False
    _format_set = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "filter" or name == "format":
            object.__setattr__(self, f"_{name}_set", True)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name == "filter" or name == "format":
            object.__setattr__(self, f"_{name}_set", False)


def handle_plain(handler: RoutedHandler, record: logging.LogRecord) -> bool:
    """Routing by kind: records of other kinds (and records without an outcome) are turned
    away, before the filter chain and the lock; the rest go to ``logging.Handler.handle``."""
    try:
        if record.outcome.kind is not handler.kind:  # type: ignore[attr-defined]
            return False
    except AttributeError:  # no outcome: not an accounting record
        return False
    return bool(logging.Handler.handle(handler, record))


def handle_routed(handler: RoutedHandler, record: logging.LogRecord) -> bool:
    """``handle_plain`` with ``logging.Handler.handle`` of CPython 3.11 written out: the filter
    chain is run only when there are filters (or the handler filters by itself), and the lock
    is taken by its own context manager (two Python-level calls fewer per record). Written
    after, and checked against, ``Handler.handle`` and ``Filterer.filter`` of CPython 3.11.7;
    the handler uses it on Python 3.11 only (3.12 changed ``Handler.handle``: a filter may
    return a record to emit in place of the one it was given)."""
    try:
        if record.outcome.kind is not handler.kind:  # type: ignore[attr-defined]
            return False
    except AttributeError:  # no outcome: not an accounting record
        return False
    if (handler.filters or handler._filter_set or handler.__class__.filter is not FILTER) and (
            not handler.filter(record)):
        return False
    lock = handler.lock
    if lock is None:  # a subclass that wants no lock (Handler.acquire allows it)
        handler.emit(record)
    else:
        with lock:
            handler.emit(record)
    return True
