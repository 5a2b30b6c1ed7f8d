"""A summary of many files on several cores: the files shared among worker processes.

Each worker reads its share of the files with the same settings as the caller's
:class:`~mta_logging.report.reader.Reader` and sends back its :class:`Summary` (counts only,
memory bounded as in one process); the caller merges them. A file is known by device and inode,
so one under two names while it is being archived (a hard link) is read once. Issues come back
too: the first ``MAX_ISSUES`` of each share go to the caller's ``on_issue``, and all of them
are counted in ``stats.issues``. A file the writer moves while a worker reads is not looked
for by the worker (two could find it) but read by the caller afterwards, with what all
workers read known (:class:`~mta_logging.report.reader.Seen`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mta_logging.report.reader import Issue, Reader, ReadStats, Seen, found_files
from mta_logging.report.summary import Summary

MIN_BYTES_PER_JOB = 16_000_000  # below this much input per worker, one process is faster
MAX_ISSUES = 100  # issues a worker sends back in full; the rest are counted
_MAX_DEFLATE_RATIO = 1032  # the most that deflate packs into one byte
T = TypeVar("T")


@dataclass(slots=True)
class Collected:
    """The first issues a worker saw (its ``stats.issues`` counts them all)."""

    issues: list[Issue] = field(default_factory=list)

    def __call__(self, issue: Issue) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(issue)


def default_jobs(reader: Reader) -> int:
    """How many processes are worth starting for the reader's input: one per usable core, at
    most one per ``MIN_BYTES_PER_JOB`` of input."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, reader.total_bytes() // MIN_BYTES_PER_JOB))


def shares(reader: Reader, jobs: int) -> list[list[tuple[str, int | None]]]:
    """The reader's files (path, inode when listed) in ``jobs`` groups of about equal size,
    each file once."""
    return balanced(sized_files(reader), jobs)


def balanced(sized: list[tuple[int, T]], jobs: int) -> list[list[T]]:
    """Items of the given sizes in at most ``jobs`` groups of about equal total size (the
    largest first into the lightest group)."""
    groups: list[list[T]] = [[] for _ in range(max(1, min(jobs, len(sized))))]
    loads = [0] * len(groups)
    for size, item in sorted(sized, key=lambda pair: -pair[0]):
        lightest = loads.index(min(loads))
        groups[lightest].append(item)
        loads[lightest] += size
    return groups


def in_order(sized: list[tuple[int, T]], jobs: int) -> list[list[T]]:
    """Items in their order, cut into at most ``jobs`` runs of about equal total size (for
    output that must keep the order: the runs are printed one after the other)."""
    total = sum(size for size, _item in sized) or 1
    runs: list[list[T]] = [[]]
    done = 0
    for size, item in sized:
        if runs[-1] and done >= total * len(runs) / jobs and len(runs) < jobs:
            runs.append([])
        runs[-1].append(item)
        done += size
    return runs


def sized_files(reader: Reader) -> list[tuple[int, tuple[str, int | None]]]:
    """The reader's files in order, each once: (size, (path, inode when listed)); the size of
    a ``.gz`` is the size of its content (what the work grows with), as its trailer says."""
    sized: list[tuple[int, tuple[str, int | None]]] = []
    seen: set[tuple[int, int]] = set()
    for path, listed in found_files(reader.paths):
        try:
            info = path.stat()
        except OSError:
            sized.append((0, (str(path), listed)))  # its worker says why it cannot be read
            continue
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            size = info.st_size
            if path.name.endswith(".gz"):  # (a cut-short one's "trailer" is any 4 bytes)
                size = min(max(size, unpacked_size(path)), size * _MAX_DEFLATE_RATIO)
            sized.append((size, (str(path), listed)))
    return sized


def unpacked_size(path: Path) -> int:
    """The size of a gzip file's content as its last member's trailer says (modulo 2**32);
    0 when that cannot be read."""
    try:
        with open(path, "rb") as stream:
            stream.seek(-4, os.SEEK_END)
            return int.from_bytes(stream.read(4), "little")
    except OSError:
        return 0


def settings_of(reader: Reader) -> tuple[Any, ...]:
    """What a worker needs to read as ``reader`` does (picklable)."""
    return (reader.paths, reader.filters, reader.time_format, reader.placeholder,
            reader.strict)


def worker_reader(settings: tuple[Any, ...], on_issue: Callable[[Issue], None]) -> Reader:
    """The Reader of a worker process, from :func:`settings_of`."""
    paths, filters, time_format, placeholder, strict = settings
    return Reader(paths, filters=filters, time_format=time_format, placeholder=placeholder,
                  strict=strict, on_issue=on_issue)


def pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, forked (they start at once and share what is loaded)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


def summarize(reader: Reader, jobs: int, **summary_options: Any) -> Summary:
    """``Summary(**summary_options)`` of every record the reader yields, read by ``jobs``
    worker processes. ``reader.stats`` holds the counters of all of them afterwards and each
    issue goes to ``reader.on_issue`` (the first FormatError, with ``strict``, is raised)."""
    groups = shares(reader, jobs)
    settings = settings_of(reader)
    total = Summary(**summary_options)
    stats = ReadStats()
    seen = Seen()
    with pool(len(groups)) as workers:
        futures = [workers.submit(_summarize_share, settings, group, summary_options)
                   for group in groups]
        for future in futures:
            summary, share_stats, collected, share_seen = future.result()
            total.merge(summary)
            stats.add(share_stats)
            seen.merge(share_seen)
            for issue in collected.issues:
                reader.on_issue(issue)
    # files the writer moved while workers read
    total.add_all(reader.read_vanished(seen, rows=True))
    stats.add(reader.stats)
    reader.stats = stats
    return total


def _summarize_share(settings: tuple[Any, ...], files: list[tuple[str, int | None]],
                     summary_options: dict[str, Any]
                     ) -> tuple[Summary, ReadStats, Collected, Seen]:
    collected = Collected()
    reader = worker_reader(settings, collected)
    seen = Seen(follow=False)
    summary = Summary(**summary_options).add_all(
        reader.read(((Path(name), listed) for name, listed in files), seen, rows=True))
    return summary, reader.stats, collected, seen
