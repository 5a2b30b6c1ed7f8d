"""µs per bounce classification, next to the cost of writing the bounce record it goes into.

    .venv/bin/python benchmarks/bench_classify.py           # 20 rounds of 0.25 s each, ~25 s
    .venv/bin/python benchmarks/bench_classify.py --quick   # 3 short rounds

The replies are every row of the three labelled files in ``tests/data`` (hand-labelled samples,
real Sisimai bounces, replies from public sources; wrapped bounce texts among them), taken in
turn with the code and status each row gives. Rows:

* ``Classifier(builtin_rules(), remember=0).classify(...)``: the built-in rules, every reply
  classified as if never seen: the cost of a new reply (its words, though, have been seen: the
  pre-filter remembers which rule phrases each word it met holds);
* the same with a never-seen recipient address appended to each text (``<r12345@example.org>``,
  one new word per reply, from a counter of the row's own), as real bounces differ: the cost
  of a new reply with a new word;
* ``bounce_category(code, status, text)``: the same through the shared default classifier,
  which remembers the answers for the last 4,096 distinct replies (the same reply for many
  recipients, as large providers send it, is classified once): the replies taken in turn
  (666 when written) are all remembered after the warm-up, so this row is the cost of a reply
  seen before;
* ``Classifier.builtin()`` (remembering answers as the default one does, but its own: the new
  addresses would push the other rows' replies out of the shared one), each reply with a
  never-seen address: what real traffic costs, the same reply coming back for another
  recipient (no cache key can leave the address out exactly, see the README);
* ``find_reply(text)``: pulling the reply out of a wrapper text alone (the classifier does it
  only when the caller does not give the code or a specific status);
* ``bounced(..., bounce_cat=...)``: writing the bounce record with its category given, through
  ``AccountingLogger`` to a real file (archiving on, the writer of ``bench_write.py``);
* ``bounced(...)``: the same record with the category left to the classifier, as the relay and
  most callers write it.

Everything runs in this one process, in turns within each round, so that a slow spell of the
shared machine slows every row of that round: a ratio is the median of the same-round ratios.

Measured (issue 18, 2 loaded cores; × writing the record, and instructions under callgrind
with ``PYTHONHASHSEED=0``, the record about 44,000–55,000):

| row | before | after |
|---|---:|---:|
| a new reply | 2.9–3.2 ×, 145,000 | 2.2–2.9 ×, 119,000 |
| a new reply with a new address | 3.2–4.1 ×, 228,000 | 2.3–2.9 ×, 178,000 |
| ``find_reply(text)`` | 1.1–1.2 × | 0.8–1.4 × |

The rules read in tiers (the embedded reply first, then the wrapper's words) cost a new reply
129,000 instructions, 162,000 with a new address (120,700 and 151,400 counted the same way
just before: classifying the 666 replies in turn after a warm-up of 3,000, 5,000 minus 1,000
replies under callgrind, divided by 4,000).

``bench_instructions.py --classify`` counts each row's instructions per call. Issue 18's
"speed held", before → after one scan of a text's words for the rules and the wrapper
markers, ``find_reply`` building its reply once (``reply_codes`` for a text without
markers), non-ASCII texts looked up through their words and literal alternatives matched
without their patterns (``--quick``; the µs of ``--rounds 6 --seconds 0.2``, one run each on
a machine with a load average of 5–6 on 2 cores, so only roughly):

| row | instructions before | after | µs before | after |
|---|---:|---:|---:|---:|
| a new reply | 130,089 (3.00 ×) | 108,692 (2.59 ×) | 64 (4.2 ×) | 40 (2.1 ×) |
| a new reply with a new address | 177,984 | 149,132 | 65 | 97 |
| a reply seen before | 3,774 | 3,774 | 1.3 | 1.4 |
| a reply seen before, with a new address | 182,391 | 152,819 | 77 | 91 |
| ``find_reply(text)`` | 82,307 | 64,259 | 25 | 28 |
| writing the bounce record | 43,385 | 42,024 | 15 | 19 |
"""

from __future__ import annotations

import csv
import itertools
import logging
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, Writer, arguments, configure_ours, machine, measure

from mta_logging import AccountingLogger, bounce_category
from mta_logging.classify import Classifier, builtin_rules
from mta_logging.reply import find_reply

DATA = ROOT / "tests" / "data"
FILES = ("bounce_samples.tsv", "bounce_sisimai_train.tsv", "bounce_extra.tsv")
def replies() -> list[tuple[int | None, str | None, str]]:
    found = []
    for name in FILES:
        with open(DATA / name, encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE):
                code = row["code"].strip()
                found.append((int(code) if code else None, row["enhanced"].strip() or None,
                              row["text"]))
    return found


def dsn_message(code: int | None, enhanced: str | None, text: str) -> str:
    """The reply as a relay would record it in ``dsnMsg``: code and status in front."""
    return " ".join(part for part in (str(code) if code else "", enhanced or "", text) if part)


NEW = "classify a new reply (remember=0)"
NEW_ADDRESS = "classify a new reply with a new address (remember=0)"
SEEN = "bounce_category(code, status, text): a reply seen before"
SEEN_ADDRESS = "classify a reply seen before, with a new address (remember=4096)"
WRITE = "bounced(..., bounce_cat=...): write the record"


def _cases() -> tuple[list[tuple[int | None, str | None, str]], int]:
    cases = replies()
    return cases, len(cases)


def classify_new(directory: Path) -> Writer:
    """Every reply classified as if never seen (its words seen before)."""
    cases, count = _cases()
    forgetful = Classifier(builtin_rules(), remember=0)

    def classify(i: int) -> None:
        forgetful.classify(*cases[i % count])

    return classify


def _addressed(classify: Callable[[int | None, str | None, str], object]) -> Writer:
    """Each reply with an address appended that no call before had (a counter of its own:
    the ``i`` of a benchmark loop starts again at 0)."""
    cases, count = _cases()
    fresh = itertools.count()

    def classify_addressed(i: int) -> None:
        code, enhanced, text = cases[i % count]
        classify(code, enhanced, f"{text} <r{next(fresh)}@example.org>")

    return classify_addressed


def classify_new_address(directory: Path) -> Writer:
    """Every reply classified as if never seen, with a never-seen address in it."""
    return _addressed(Classifier(builtin_rules(), remember=0).classify)


def classify_seen(directory: Path) -> Writer:
    """The shared default classifier, which remembers the answers (all of them, once warm)."""
    cases, count = _cases()

    def classify(i: int) -> None:
        bounce_category(*cases[i % count])

    return classify


def classify_seen_address(directory: Path) -> Writer:
    """A classifier of its own that remembers answers as the default one does (the new
    addresses would push the other rows' replies out of the shared one), each reply with a
    never-seen address in it."""
    return _addressed(Classifier.builtin().classify)


def pull_out(directory: Path) -> Writer:
    """:func:`find_reply` alone."""
    cases, count = _cases()

    def find(i: int) -> None:
        find_reply(cases[i % count][2])

    return find


def _bounced(directory: Path, given: bool) -> Writer:
    cases, count = _cases()
    messages = [dsn_message(*case) for case in cases]
    statuses = [case[1] or "5.0.0" for case in cases]
    configure_ours(directory)
    acct = AccountingLogger()
    category = {"bounce_cat": "other"} if given else {}

    def write(i: int) -> None:
        n = i % count
        acct.bounced(f"user{n:04d}@example.org", dsn_status=statuses[n], dsn_msg=messages[n],
                     **category)

    return write


def write_given(directory: Path) -> Writer:
    """The bounce record written with its category given."""
    return _bounced(directory, given=True)


def write_classified(directory: Path) -> Writer:
    """The bounce record with the category left to the classifier (the replies seen before)."""
    return _bounced(directory, given=False)


IMPLEMENTATIONS: dict[str, Callable[[Path], Writer]] = {
    NEW: classify_new,
    NEW_ADDRESS: classify_new_address,
    SEEN: classify_seen,
    SEEN_ADDRESS: classify_seen_address,
    "find_reply(text)": pull_out,
    WRITE: write_given,
    "bounced(...): write the record, category classified (seen before)": write_classified,
}
"""The rows, each a maker of the i-th call for a directory (``bench_instructions.py
--classify`` counts their instructions)."""


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rounds=20, seconds=0.25)
    directory = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    try:
        rows = {name: make(directory) for name, make in IMPLEMENTATIONS.items()}
        micros: dict[str, list[float]] = {name: [] for name in rows}
        names = list(rows)
        for round_number in range(args.rounds):
            turn = names[round_number % len(names):] + names[:round_number % len(names)]
            for name in turn:
                measured = measure(rows[name], args.seconds, warm_up=round_number == 0)
                micros[name].append(measured.elapsed / measured.count * 1e6)
    finally:
        logging.shutdown()
        shutil.rmtree(directory, ignore_errors=True)

    print(f"Machine: {machine()}; {len(replies())} replies, {args.rounds} rounds of"
          f" {args.seconds} s.")
    print()
    print("| what | µs per call (median round) | middle half of rounds | × writing the record |")
    print("|---|---:|---:|---:|")
    for name, values in micros.items():
        ratios = sorted(a / b for a, b in zip(values, micros[WRITE], strict=True))
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        print(f"| {name} | {statistics.median(values):.1f} | {quartiles[0]:.1f}–{quartiles[-1]:.1f}"
              f" | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
