"""The ``mta-logging`` command.

Each subcommand lives in the module of the part it belongs to; that module provides
``add_arguments(parser)`` and ``run(args) -> int``. This file only dispatches, and imports a
subcommand's module only when that subcommand is used (the relay's SMTP stack is not loaded to
check a config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mta_logging import __version__
from mta_logging.errors import MtaLoggingError
from mta_logging.stdout import stdout_reader_may_leave

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "relay": ("mta_logging.relay.cli", "run the SMTP relay that writes accounting files"),
    "queue": ("mta_logging.relay.queue_cli", "list the relay's queue; flush, hold, release, "
              "bounce or delete messages"),
    "report": ("mta_logging.report.cli", "summarise accounting files (table, JSON, CSV, HTML)"),
    "grep": ("mta_logging.report.grep", "print the accounting records that match filters"),
    "ship": ("mta_logging.ship.shipper", "ship accounting records to NATS JetStream and webhooks"),
    "ingest": ("mta_logging.ship.ingest", "write records from NATS JetStream into PostgreSQL"),
    "check-config": ("mta_logging.check_config", "validate a config file and print the settings"),
    "classify": ("mta_logging.classify_cli", "print the bounce category of a reply and the rule"
                 " that gave it"),
    "export": ("mta_logging.report.export", "copy accounting records into Parquet files"),
    "sql": ("mta_logging.report.sql", "query accounting records with SQL (DuckDB)"),
    "suppression": ("mta_logging.relay.suppression_cli", "list, add, remove, import or export the "
                    "relay's suppressed recipients (CSV)"),
    "ingest-bounce": ("mta_logging.returns.cli", "record returned mail (DSNs, ARF complaints) "
                      "from files, mboxes or Maildirs as rb and f records"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_for(argv)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        with stdout_reader_may_leave():
            return int(module.run(args) or 0)
        return 0  # the reader of the output went away: that is no failure
    except MtaLoggingError as exc:
        print(f"mta-logging {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """A parser that knows the arguments of the subcommand named in ``argv``."""
    parser = argparse.ArgumentParser(
        prog="mta-logging",
        description="Accounting files for outbound mail: relay, reports, config checks.",
    )
    parser.add_argument("--version", action="version", version=f"mta-logging {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
