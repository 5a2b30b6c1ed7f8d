"""The relay's side of the suppression list: a recipient on it is refused at RCPT and recorded
as a bounce of category ``suppressed``; a notification to a sender on it is not sent, and the
sender is recorded so, once per notification (:class:`SuppressedSenders`, the queue's); the
accounting logger gets the handler that adds hard bounces and complaints to it.

A lookup is one indexed query on the event loop (a few microseconds; the file is in WAL mode,
so a writer never makes it wait). When the list cannot be read (a file that is not SQLite, a
directory in its place, locked past the timeout) the relay **fails open**: it accepts mail for
every recipient and sends every notification, logs the failure once (and when it works
again) and tries the file again every :data:`RETRY` seconds. The list is a courtesy to
receivers and to the sending reputation; failing closed would turn a damaged side file into an
outage for every recipient, or bounce good mail for good, while failing open costs a few
messages to addresses that bounce again (and are listed again once the file is back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mta_logging.errors import MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Outcome
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.faults import FaultLog
from mta_logging.suppression import (
    Entry,
    SuppressionError,
    SuppressionHandler,
    SuppressionList,
    put_first,
    time_text,
)

_log = logging.getLogger("mta_logging.relay.suppression")

SUPPRESSED = "suppressed"  # the bounce category of a refused recipient
STATUS = "5.7.1"
RETRY = 10.0  # seconds before a list that could not be read is tried again
LOOKUP_TIMEOUT = 0.05  # seconds a lookup may wait for a lock (WAL readers almost never do)
LOOKUP = "suppression list lookup"


def refusal_text(address: str, entry: Entry) -> str:
    """The RCPT reply for ``address``, suppressed by ``entry``."""
    return (f"550 {STATUS} <{address}>: Recipient address rejected: on the suppression list "
            f"since {time_text(entry.added)}, reason {entry.reason}")


UNRECORDED_REFUSAL = "451 4.3.0 Error: accounting write error, try again later"
SUPPRESSED_RECORD = "suppressed sender record write"  # the fault's name (FaultLog)


def record_suppressed(accounting: AccountingLogger | None, address: str, entry: Entry, *,
                      orig: str, settings: RelaySettings, when: float) -> bool:
    """Record ``address``, suppressed by ``entry``, as a bounce of category ``suppressed``
    with the RCPT reply it gets (:func:`refusal_text`); whether the record was written (True
    with accounting off: there is none to write). A failed write is reported by the handler,
    once per episode."""
    if accounting is None:
        return True
    unwritten: list[Outcome] = []
    AccountingLogger(accounting.logger, on_write_error=unwritten.append).bounced(
        address, time_queued=when, src_mta=settings.hostname, vmta=settings.vmta,
        dsn_status=STATUS, dsn_msg=refusal_text(address, entry), bounce_cat=SUPPRESSED,
        orig=orig)
    return not unwritten


class Lookup:
    """Lookups in the list at ``path`` that fail open: an address is not on a list that cannot
    be read, which is logged once per episode (``consequence``: what that means) and tried
    again after :data:`RETRY` seconds."""

    def __init__(self, path: Path, consequence: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.consequence = consequence
        self.clock = clock
        self.faults = FaultLog(_log)
        self._list: SuppressionList | None = None
        self._retry_at = 0.0

    def open(self, timeout: float) -> None:
        """Open the file (made when missing), waiting up to ``timeout`` seconds for a writer;
        a problem with it is logged at once."""
        try:
            self._list = SuppressionList(self.path, timeout=timeout)
        except SuppressionError as exc:
            self._failed(exc)

    def entry(self, address: str) -> Entry | None:
        """The active entry of ``address``; None, too, when the list cannot be read."""
        now = self.clock()
        try:
            if self._list is None:
                if now < self._retry_at:
                    return None
                self._list = SuppressionList(self.path, timeout=LOOKUP_TIMEOUT)
            entry = self._list.find(address, now)
        except SuppressionError as exc:
            self._failed(exc)
            return None
        self.faults.succeeded(LOOKUP)
        return entry

    def close(self) -> None:
        if self._list is not None:
            self._list.close()
            self._list = None

    def _failed(self, exc: SuppressionError) -> None:
        self.faults.failed(LOOKUP, f"{exc}; {self.consequence} until it can be read (tried "
                                   f"again every {RETRY:g} s)")
        self.close()
        self._retry_at = self.clock() + RETRY


class RelaySuppression:
    """The list at ``path`` for one relay: :meth:`refusal` at each RCPT; :meth:`attach` puts
    the :class:`~mta_logging.suppression.SuppressionHandler` on the accounting logger,
    :meth:`detach` takes it off and writes what it holds."""

    def __init__(self, path: Path, settings: RelaySettings, accounting: AccountingLogger | None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        # its own logger object: a refusal's record failing is not a delivery record failing
        self.accounting = None if accounting is None else AccountingLogger(accounting.logger)
        self.handler = SuppressionHandler(path, expiry=settings.suppression.expiry)
        self.lookup = Lookup(path, "mail is accepted for every recipient", clock=clock)

    def attach(self) -> None:
        if self.accounting is not None:
            put_first(self.accounting.logger, self.handler)

    def detach(self) -> None:
        if self.accounting is not None:
            self.accounting.logger.removeHandler(self.handler)
        self.handler.close()
        self.lookup.close()

    def reconfigure(self, settings: RelaySettings) -> None:
        """New expiry times from now on (the file's path needs a restart)."""
        self.handler.expiry = settings.suppression.expiry

    def open(self) -> None:
        """Open the file (made when missing) at start, waiting for a writer as long as the
        handler does; a problem with it is logged at once."""
        self.lookup.open(self.handler.timeout)

    def refusal(self, address: str, mail_from: str, settings: RelaySettings) -> str | None:
        """The 550 reply for a suppressed ``address`` (its bounce recorded), else None; a 451
        (the client tries again) when the record could not be written: no refusal goes
        unrecorded."""
        entry = self.lookup.entry(address)
        if entry is None:
            return None
        _log.info("refused <%s> from <%s>: on the suppression list since %s, reason %s",
                  address, mail_from, time_text(entry.added), entry.reason)
        if record_suppressed(self.accounting, address, entry, settings=settings,
                             orig="" if mail_from == "<>" else mail_from, when=self.clock()):
            return refusal_text(address, entry)
        return UNRECORDED_REFUSAL


class SuppressedSenders:
    """The list at ``path`` as the delivery queue and the operator's ``queue bounce`` see it: a
    notification (a DSN) addressed to a sender on it is not to be sent. Each one skipped is
    logged and its sender recorded on ``accounting`` as a refused recipient is (a bounce of
    category ``suppressed``, from ``<>``); the caller then does what storing the notification
    would have been followed by (the queue writes the journal entries it stood for). Safe to
    use from several threads (``queue bounce`` on a running relay asks from a spool thread)."""

    def __init__(self, path: Path, accounting: AccountingLogger | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        # its own logger object: this record failing is not a delivery record failing
        self.accounting = None if accounting is None else AccountingLogger(accounting.logger)
        self.clock = clock
        self.lookup = Lookup(path, "notifications are sent to every sender", clock=clock)
        self._lock = threading.Lock()

    def skips(self, queue_id: str, sender: str, settings: RelaySettings) -> bool:
        """Whether the notification about the message ``queue_id`` to ``sender`` is not to be
        sent (then logged and recorded, once per call). Raises :class:`MtaLoggingError` when
        the record could not be written: the caller keeps what the notification stood for
        unfinished (tried again later), as when a notification cannot be stored."""
        with self._lock:
            entry = self.lookup.entry(sender)
        if entry is None:
            return False
        _log.info("%s: sender notification to <%s> not sent: on the suppression list since "
                  "%s, reason %s", queue_id, sender, time_text(entry.added), entry.reason)
        if not record_suppressed(self.accounting, sender, entry, settings=settings, orig="",
                                 when=self.clock()):
            raise MtaLoggingError(f"{queue_id}: the suppressed record of <{sender}> could not "
                                  "be written")
        return True

    def close(self) -> None:
        with self._lock:
            self.lookup.close()


def suppressed_senders(settings: RelaySettings, accounting: AccountingLogger | None, *,
                       clock: Callable[[], float] = time.time) -> SuppressedSenders | None:
    """The relay's :class:`SuppressedSenders` (its list's file, as ``settings`` say: beside
    its spool unless ``path`` is set); None when the list is off."""
    suppression = settings.suppression
    if not suppression.enabled:
        return None
    return SuppressedSenders(suppression.file(settings.spool_dir), accounting, clock=clock)
