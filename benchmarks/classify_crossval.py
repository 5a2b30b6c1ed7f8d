"""How well the built-in bounce rules generalise: accuracy per source mail system.

    .venv/bin/python benchmarks/classify_crossval.py            # the table
    .venv/bin/python benchmarks/classify_crossval.py --misses   # plus the misses of the
                                                                # groups rules may be written on
    .venv/bin/python benchmarks/classify_crossval.py --extra replies.tsv   # a set of your own

The Sisimai rows (``tests/data/bounce_sisimai_train.tsv``) are grouped by the mail system that
wrote the bounce, taken from the corpus file name in ``source``
(``set-of-emails/maildir/bsd/lhost-postfix-01.eml`` -> ``lhost-postfix``). A fixed hash of the
group name sets a quarter of the groups aside (:func:`held_out`): rules are written looking only
at the other groups' misses (``--misses`` never prints a held-out row unless
``--show-held-out`` is given), and the held-out groups' accuracy is the measure of replies from
mail systems the rules never saw. The table also gives every group's accuracy on its own, the
hand-labelled samples and the extra replies collected from public sources.

``--extra PATH`` scores a labelled set kept outside the repository (replies copied from
third-party pages, whose text is not ours to commit): a TSV file with the columns ``code``,
``enhanced``, ``text``, ``category`` and ``source``, the mail system that wrote the reply being
the part of ``source`` before its first ``:`` (``comcast: postmaster.comcast.net/...``). The
same hash splits its mail systems in two halves (:func:`half_of`): rules are written looking at
the misses of the first half only, and the second half is the measure of mail systems the
rules never saw. The table gives each half per mail system and per category.

``tests/data/bounce_heldout_f.tsv`` (set F) is scored on every run: its total, each half of its
mail systems by the same hash, its rows without the ones marked doubtful, and each category,
counts only. It is never looked at while rules are written: its rows, its misses and its
per-system figures are printed only with ``--misses --show-held-out``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mta_logging.classify import Classifier, default_classifier  # noqa: E402

DATA = ROOT / "tests" / "data"
SISIMAI = "bounce_sisimai_train.tsv"
HELD_OUT = "bounce_heldout.tsv"  # never looked at while writing rules: see its rows' sources
SET_F = "bounce_heldout_f.tsv"  # set F: never looked at while writing rules (tests/data/README.md)
HELD_OUT_BUCKETS = 4  # one group in four is held out


@dataclass(frozen=True, slots=True)
class Case:
    """One labelled reply: what the classifier gets, what it should say, where it comes from."""

    code: int | None
    enhanced: str | None
    text: str
    category: str
    group: str
    doubtful: bool = False


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a labelled TSV file (``code``, ``enhanced``, ``text``, ``category``,
    ``source``...), each as a mapping from column to field."""
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))


def case_of(row: dict[str, str], group: str) -> Case:
    """The labelled reply of one row, in ``group``; doubtful when its ``doubtful`` column (if
    any) says ``yes``."""
    return Case(
        int(row["code"]) if row["code"].strip() else None,
        row["enhanced"].strip() or None,
        row["text"],
        row["category"],
        group,
        (row.get("doubtful") or "").strip().lower().startswith("yes"),
    )


def read_cases(name: str) -> list[Case]:
    """The rows of a labelled file under ``tests/data``: the Sisimai rows grouped by the mail
    system in their ``source``, the others by the file's name."""
    return [
        case_of(
            row,
            group_of(row["source"]) if name == SISIMAI
            else system_of(row["source"]) if name == HELD_OUT else name,
        )
        for row in read_rows(DATA / name)
    ]


def read_set_f(path: Path | None = None) -> list[Case]:
    """The rows of set F (``tests/data/bounce_heldout_f.tsv``), grouped by :func:`system_of`."""
    return read_extra(path if path is not None else DATA / SET_F)


def read_extra(path: Path) -> list[Case]:
    """The rows of a labelled file outside the repository, grouped by :func:`system_of`."""
    return [case_of(row, system_of(row["source"])) for row in read_rows(path)]


def system_of(source: str) -> str:
    """The mail system a ``source`` field names: its text before the first ``:``."""
    return source.split(":", 1)[0].strip()


def group_of(source: str) -> str:
    """The mail system a Sisimai corpus file comes from: its name without the number."""
    name = source.rsplit("/", 1)[-1]
    stem = name.removesuffix(".eml")
    head, _, number = stem.rpartition("-")
    return head if number.isdigit() and head else stem


def held_out(group: str) -> bool:
    """Whether ``group`` is set aside: a fixed hash, so the choice never follows the rules."""
    return _hash_byte(group) % HELD_OUT_BUCKETS == 0


def half_of(group: str) -> int:
    """Which half of an ``--extra`` set ``group`` is in: 1, whose misses rules may be written
    on, or 2, held out. The same fixed hash as :func:`held_out`."""
    return 2 if _hash_byte(group) % 2 == 0 else 1


def _hash_byte(group: str) -> int:
    return hashlib.sha256(group.encode("utf-8")).digest()[0]


def score(classifier: Classifier, cases: Iterable[Case]) -> tuple[int, int, list[str]]:
    """Right answers, total and one line per miss."""
    right = total = 0
    misses = []
    for case in cases:
        total += 1
        got = classifier.classify(case.code, case.enhanced, case.text)
        if got == case.category:
            right += 1
        else:
            misses.append(
                f"[{case.group}] want {case.category}, got {got}: {case.code or ''} "
                f"{case.enhanced or ''} {case.text[:160]}"
            )
    return right, total, misses


def percent(right: int, total: int) -> str:
    return f"{100 * right / total:.1f} %" if total else "-"


def print_extra(classifier: Classifier, path: Path, show_held_out: bool) -> list[str]:
    """Print the tables of an ``--extra`` set; return the misses to show (the first half's,
    and the second's too when ``show_held_out``)."""
    cases = read_extra(path)
    systems = sorted({case.group for case in cases}, key=lambda name: (half_of(name), name))
    print()
    print(f"| {path.name}: mail system | half | rows | right | accuracy |")
    print("|---|---:|---:|---:|---:|")
    shown: list[str] = []
    for system in systems:
        right, total, misses = score(classifier, [c for c in cases if c.group == system])
        print(f"| {system} | {half_of(system)} | {total} | {right} | {percent(right, total)} |")
        if half_of(system) == 1 or show_held_out:
            shown.extend(misses)
    print()
    print(f"| {path.name}: half | mail systems | rows | right | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for half in (1, 2):
        right, total, _ = score(classifier, [c for c in cases if half_of(c.group) == half])
        count = sum(1 for system in systems if half_of(system) == half)
        label = "1 (rules may be written on its misses)" if half == 1 else "2 (held out)"
        print(f"| {label} | {count} | {total} | {right} | {percent(right, total)} |")
    print()
    print(f"| {path.name}: category | half 1 rows | right | accuracy | half 2 rows | right "
          "| accuracy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for category in sorted({case.category for case in cases}):
        cells = []
        for half in (1, 2):
            right, total, _ = score(classifier, [
                c for c in cases if c.category == category and half_of(c.group) == half])
            cells.append(f"{total} | {right} | {percent(right, total)}")
        print(f"| {category} | {' | '.join(cells)} |")
    return shown


def print_set_f(classifier: Classifier, cases: list[Case], show_held_out: bool) -> list[str]:
    """Print set F's counts: all rows, each half of its mail systems, the rows not marked
    doubtful, each category. Its rows and misses are returned (and its mail systems printed)
    only when ``show_held_out``; otherwise nothing of a row is printed."""
    systems = {case.group for case in cases}
    print()
    print(f"| {SET_F} (set F, held out) | mail systems | rows | right | accuracy |")
    print("|---|---:|---:|---:|---:|")
    parts: list[tuple[str, list[Case]]] = [("all", cases)]
    for half in (1, 2):
        parts.append((f"half {half}", [c for c in cases if half_of(c.group) == half]))
    parts.append(("not doubtful", [c for c in cases if not c.doubtful]))
    for half in (1, 2):
        parts.append((f"half {half}, not doubtful",
                      [c for c in cases if half_of(c.group) == half and not c.doubtful]))
    for label, part in parts:
        right, total, _ = score(classifier, part)
        count = len({c.group for c in part})
        print(f"| {label} | {count} | {total} | {right} | {percent(right, total)} |")
    print()
    print(f"| {SET_F}: category | rows | right | accuracy | not doubtful | right | accuracy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for category in sorted({case.category for case in cases}):
        cells = []
        for part in ([c for c in cases if c.category == category],
                     [c for c in cases if c.category == category and not c.doubtful]):
            right, total, _ = score(classifier, part)
            cells.append(f"{total} | {right} | {percent(right, total)}")
        print(f"| {category} | {' | '.join(cells)} |")
    if not show_held_out:
        return []
    print()
    print(f"| {SET_F}: mail system | half | rows | right | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for system in sorted(systems, key=lambda name: (half_of(name), name)):
        right, total, _ = score(classifier, [c for c in cases if c.group == system])
        print(f"| {system} | {half_of(system)} | {total} | {right} | {percent(right, total)} |")
    return score(classifier, cases)[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true",
                        help="print the misses of the groups that are not held out")
    parser.add_argument("--show-held-out", action="store_true",
                        help="with --misses, print the held-out groups' misses too, and set F's "
                             "mail systems and misses")
    parser.add_argument("--extra", type=Path, action="append", default=[], metavar="PATH",
                        help="also score this labelled TSV file (code, enhanced, text, "
                             "category, source), by mail system in two hash-chosen halves; "
                             "may be repeated")
    args = parser.parse_args(argv)
    for path in args.extra:
        if path.resolve() == (DATA / SET_F).resolve():
            parser.error(f"{SET_F} is scored on every run; its misses print only with "
                         "--misses --show-held-out")
    classifier = default_classifier()

    by_group: dict[str, list[Case]] = defaultdict(list)
    for case in read_cases(SISIMAI):
        by_group[case.group].append(case)

    print("| group | held out | rows | right | accuracy |")
    print("|---|---|---:|---:|---:|")
    totals = {True: [0, 0], False: [0, 0]}
    shown: list[str] = []
    for group in sorted(by_group, key=lambda name: (not held_out(name), name)):
        right, total, misses = score(classifier, by_group[group])
        aside = held_out(group)
        totals[aside][0] += right
        totals[aside][1] += total
        print(f"| {group} | {'yes' if aside else ''} | {total} | {right} "
              f"| {percent(right, total)} |")
        if not aside or args.show_held_out:
            shown.extend(misses)
    print()
    print("| set | rows | right | accuracy |")
    print("|---|---:|---:|---:|")
    for label, aside in (("Sisimai, held-out groups", True), ("Sisimai, other groups", False)):
        right, total = totals[aside]
        print(f"| {label} | {total} | {right} | {percent(right, total)} |")
    for name in ("bounce_samples.tsv", "bounce_extra.tsv", "bounce_set_g.tsv",
                 "bounce_set_h.tsv", "bounce_sisimai_phrases.tsv"):
        right, total, misses = score(classifier, read_cases(name))
        print(f"| {name} | {total} | {right} | {percent(right, total)} |")
        shown.extend(misses)
    held = read_cases(HELD_OUT)
    right, total, misses = score(classifier, held)
    print(f"| {HELD_OUT} (held out) | {total} | {right} | {percent(right, total)} |")
    if args.show_held_out:
        shown.extend(misses)
    print()
    print(f"| {HELD_OUT}: mail system | rows | right | accuracy |")
    print("|---|---:|---:|---:|")
    for system in sorted({case.group for case in held}):
        right, total, _ = score(classifier, [case for case in held if case.group == system])
        print(f"| {system} | {total} | {right} | {percent(right, total)} |")
    print()
    print("| category (all held-out rows) | rows | right | accuracy |")
    print("|---|---:|---:|---:|")
    aside = held + [case for case in read_cases(SISIMAI) if held_out(case.group)]
    for category in sorted({case.category for case in aside}):
        right, total, _ = score(classifier, [case for case in aside if case.category == category])
        print(f"| {category} | {total} | {right} | {percent(right, total)} |")
    set_f_misses = print_set_f(classifier, read_set_f(), args.misses and args.show_held_out)
    for path in args.extra:
        shown.extend(print_extra(classifier, path, args.show_held_out))
    if args.misses:
        shown.extend(set_f_misses)
        print()
        print("\n".join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
