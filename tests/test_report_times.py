"""Times of records as whole seconds: many texts at once give what one at a time gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging.report.times import TimeParser

MINUTES = ["2026-10-25 02:30", "2026-10-25 03:00", "2026-12-31 23:59", "2026-02-30 10:00",
           "2026-10-25 2:30:", "2026-10-25T02:30", "2026-10-25 02:3x"]
SECONDS = ["00", "07", "59", "60", "61", "6", "0x", "٣٣", "  "]


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(MINUTES)) + draw(st.sampled_from([":", " ", "."])) + draw(
        st.sampled_from(SECONDS))
    return draw(st.sampled_from([text, text, text, "", text + "+01:00", text[:18], "soon"]))


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(time_texts(), max_size=20), cache_size=st.sampled_from([2, 4096]),
       time_format=st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%z"]))
def test_many_texts_give_the_seconds_of_each(texts: list[str], cache_size: int,
                                             time_format: str) -> None:
    one_by_one, together = TimeParser(time_format), TimeParser(time_format)
    for parser in (one_by_one, together):
        with_cache_of(parser, cache_size)
    expected = [one_by_one.seconds(text) for text in texts]
    assert together.many(texts) == expected
    assert together.naive == one_by_one.naive


def with_cache_of(parser: TimeParser, size: int) -> None:
    """Fill the parser's cache up to ``size`` minutes, so that ``many`` has to clear it."""
    for minute in range(size - 1):
        parser.seconds(f"2026-01-01 {minute // 60 % 24:02d}:{minute % 60:02d}:00")


def test_a_day_of_times_in_the_default_format() -> None:
    texts = [f"2026-10-25 {hour:02d}:{minute:02d}:{second:02d}" for hour in range(24)
             for minute in range(0, 60, 7) for second in (0, 31, 59)]
    parser = TimeParser()
    seconds = parser.many(texts)
    assert seconds == [TimeParser().seconds(text) for text in texts]
    assert seconds[1] - seconds[0] == 31 and seconds[3] - seconds[0] == 7 * 60
