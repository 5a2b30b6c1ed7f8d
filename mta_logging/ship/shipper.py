"""``mta-logging ship``: tail accounting files and deliver every record to every sink.

Each sink (JetStream, each webhook) follows the files on its own, with its own checkpoints, so
a sink that is down holds back only itself. For each file (active, archived, ``.gz``, left by
a dead process; found under the configured paths in the order they were written) a sink reads
from its checkpoint on and sends the records in batches, the next batch while the one before
is being acknowledged (JetStream's ``window`` caps the unacknowledged publishes); a checkpoint
moves past a batch only once it and every batch before it is acknowledged. After ``kill -9``
at any moment the next run starts at the checkpoint: nothing is skipped, and what is sent
again (at most two batches per sink) carries the same ``eventId``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import os
import zlib
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mta_logging.report.reader import Reader, find_files
from mta_logging.ship import interlock
from mta_logging.ship.checkpoint import Checkpoint, CheckpointStore
from mta_logging.ship.config import ShipSettings, check_shipping, load_ship_settings
from mta_logging.ship.message import Message, message_for
from mta_logging.ship.tail import FileIdentity, identify, read_entries

log = logging.getLogger("mta_logging.ship")


class Sink(Protocol):
    """Where records go. ``send`` returns only when every message is acknowledged (or, for a
    sink configured to give up, given up); it retries on its own."""

    name: str

    @property
    def batch(self) -> int: ...

    async def start(self) -> None: ...

    async def send(self, messages: Sequence[Message]) -> None: ...

    async def close(self) -> None: ...


def sinks_for(settings: ShipSettings) -> list[Sink]:
    """The sinks the settings configure."""
    sinks: list[Sink] = []
    if settings.nats is not None:
        from mta_logging.ship.nats_sink import NatsSink

        sinks.append(NatsSink(settings.nats, settings.host))
    if settings.webhooks:
        from mta_logging.ship.webhook import WebhookSink

        sinks.extend(WebhookSink(hook) for hook in settings.webhooks)
    return sinks


class Shipper:
    """Follows the configured paths for every sink; ``run(once=True)`` ships what there is."""

    def __init__(self, settings: ShipSettings, sinks: Sequence[Sink]) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.stores = {sink.name: CheckpointStore(settings.state_dir, sink.name)
                       for sink in self.sinks}
        self.reader = Reader([], time_format=settings.time_format)

    async def run(self, once: bool = False) -> None:
        """Ship until cancelled; with ``once``, until everything there is now is acknowledged."""
        for sink in self.sinks:
            await sink.start()
        try:
            if self.settings.hold_archives:
                interlock.hold({path.parent for path in self._files()})
            await asyncio.gather(*(self._follow(sink, once) for sink in self.sinks))
            if self.settings.hold_archives:
                self.mark_shipped()
        finally:
            for sink in self.sinks:
                await sink.close()

    def mark_shipped(self) -> None:
        """Mark for retention the files that every sink has acknowledged to their end."""
        directories = set()
        for path in self._files():
            directories.add(path.parent)
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if all(self._done(store, info) for store in self.stores.values()):
                interlock.mark_shipped(path, info.st_size)
        interlock.hold(directories)
        for directory in directories:
            interlock.remove_orphans(directory)

    def _files(self) -> list[Path]:
        return list(find_files(self.settings.paths))

    @staticmethod
    def _done(store: CheckpointStore, info: os.stat_result) -> bool:
        checkpoint = store.by_inode(info.st_dev, info.st_ino)
        return checkpoint is not None and checkpoint.done(info)

    async def _follow(self, sink: Sink, once: bool) -> None:
        store = self.stores[sink.name]
        while True:
            for path in self._files():
                await self._ship_file(sink, store, path)
            if once:
                return
            if self.settings.hold_archives and sink is self.sinks[0]:
                self.mark_shipped()
            await asyncio.sleep(self.settings.poll_interval)

    async def _ship_file(self, sink: Sink, store: CheckpointStore, path: Path) -> None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return  # moved into the archive since the listing: shipped from there
        if self._done(store, info):
            return
        identity = identify(path)
        if identity is None:
            return  # no complete first record yet
        try:
            await self._ship_from_checkpoint(sink, store, path, identity)
        except FileNotFoundError:
            return
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            log.warning("%s: cannot be read to its end (%s); shipped as far as it could be, "
                        "tried again later", path, exc)

    async def _ship_from_checkpoint(self, sink: Sink, store: CheckpointStore, path: Path,
                                    identity: FileIdentity) -> None:
        """Send batches while the one before is still being acknowledged (two in flight at
        most); save each batch's checkpoint once it and every batch before it is done."""
        fingerprint = identity.fingerprint
        checkpoint = store.get(fingerprint)
        offset, line = (checkpoint.offset, checkpoint.line) if checkpoint else (0, 0)
        host = self.settings.host
        batch: list[Message] = []
        in_flight: deque[tuple[asyncio.Task[None], Checkpoint]] = deque()

        def reached(size: int) -> Checkpoint:
            return Checkpoint(fingerprint, offset, line, identity.device, identity.inode, size,
                              identity.mtime_ns, str(path))

        async def settle(keep: int) -> None:
            while len(in_flight) > keep:
                sending, checkpoint = in_flight[0]
                await sending
                in_flight.popleft()
                store.save(checkpoint)

        try:
            for entry in read_entries(path, self.reader, offset, line):
                if entry.record is not None:
                    batch.append(message_for(entry.record, host, fingerprint, entry.offset))
                offset, line = entry.end, entry.line
                if len(batch) >= sink.batch:
                    in_flight.append((asyncio.create_task(sink.send(batch)), reached(-1)))
                    batch = []
                    await settle(1)
            if batch:
                in_flight.append((asyncio.create_task(sink.send(batch)), reached(-1)))
            await settle(0)
        finally:
            for sending, _checkpoint in in_flight:
                sending.cancel()  # not acknowledged: sent again from the last checkpoint
        store.save(reached(identity.size))  # read to its end at this size: done until it grows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the ship config (YAML): paths, state_dir, host, nats, webhooks")
    parser.add_argument("--once", action="store_true",
                        help="ship everything there is, wait for every acknowledgement, exit")


def run(args: argparse.Namespace) -> int:
    settings = load_ship_settings(args.config)
    check_shipping(settings, args.config)
    sinks = sinks_for(settings)
    logging.basicConfig(level=logging.INFO, format="mta-logging ship: %(message)s")
    # httpx logs every request at INFO ("HTTP Request: POST ... 200 OK"); its failures the
    # webhook sink logs itself
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(Shipper(settings, sinks).run(once=args.once))
    return 0
