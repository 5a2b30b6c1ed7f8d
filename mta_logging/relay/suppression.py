"""The relay's side of the suppression list: a recipient on it is refused at RCPT and recorded
as a bounce of category ``suppressed``; the accounting logger gets the handler that adds hard
bounces and complaints to it.

A lookup is one indexed query on the event loop (a few microseconds; the file is in WAL mode,
so a writer never makes it wait). When the list cannot be read (a file that is not SQLite, a
directory in its place, locked past the timeout) the relay **fails open**: it accepts mail for
every recipient, logs the failure once (and when it works again) and tries the file again
every :data:`RETRY` seconds. The list is a courtesy to receivers and to the sending
reputation; failing closed would turn a damaged side file into an outage for every
recipient, or bounce good mail for good, while failing open costs a few messages to addresses
that bounce again (and are listed again once the file is back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from mta_logging.logger import AccountingLogger
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
        self.faults = FaultLog(_log)
        self._list: SuppressionList | None = None
        self._retry_at = 0.0

    def attach(self) -> None:
        if self.accounting is not None:
            put_first(self.accounting.logger, self.handler)

    def detach(self) -> None:
        if self.accounting is not None:
            self.accounting.logger.removeHandler(self.handler)
        self.handler.close()
        if self._list is not None:
            self._list.close()
            self._list = None

    def reconfigure(self, settings: RelaySettings) -> None:
        """New expiry times from now on (the file's path needs a restart)."""
        self.handler.expiry = settings.suppression.expiry

    def open(self) -> None:
        """Open the file (made when missing) at start, waiting for a writer as long as the
        handler does; a problem with it is logged at once."""
        try:
            self._list = SuppressionList(self.path, timeout=self.handler.timeout)
        except SuppressionError as exc:
            self._failed(exc)

    def refusal(self, address: str, mail_from: str, settings: RelaySettings) -> str | None:
        """The 550 reply for a suppressed ``address`` (its bounce recorded), else None."""
        entry = self._entry(address)
        if entry is None:
            return None
        reply = refusal_text(address, entry)
        _log.info("refused <%s> from <%s>: on the suppression list since %s, reason %s",
                  address, mail_from, time_text(entry.added), entry.reason)
        if self.accounting is not None:
            self.accounting.bounced(
                address, time_queued=self.clock(), src_mta=settings.hostname, vmta=settings.vmta,
                dsn_status=STATUS, dsn_msg=reply, bounce_cat=SUPPRESSED,
                orig="" if mail_from == "<>" else mail_from)
        return reply

    def _entry(self, address: str) -> Entry | None:
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

    def _failed(self, exc: SuppressionError) -> None:
        self.faults.failed(LOOKUP, f"{exc}; mail is accepted for every recipient until it "
                                   f"can be read (tried again every {RETRY:g} s)")
        if self._list is not None:
            self._list.close()
            self._list = None
        self._retry_at = self.clock() + RETRY
