"""How well the built-in bounce rules generalise: accuracy per source mail system.

    .venv/bin/python benchmarks/classify_crossval.py            # the table
    .venv/bin/python benchmarks/classify_crossval.py --misses   # plus the misses of the
                                                                # groups rules may be written on

The Sisimai rows (``tests/data/bounce_sisimai_train.tsv``) are grouped by the mail system that
wrote the bounce, taken from the corpus file name in ``source``
(``set-of-emails/maildir/bsd/lhost-postfix-01.eml`` -> ``lhost-postfix``). A fixed hash of the
group name sets a quarter of the groups aside (:func:`held_out`): rules are written looking only
at the other groups' misses (``--misses`` never prints a held-out row unless
``--show-held-out`` is given), and the held-out groups' accuracy is the measure of replies from
mail systems the rules never saw. The table also gives every group's accuracy on its own, the
hand-labelled samples and the extra replies collected from public sources.
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
HELD_OUT_BUCKETS = 4  # one group in four is held out


@dataclass(frozen=True, slots=True)
class Case:
    """One labelled reply: what the classifier gets, what it should say, where it comes from."""

    code: int | None
    enhanced: str | None
    text: str
    category: str
    group: str


def read_cases(name: str) -> list[Case]:
    """The rows of a labelled file under ``tests/data``: the Sisimai rows grouped by the mail
    system in their ``source``, the others by the file's name."""
    with open(DATA / name, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [
        Case(
            int(row["code"]) if row["code"].strip() else None,
            row["enhanced"].strip() or None,
            row["text"],
            row["category"],
            group_of(row["source"]) if name == SISIMAI
            else row["source"].split(":", 1)[0] if name == HELD_OUT else name,
        )
        for row in rows
    ]


def group_of(source: str) -> str:
    """The mail system a Sisimai corpus file comes from: its name without the number."""
    name = source.rsplit("/", 1)[-1]
    stem = name.removesuffix(".eml")
    head, _, number = stem.rpartition("-")
    return head if number.isdigit() and head else stem


def held_out(group: str) -> bool:
    """Whether ``group`` is set aside: a fixed hash, so the choice never follows the rules."""
    return hashlib.sha256(group.encode("utf-8")).digest()[0] % HELD_OUT_BUCKETS == 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true",
                        help="print the misses of the groups that are not held out")
    parser.add_argument("--show-held-out", action="store_true",
                        help="with --misses, print the held-out groups' misses too")
    args = parser.parse_args(argv)
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
    for name in ("bounce_samples.tsv", "bounce_extra.tsv"):
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
    if args.misses:
        print()
        print("\n".join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
