"""Event ids: one per accounting record, unique across processes, hosts and restarts.

An event id is a UUID version 7 (RFC 9562) in its usual text form
(``0191d2a6-5f00-7000-8000-3a9f0c1b2d4e``): chosen over a ULID because it is a standard
UUID, which PostgreSQL (the ``uuid`` type), DuckDB and every UUID library store and compare
as they are, and because the text of UUIDv7s made later sorts later, as a ULID's does.

The layout (RFC 9562 section 6.2, "Method 1" with a dedicated counter):

* ``unix_ts_ms`` (48 bits): the record's logging time in milliseconds;
* ``ver`` 7, then 12 bits, ``var`` and two zero bits, then 12 bits: a 24-bit counter of this
  process, so ids of one process in one millisecond sort in the order they were made;
* the last 48 bits: random, drawn with ``os.urandom`` when the module is imported, again in
  a child after ``fork`` and whenever the counter wraps around.

Two ids of one process differ in the time or the counter; ids of two processes (on any host,
before or after a restart) also in the 48 random bits, which repeat with a probability of one
in 2^48 for two processes, and only matter for ids made in the same millisecond with the same
counter value. Making one id costs a counter step, two lookups and one string built (the
time's text is made once per millisecond), no system call.
"""

from __future__ import annotations

import itertools
import os
import threading

_COUNTER_BITS = 24
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_HEX3 = tuple(f"{number:03x}" for number in range(4096))  # 12 bits as text

# (the random last group with its dash, the counter) of this process, replaced as one value
_state: tuple[str, itertools.count[int]]
# (a millisecond, the first groups of the ids made in it, up to the version digit)
_time: tuple[int, str] = (-1, "")
_lock = threading.Lock()


def _fresh_state() -> tuple[str, itertools.count[int]]:
    return "-" + os.urandom(6).hex(), itertools.count()


def _reseed() -> None:
    """New random bits and a new counter (at import and in a child after ``fork``)."""
    global _state
    _state = _fresh_state()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_event_id(timestamp: float) -> str:
    """A new event id for a record logged at ``timestamp`` (POSIX seconds)."""
    global _state, _time
    state = _state
    count = next(state[1])
    while count > _COUNTER_MASK:  # the counter wrapped around: new random bits
        with _lock:
            if _state is state:
                _state = _fresh_state()
            state = _state
        count = next(state[1])
    milliseconds = int(timestamp * 1000)
    cached = _time
    if cached[0] != milliseconds:
        text = f"{milliseconds & 0xFFFFFFFFFFFF:012x}"
        cached = _time = (milliseconds, f"{text[:8]}-{text[8:]}-7")
    return f"{cached[1]}{_HEX3[count >> 12]}-8{_HEX3[count & 0xFFF]}{state[0]}"  # one string
