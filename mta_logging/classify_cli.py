"""``mta-logging classify [TEXT | -]``: the bounce category of a reply, and why.

For operators writing their own rules: prints the category, the rule that gave it (file, line
and the rule as written), which part of the failure decided (the embedded reply's own words,
the wrapper's words around it, the enhanced status, the reply code) and what was pulled out of
the text (reply code, enhanced status, the remote server's words, the wrapper it was found in).
``-`` (or no TEXT) reads the text from standard input, all of it as one failure (a multi-line
reply or bounce text). ``--rules FILE`` puts a rules file in front of the built-in rules, as
:meth:`Classifier.from_files` does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from mta_logging.classify import Classifier, Verdict
from mta_logging.reply import parse_status

_TABS = re.compile(r"\t+")
_LABELS = ("category", "rule", "decided", "code", "status", "reply", "wrapper", "command", "host")
_WIDTH = max(map(len, _LABELS)) + 2
_DECIDED = {"reply": "embedded reply", "wrapper": "wrapper", "status": "status", "code": "code",
            "any": "any failure"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", default="-", metavar="TEXT",
                        help="the reply text or failure description; '-' (the default) reads "
                             "standard input")
    parser.add_argument("--rules", action="append", default=[], metavar="FILE",
                        help="a rules file tried before the built-in rules (repeatable; the "
                             "first given is tried first)")
    parser.add_argument("--code", type=_reply_code, metavar="CODE",
                        help="the SMTP reply code, when the text does not start with it")
    parser.add_argument("--status", type=_enhanced_status, metavar="X.Y.Z",
                        help="the RFC 3463 enhanced status, when the text does not carry it")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    verdict = Classifier.from_files(args.rules).explain(args.code, args.status, text)
    if args.json:
        print(json.dumps(as_json(verdict), ensure_ascii=False))
    else:
        sys.stdout.write(as_text(verdict))
    return 0


def as_text(verdict: Verdict) -> str:
    """The verdict as labelled lines, ``-`` for what is unknown."""
    rule = verdict.rule
    found = verdict.found
    values = (
        verdict.category,
        "- (no rule applies)" if rule is None else f"{rule.origin}: {_TABS.sub(chr(9), rule.line)}",
        _DECIDED.get(verdict.part, "-"),
        "-" if verdict.code is None else str(verdict.code),
        verdict.enhanced or "-",
        found.reply.text or "-",
        found.wrapper or "-",
        found.command or "-",
        found.host or "-",
    )
    return "".join(f"{label + ':':<{_WIDTH}}{value}\n" for label, value in zip(_LABELS, values,
                                                                                strict=True))


def as_json(verdict: Verdict) -> dict[str, Any]:
    """The verdict as a JSON object; ``null`` for what is unknown."""
    rule = verdict.rule
    found = verdict.found
    return {
        "category": verdict.category,
        "rule": None if rule is None else {"origin": rule.origin, "line": rule.line},
        "decided": verdict.part or None,
        "code": verdict.code,
        "status": verdict.enhanced,
        "reply": {"code": found.reply.code, "status": found.reply.enhanced,
                  "text": found.reply.text},
        "wrapper": found.wrapper or None,
        "command": found.command or None,
        "host": found.host or None,
    }


def _reply_code(value: str) -> int:
    if not (value.isdigit() and len(value) == 3 and value[0] in "2345"):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not valid; expected an SMTP reply code such as 550")
    return int(value)


def _enhanced_status(value: str) -> str:
    if parse_status(value) is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not valid; expected an RFC 3463 status such as 5.1.1")
    return value.strip()
