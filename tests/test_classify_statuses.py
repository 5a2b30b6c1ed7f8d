"""The built-in rules on failures whose enhanced status or reply code is all that decides, as
``docs/categories.md`` documents them: every status of the IANA registry, each class, and the
basic reply codes (issue 18: the fallback from the status as right as the registry allows).

The tables are read from the page itself, so that the page and the rules cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mta_logging.classify import CATEGORIES, bounce_category

PAGE = Path(__file__).resolve().parent.parent / "docs" / "categories.md"
# Words that give no reason: the status or the code decides.
NEUTRAL = "Rejected (S1234)"
# A lead-in that introduces a refusal without its reason: only a deciding status beats it.
LEAD_IN = "Access denied"
# Reply codes that no rule of their own explains, one a class
NO_CODE_RULE = {"4": 451, "5": 554}


def registry_rows() -> list[tuple[str, str, str]]:
    """(status, category cell, note) of each row of the page's status table."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Enhanced status codes", 1)[1]
    rows = re.findall(r"^\| (x\.\d+\.\d+) \|[^|]+\|([^|]+)\|([^|]*)\|$", section, re.M)
    return [(status, cell.strip(), note.strip()) for status, cell, note in rows]


def expected(cell: str, klass: str, status: str) -> tuple[str, bool]:
    """The category a cell gives a status of class ``klass``, and whether it decides."""
    # "routing-errors; `5.4.4` bad-domain": a class of its own
    general, _, special = cell.partition(";")
    if special:
        found = re.fullmatch(r"\s*`([\d.]+)` (\S+)", special)
        assert found is not None, cell
        code, category = found.groups()
        if code == f"{klass}{status[1:]}":
            return category, False
    name, _, decides = general.partition(",")
    category = "other" if name.strip() == "(reply code)" else name.strip()
    return category, decides.strip() == "decides"


def test_the_page_lists_every_registered_status_once_with_a_known_category() -> None:
    rows = registry_rows()
    statuses = [status for status, _, _ in rows]
    assert len(statuses) == len(set(statuses))
    # the registry's details per subject (x.0.0; x.1.0-x.1.10; x.2.0-x.2.4; x.3.0-x.3.6; x.4.0-
    # x.4.7; x.5.0-x.5.6; x.6.0-x.6.10; x.7.0-x.7.30)
    wanted = {"x.0.0"} | {
        f"x.{subject}.{detail}"
        for subject, last in ((1, 10), (2, 4), (3, 6), (4, 7), (5, 6), (6, 10), (7, 30))
        for detail in range(last + 1)
    }
    assert set(statuses) == wanted
    for status, cell, _ in rows:
        for klass in "45":
            category, _ = expected(cell, klass, status)
            assert category in CATEGORIES, (status, cell)


@pytest.mark.parametrize("klass", ["4", "5"])
@pytest.mark.parametrize(("status", "cell"), [(s, c) for s, c, _ in registry_rows()])
def test_a_status_alone_gets_the_category_the_page_gives_it(
    status: str, cell: str, klass: str
) -> None:
    enhanced = klass + status[1:]
    category, _ = expected(cell, klass, status)
    assert bounce_category(NO_CODE_RULE[klass], enhanced, NEUTRAL) == category


@pytest.mark.parametrize(
    ("status", "cell"), [(s, c) for s, c, _ in registry_rows() if c.endswith("decides")]
)
def test_a_deciding_status_beats_words_that_give_no_reason(status: str, cell: str) -> None:
    klass = "4" if status == "x.4.1" else "5"  # 4.4.1 decides, 5.4.1 does not
    category, decides = expected(cell, klass, status)
    assert decides
    assert bounce_category(NO_CODE_RULE[klass], klass + status[1:], LEAD_IN) == category


def test_a_status_that_does_not_decide_loses_to_a_lead_in() -> None:
    # x.1.10 is Exchange Online's recipient not found as well as RFC 7505's null MX; x.4.4
    # Postfix's unknown host as well as a routing failure: words that say more decide
    assert bounce_category(550, "5.1.10", "Recipient not found by SMTP address lookup") == (
        "bad-mailbox")
    assert bounce_category(550, "5.7.27", "Sender rejected") == "spam-related"
    assert bounce_category(421, "4.7.28", "Rate limited: too many connections") == (
        "policy-related")


def test_a_reason_in_words_beats_a_status_that_says_something_else() -> None:
    assert bounce_category(550, "5.7.1", "Mailbox full") == "quota-issues"
    assert bounce_category(550, "5.7.1", "No such user here") == "bad-mailbox"
    assert bounce_category(550, "5.1.1", "Mailbox full") == "quota-issues"
    assert bounce_category(550, "5.1.1", "Access denied") == "bad-mailbox"
    assert bounce_category(550, "5.7.23", "Message rejected") == "policy-related"


def test_a_status_outside_the_registry_goes_by_its_subject_where_the_page_says_so() -> None:
    assert bounce_category(554, "5.4.316", NEUTRAL) == "routing-errors"
    assert bounce_category(554, "5.5.9", NEUTRAL) == "protocol-errors"
    assert bounce_category(554, "5.6.11", NEUTRAL) == "content-related"
    assert bounce_category(554, "5.7.124", NEUTRAL) == "policy-related"
    # x.1, x.2 and x.3 have no subject-wide row: the code decides
    assert bounce_category(554, "5.2.121", NEUTRAL) == "other"
    assert bounce_category(550, "5.2.121", NEUTRAL) == "bad-mailbox"


def basic_codes() -> list[tuple[int, str]]:
    """(code, category) of the page's paragraph on basic reply codes."""
    text = PAGE.read_text(encoding="utf-8")
    paragraph = text.split("With no status, the basic reply code decides", 1)[1]
    pairs: list[tuple[int, str]] = []
    for clause in re.split(r";|\.\n|\.$", paragraph.split(":", 1)[1]):
        codes = re.findall(r"`(\d{3})`(?:[–-]`(\d{3})`)?", clause)
        names = [name for name in CATEGORIES if re.search(rf"\b{name}\b", clause)]
        if not codes:
            continue
        category = names[-1] if names else "other"
        for first, last in codes:
            for code in range(int(first), int(last or first) + 1):
                pairs.append((code, category))
    return pairs


def test_the_page_names_the_basic_reply_codes() -> None:
    codes = dict(basic_codes())
    assert codes[421] == "bad-connection"
    assert codes[503] == "protocol-errors"
    assert codes[450] == codes[451] == codes[554] == "other"
    assert len(codes) == 23


@pytest.mark.parametrize(("code", "category"), basic_codes())
def test_a_reply_code_alone_gets_the_category_the_page_gives_it(code: int, category: str) -> None:
    assert bounce_category(code, None, NEUTRAL) == category
