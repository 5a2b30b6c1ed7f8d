"""Event ids: UUIDv7 text, unique per record, in time order (mta_logging/eventid.py)."""

from __future__ import annotations

import itertools
import multiprocessing
import uuid

import pytest

from mta_logging import eventid
from mta_logging.eventid import new_event_id

T0 = 1_764_138_000.0


def test_an_event_id_is_a_uuid_version_7_of_the_logging_time() -> None:
    text = new_event_id(T0 + 0.25)
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert int(text[:8] + text[9:13], 16) == int(T0 * 1000) + 250


def test_ids_sort_by_time_then_by_the_order_they_were_made() -> None:
    made = [new_event_id(T0 + step // 3) for step in range(9)]
    assert sorted(made) == made
    assert len(set(made)) == 9


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_event_id(T0) for _ in range(3)])


def test_a_forked_child_draws_its_own_random_bits() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(queue,))
    child.start()
    try:
        theirs = queue.get(timeout=30)
    finally:
        child.join(timeout=30)
    ours = [new_event_id(T0) for _ in range(3)]
    assert {text[-12:] for text in theirs} != {text[-12:] for text in ours}
    assert not set(theirs) & set(ours)


def test_a_counter_that_wraps_around_takes_new_random_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventid, "_state",
                        ("-000000000000", itertools.count(eventid._COUNTER_MASK)))
    last = new_event_id(T0)
    wrapped = new_event_id(T0)
    assert last.endswith("-7fff-8fff-000000000000")
    assert wrapped[14:] == "7000-8000" + eventid._state[0]
    assert eventid._state[0] != "-000000000000"


def test_ids_of_a_new_millisecond_take_its_time() -> None:
    first, later = new_event_id(T0), new_event_id(T0 + 0.001)
    assert int(later[:8] + later[9:13], 16) == int(first[:8] + first[9:13], 16) + 1
