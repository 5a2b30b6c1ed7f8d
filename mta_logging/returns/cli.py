"""``mta-logging ingest-bounce PATH...``: returned mail collected elsewhere, into records.

Each PATH is a message file, an mbox (a file whose first line starts with ``From ``), a
Maildir (a directory with ``cur``/``new``) or another directory (every file in it, sorted,
recursively). Each message is handled as the relay handles mail to its bounce domains and
complaint addresses (:class:`~mta_logging.returns.recorder.ReturnRecorder`): ``rb`` and ``f``
records through the accounting logger that ``--config`` (an accounting INI or YAML file, whose
``records`` must include ``rb`` and ``f``) configures; what parses as neither is copied into
``--quarantine DIR``. With ``--verp-domain`` and ``--verp-secret-file`` VERP return paths in the
delivery headers are decoded; ``--sent-index`` (the relay's ``sent.sqlite``) traces the rest by
Message-ID. With ``--suppression FILE`` (the relay's suppression list, ``spool_dir/suppression.db``)
hard bounces and complaints put their recipient on that list, with the default expiry times,
as the relay's own returned mail does.

Each message handled (recorded, or quarantined) is remembered by its SHA-256 in ``--ingested
FILE`` (default: ``.ingested`` in the quarantine directory; see
:mod:`~mta_logging.returns.ingested`), and a later run skips it: the same Maildir read by a
cron job is recorded once. A message whose record could not be written is not remembered.
``--again`` handles the messages handled before too (the quarantine fed back after a change
of options).

Prints one summary line. Exit status: 0 every message was recorded (or reported no failed
recipient), 1 some were quarantined, 2 a bad argument or config, an input that could not be
read, a message that could not be quarantined (what was handled before stays recorded) or a
record that could not be written.
"""

from __future__ import annotations

import argparse
import logging
import mailbox
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from mta_logging.config import configure, load
from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.outcome import Kind
from mta_logging.returns.ingested import IngestedMessages, digest
from mta_logging.returns.quarantine import Quarantine
from mta_logging.returns.recorder import (
    BOUNCE,
    COMPLAINT,
    NO_FAILURE,
    QUARANTINED,
    ReturnRecorder,
)
from mta_logging.returns.sent import SentIndex
from mta_logging.suppression import SuppressionHandler, SuppressionList, put_first
from mta_logging.verp import Verp, read_secret

INGESTED_NAME = ".ingested"  # the default list of messages handled, in the quarantine directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="message files, mboxes, Maildirs or directories of messages")
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="accounting config (INI or YAML) with records including rb,f")
    parser.add_argument("--quarantine", required=True, metavar="DIR",
                        help="where messages that are neither a bounce nor a complaint are kept")
    parser.add_argument("--verp-domain", metavar="DOMAIN", help="the VERP bounce domain")
    parser.add_argument("--verp-prefix", default="bounces", metavar="TEXT",
                        help="the VERP local-part prefix (default: bounces)")
    parser.add_argument("--verp-secret-file", metavar="FILE",
                        help="the file holding the VERP secret (needed with --verp-domain)")
    parser.add_argument("--sent-index", metavar="FILE",
                        help="the relay's sent index (sent.sqlite in its spool directory)")
    parser.add_argument("--ingested", metavar="FILE",
                        help="the list of messages handled before, which are skipped "
                             "(default: .ingested in the quarantine directory)")
    parser.add_argument("--again", action="store_true",
                        help="handle the messages handled before too (e.g. the quarantine fed "
                             "back after a change of options)")
    parser.add_argument("--suppression", metavar="FILE",
                        help="the suppression list that hard bounces and complaints are added "
                             "to (the relay's suppression.db; made when missing)")


def run(args: argparse.Namespace) -> int:
    settings = load(args.config)
    missing = [kind.code for kind in (Kind.REMOTE_BOUNCE, Kind.FEEDBACK)
               if kind not in settings.records]
    if missing:
        raise ConfigError("records", ",".join(k.code for k in settings.records),
                          f"ingest-bounce writes {' and '.join(missing)} records: add them "
                          f"(records: {','.join([*(k.code for k in settings.records), *missing])})",
                          source=args.config)
    verp = _verp(args)
    for path in args.paths:
        if not os.path.exists(path):
            raise MtaLoggingError(f"{path}: no such file or directory")
    # a run already under way, or a list that cannot be opened: exit 2 before anything is read
    ingested = IngestedMessages(args.ingested if args.ingested is not None
                                else Path(args.quarantine) / INGESTED_NAME)
    suppression = None
    if args.suppression is not None:
        SuppressionList(args.suppression).close()  # a file that is no list: exit 2 at once
        suppression = SuppressionHandler(args.suppression)
    configure(settings)
    logger = logging.getLogger(settings.logger)
    if suppression is not None:
        put_first(logger, suppression)
    sent = None if args.sent_index is None else SentIndex(args.sent_index)
    recorder = ReturnRecorder(logger, Quarantine(args.quarantine), verp=verp, sent=sent)
    outcomes: Counter[str] = Counter()
    records: Counter[str] = Counter()
    unwritten = skipped = 0
    try:
        for data in _messages([Path(p) for p in args.paths]):
            key = digest(data)
            if not args.again and ingested.seen(key):
                skipped += 1
                continue
            handled = recorder.handle(data)
            outcomes[handled.what] += 1
            records[handled.what] += handled.records
            unwritten += handled.unwritten
            if not handled.unwritten:
                ingested.add(key)
    except OSError as exc:
        raise MtaLoggingError(f"stopped after {sum(outcomes.values())} messages: "
                              f"{exc.filename or ''}: {exc.strerror}") from None
    finally:
        ingested.close()
        if sent is not None:
            sent.close()
        if suppression is not None:
            logger.removeHandler(suppression)
            suppression.close()
    print(f"ingest-bounce: {sum(outcomes.values())} messages: {outcomes[BOUNCE]} bounces "
          f"({records[BOUNCE]} rb records), {outcomes[COMPLAINT]} complaints "
          f"({records[COMPLAINT]} f records), {outcomes[NO_FAILURE]} without a failed "
          f"recipient, {outcomes[QUARANTINED]} quarantined in {args.quarantine}"
          + (f"; {skipped} ingested before, skipped" if skipped else "")
          + (f"; {unwritten} records could not be written" if unwritten else ""))
    if unwritten:
        return 2
    return 1 if outcomes[QUARANTINED] else 0


def _verp(args: argparse.Namespace) -> Verp | None:
    if args.verp_domain is None and args.verp_secret_file is None:
        return None
    if args.verp_domain is None or args.verp_secret_file is None:
        raise ConfigError("--verp-domain/--verp-secret-file",
                          args.verp_domain or args.verp_secret_file,
                          "expected both options, or neither")
    return Verp(read_secret(args.verp_secret_file, "--verp-secret-file"), args.verp_domain,
                args.verp_prefix)


def _messages(paths: list[Path]) -> Iterator[bytes]:
    """The bytes of every message under ``paths``, in order."""
    for path in paths:
        if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
            maildir = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(maildir.keys()):
                yield maildir.get_bytes(key)
        elif path.is_dir():
            yield from _messages(sorted(p for p in path.iterdir() if not p.name.startswith(".")))
        elif _is_mbox(path):
            box = mailbox.mbox(path, create=False)
            try:
                for key in box.iterkeys():
                    yield box.get_bytes(key, from_=False)
            finally:
                box.close()
        else:
            yield path.read_bytes()


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(5) == b"From "
