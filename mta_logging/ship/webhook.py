"""The webhook sink: batches of records as signed JSON POSTs.

The body is a JSON array of the records' messages (the same objects JetStream gets). Headers:
``X-Mta-Logging-Timestamp`` (Unix seconds) and ``X-Mta-Logging-Signature`` =
``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with the secret. Any 2xx answer
acknowledges the whole batch; anything else (or no answer) is retried with exponential backoff
(``backoff_initial`` doubling up to ``backoff_max``) for ``retry_for`` seconds (default 7
days), after which the batch is given up with an error log line naming how many records it
held. The receiver deduplicates by ``eventId``: a batch can arrive twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence

import httpx

from mta_logging.ship.config import WebhookSettings
from mta_logging.ship.message import Message

log = logging.getLogger("mta_logging.ship")

TIMESTAMP_HEADER = "X-Mta-Logging-Timestamp"
SIGNATURE_HEADER = "X-Mta-Logging-Signature"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def batch_body(messages: Sequence[Message]) -> bytes:
    """The JSON array of the messages' objects."""
    return b"[" + b",".join(message.body for message in messages) + b"]"


class WebhookSink:
    """POSTs batches to one URL; ``send`` returns once the batch is acknowledged or given up."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._client: httpx.AsyncClient | None = None

    @property
    def batch(self) -> int:
        return self.settings.batch

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.settings.timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def send(self, messages: Sequence[Message]) -> None:
        assert self._client is not None, "start() first"
        body = batch_body(messages)
        settings = self.settings
        give_up = time.monotonic() + settings.retry_for
        delay = settings.backoff_initial
        while True:
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: signature(settings.secret, timestamp, body)}
            try:
                response = await self._client.post(settings.url, content=body, headers=headers)
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
            if time.monotonic() + delay > give_up:
                log.error("webhook %s: gave up a batch of %d records after retrying for %.0f s "
                          "(%s)", self.name, len(messages), settings.retry_for, problem)
                return
            log.warning("webhook %s: batch not acknowledged (%s); again in %.1f s", self.name,
                        problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.backoff_max)
