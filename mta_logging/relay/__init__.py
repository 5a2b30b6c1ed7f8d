"""The standalone relay: an SMTP server that spools mail durably and delivers it onward.

Parts, one module each: ``config`` (validated settings), ``spool`` (the durable queue),
``inbound`` (the aiosmtpd handler), ``smtpd`` (the SMTP protocol: fast paths, connection
limits, AUTH), ``addresses`` (which envelope addresses can be accepted), ``passwords`` (hashes
and the AUTH checker), ``limits`` (connection limits, accept errors), ``storage`` (free space),
``faults`` (reporting faults once per episode), ``resolve`` (routes and MX lookups),
``outbound`` (aiosmtplib delivery with connection reuse), ``queue`` (attempts, retries with
backoff, per-destination limits and the accounting records), ``server`` (wiring, start and
graceful stop), ``cli`` (``mta-logging relay``).
The relay records outcomes through :class:`mta_logging.AccountingLogger`, as any application would.
"""

from mta_logging.relay.config import RelaySettings, load_settings

__all__ = ["RelaySettings", "load_settings"]
