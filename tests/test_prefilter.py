"""The pre-filter: numbered patterns, the first that matches, found without trying them all."""

import re
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging import prefilter, speedups
from mta_logging.prefilter import PatternIndex

# The scan of a text's words: in C where the accelerator is built, and the Python it stands for.
OR_WORDS = [prefilter._python_or_words] + (
    [speedups.ACCELERATOR.or_words] if speedups.ACCELERATOR is not None else [])


def compiled(*sources: str) -> dict[int, re.Pattern[str]]:
    return {number * 10: re.compile(source, re.IGNORECASE) for number, source in
            enumerate(sources)}


def test_the_smallest_number_that_matches_wins() -> None:
    index = PatternIndex(compiled(r"mailbox (?:is )?full", r"user unknown|no such user",
                                  r"full"))
    assert index.first_match("Mailbox is FULL") == 0
    assert index.first_match("550 No such user here") == 10
    assert index.first_match("disk full") == 20
    assert index.first_match("nothing known") is None


def test_a_selection_restricts_the_patterns_considered() -> None:
    index = PatternIndex(compiled(r"full", r"mailbox", r"box|mail"))
    assert index.first_match("mailbox full", index.select([10, 20])) == 10
    assert index.first_match("mailbox full", index.select([20])) == 20
    assert index.first_match("mailbox full", index.select([])) is None
    assert index.first_match("no such words", index.select([0, 10, 20])) is None


def test_patterns_that_cannot_be_split_are_kept_whole_and_still_match() -> None:
    index = PatternIndex(compiled(r"(?x) account \s+ (on\ hold)", r"(\w+)-\1 full",
                                  r"(?P<list>BADLIST)|\x41BUSE", r"a|b"))
    assert index.first_match("Account on hold") == 0
    assert index.first_match("box-box full") == 10
    assert index.first_match("reported for abuse") == 20
    assert index.first_match("zzz b") == 30


def test_non_ascii_text_is_matched_like_the_patterns_match_it() -> None:
    # case-insensitive matching pairs the Kelvin sign with "k"; lower() does not
    index = PatternIndex(compiled(r"blocked"))
    assert index.first_match("bloc\u212aed") == 0
    assert index.first_match("BLOCKÉD") is None


def test_non_ascii_text_is_looked_up_through_its_words_as_ascii_text_is() -> None:
    index = PatternIndex(compiled(r"user unknown", r"ユーザー|mailbox", r"rejet", r"\bbad\b"))
    assert index.first_match("Usér unknown") is None
    assert index.first_match("ÉTÉ: USER UNKNOWN") == 0
    assert index.first_match("ユーザーNeko は見つかりません") == 10
    assert index.first_match("Mail rejetée") == 20
    assert index.first_match("très bad") == 30
    assert index.first_match("trèsbad") is None


def test_every_letter_that_matches_an_ascii_one_only_case_insensitively_is_tried() -> None:
    letters = re.compile("[a-z]", re.IGNORECASE)
    pairing = [chr(point) for point in range(0x80, 0x110000) if letters.fullmatch(chr(point))]
    assert pairing  # the Kelvin sign, the long s, the dotted and dotless i
    for char in pairing:
        lower = next(letter for letter in "abcdefghijklmnopqrstuvwxyz"
                     if re.fullmatch(letter, char, re.IGNORECASE))
        index = PatternIndex(compiled(f"mail{lower}box full"))
        assert index.first_match(f"é mail{char}box full") == 0, hex(ord(char))


def test_a_literal_alternative_matches_where_the_text_holds_it() -> None:
    # (matched on the word look-ups and the checks alone, its pattern not tried)
    index = PatternIndex(compiled(r"\[spf\] fail|mail loop", r"quota", r"spf"))
    assert index.first_match("[SPF] FAIL for you") == 0
    assert index.first_match("a MAIL LOOP here") == 0
    assert index.first_match("mail  loop, [spf]  fail") == 20
    assert index.first_match("mailloop") is None
    assert index.first_match("Überquota") == 10


def test_a_literal_alternative_shorter_than_three_characters_matches_where_the_text_holds_it(
) -> None:
    # (such as the wrapper marker " #": no word to look it up by, an ``in`` test of the text)
    index = PatternIndex(compiled(r" #|<<", r"k;", r"\.x"))
    assert index.first_match("mx.example.org #5.1.1") == 0
    assert index.first_match("a#b, a <<< b") == 0
    assert index.first_match("OK; a.X") == 10
    assert index.first_match("\u212a; a") == 10  # the Kelvin sign matches "k"
    assert index.first_match("a.x #") == 0
    assert index.first_match("a.X") == 20
    assert index.first_match("a#x <k") is None


def test_a_scan_of_the_words_serves_several_selections() -> None:
    index = PatternIndex(compiled(r"mailbox full", r"quota", r"full"))
    text = "Mailbox FULL, over quota"
    scanned = index.scan(text)
    assert index.first_match(text, index.select([10, 20]), scanned) == 10
    assert index.first_match(text, index.select([20]), scanned) == 20
    assert index.first_match(text, None, scanned) == 0
    assert index.first_match("é" + text, None, index.scan("é" + text)) == 0


def test_anchors_are_found_inside_at_the_edges_of_and_as_whole_words() -> None:
    index = PatternIndex(compiled(r"quota", r"mailbox full", r"(?:no such|bad) user\b",
                                  r"<user@", r"5\.1\.1"))
    assert index.first_match("OVERQUOTAS") == 0
    assert index.first_match("mymailbox fully") == 10
    assert index.first_match("mailbox-full") is None
    assert index.first_match("xno such user") == 20
    assert index.first_match("no suchuser") is None
    assert index.first_match("to:<user@example.org>") == 30
    assert index.first_match("status 5.1.1") == 40
    assert index.first_match("status 5.1.10") == 40
    assert index.first_match("status 5.1") is None


def test_a_phrase_is_looked_for_by_two_of_its_words_and_a_word_by_its_letters() -> None:
    index = PatternIndex(compiled(r"we do not relay", r"e-mail\b", r"mail from:? ?<>"))
    assert index.first_match("Sorry, WE DO NOT RELAY for you") == 0
    assert index.first_match("we do not, we relay") is None
    assert index.first_match("no e-mail here") == 10
    assert index.first_match("no e-mails here") is None
    assert index.first_match("MAIL FROM:<> refused") == 20
    assert index.first_match("mail from <bob@example.org>") is None


def test_the_words_remembered_are_forgotten_when_they_are_too_many() -> None:
    index = PatternIndex(compiled(r"mailbox full", r"quota"))
    index.WORDS = 2
    texts = ["mailbox full", "over quota", "no quota", "mailbox", "a mailbox full"]
    assert [index.first_match(text) for text in texts * 2] == [0, 10, 10, None, 0] * 2


PIECES = ["user", "unknown", "mail", "box", "full", "spam", "(?:a|b)", "x?", "[0-9]+", r"\.",
          r"\b", "over quota", "k", "(?:no such|invalid) user", ".{0,5}", "K", "e-mail",
          "<user@", "_box", "5\\.1\\.1", "quota-", r"\w+", "we do not relay", "mail from:? ?<>",
          "user_unknown", "e-mail box", "ユーザー", "rejeté", "ré", "#", "<<", "s;"]
patterns = st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map(" ".join)
                    .map(lambda parts: "|".join(parts.split(" x? "))),
                    min_size=1, max_size=8)
texts = st.lists(st.sampled_from(["user", "unknown", "mailbox", "full", "SPAM", "a", "b", "9",
                                  ".", "over", "quota", "\u212a", "no such", "invalid", "-",
                                  "@", "<", "_", "e", "5.1.1", "xuser", "boxes", "we do",
                                  "not relay", "relaying", "mail from:<>", "user_", "é",
                                  "ユーザー", "USERÉ", "REJETÉ", "\u0130", "\u017f", "mailboxé",
                                  "\u00a0", "\u3000", "#", "<<", "S;", "\u017f;"]),
                 max_size=10).map(lambda words: "".join(words) if len(words) % 3 == 0
                                  else " ".join(words)) | st.text(max_size=30)


@settings(deadline=None)  # each example builds an index per scan of the words
@given(patterns, texts, st.sets(st.integers(0, 7)))
def test_the_index_gives_what_trying_every_pattern_in_order_gives(
    sources: list[str], text: str, chosen: set[int]
) -> None:
    table = compiled(*sources)
    first = next((number for number in sorted(table) if table[number].search(text)), None)
    keys = {number * 10 for number in chosen}
    expected = next((number for number in sorted(table)
                     if number in keys and table[number].search(text)), None)
    for or_words in OR_WORDS:
        with mock.patch.object(prefilter, "_or_words", or_words):
            index = PatternIndex(table)
            assert index.first_match(text) == first
            assert index.first_match(text, index.select(keys)) == expected
            assert index.first_match(text, index.select(keys), index.scan(text)) == expected


class Words(dict[str, int]):
    """Masks of words, made up at a word's first look-up (the first 0), as _WordHits does."""

    def __missing__(self, word: str) -> int:
        hits = self[word] = (1 << 3 * len(word) + 40) - 1 if len(self) % 3 else 0
        return hits


@pytest.mark.skipif(len(OR_WORDS) < 2, reason="the C accelerator is not built")
@given(st.text(st.sampled_from("aB\x00 \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x7f-_.@")
               | st.characters(max_codepoint=127), max_size=40), st.integers(0, 1 << 90))
def test_the_word_scan_in_c_gives_what_the_python_gives(text: str, found: int) -> None:
    accelerated, python = Words(), Words()
    assert OR_WORDS[1](accelerated, text, found) == OR_WORDS[0](python, text, found)
    assert list(accelerated.items()) == list(python.items())  # the same words, in turn


@pytest.mark.skipif(len(OR_WORDS) < 2, reason="the C accelerator is not built")
def test_the_word_scan_in_c_refuses_what_it_is_not_for() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        OR_WORDS[1](Words(), "rejeté", 0)
    with pytest.raises(TypeError, match="a dict, a str and an int"):
        OR_WORDS[1](Words(), b"spam", 0)
    with pytest.raises(KeyError):
        OR_WORDS[1]({}, "spam", 0)
