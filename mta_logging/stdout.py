"""Standard output whose reader may go away (``head``, ``less``): every command stops quietly."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdout_reader_may_leave() -> Iterator[None]:
    """When the reader of our output goes away (EPIPE), stop quietly: no traceback, and the
    flush at exit does not fail again."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
