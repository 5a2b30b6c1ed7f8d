"""The same records with no mta_logging configuration code: plain dictConfig of logging.yaml.

    python examples/dictconfig_app.py          # from the repository root

Any logger works: here the application logs through ``logging.getLogger("mta.accounting")``
with the outcome passed in ``extra`` — the way to add accounting to code that already logs.
"""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

import yaml

from mta_logging import Kind, Outcome

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    with open(ROOT / "logging.yaml", encoding="utf-8") as config:
        logging.config.dictConfig(yaml.safe_load(config))
    log = logging.getLogger("mta.accounting")
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="bob@example.com", job_id="42",
                      dsn_status="2.0.0", dsn_msg="250 2.0.0 OK")
    log.info("delivered %s", outcome.rcpt, extra={"outcome": outcome})
    logging.shutdown()


if __name__ == "__main__":
    main()
