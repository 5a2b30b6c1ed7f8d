"""What the benchmark scripts share: the record, the timing loop, child processes, the table.

Every implementation writes the same 10-field delivered line (the default delivered fields)
with the same values, one OS write per record (flushed before the call returns). Each
implementation runs in a process of its own (``--child NAME``), so that one library's imports,
handlers or threads cannot slow another down, and so that peak RSS is its own.

The machine these run on is shared: its speed moves by up to 2x within seconds. So the
children stay alive for the whole run and take turns in many short rounds (A B C, B C A, ...):
every implementation is measured again and again, each round next to rounds of the others, and
a ratio is the median over rounds of the two implementations' rates in the same round: a slow
spell slows both sides of a pair.

Every caller passes the values inline, as application code would: ours as keywords of
``AccountingLogger.delivered``, the others as ``%`` (or ``{}``) arguments of the line, with the
time text ready-made (cached per second, as ours is) and nothing escaped for them: the most
favourable setup for them there is.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mta_logging.fields import DEFAULT_FIELDS  # noqa: E402
from mta_logging.outcome import Kind  # noqa: E402

FIELDS = DEFAULT_FIELDS[Kind.DELIVERED]
BASELINE = "stdlib RotatingFileHandler"
BIG_FILE = 1000  # megabytes: rotation is on, but does not happen during a run
ROTATE_EVERY = 3600  # seconds, for the implementations that also rotate by time
BATCH = 1000

SRC_MTA = "mx1.sender.example"
SRC_IP = "192.0.2.10"
DEST_IP = "203.0.113.7"
VMTA = "pool-a"
DSN_STATUS = "2.0.0"
DSN_MSG = "250 2.0.0 OK queued as 4XyZ1AbCdEfGhIjK"  # 40 characters, like a real reply
RECIPIENTS = tuple(f"user{i:04d}@example{i % 17}.com" for i in range(1000))
JOB_IDS = tuple(f"job-{i:06d}" for i in range(100))


RCPTS, JOBS = len(RECIPIENTS), len(JOB_IDS)


def time_queued() -> float:
    """The queued time of every record: 42 seconds before the run."""
    return float(int(time.time()) - 42)


Writer = Callable[[int], None]


def stdlib_logger(handler: Any, library: Any = logging) -> Any:
    """The logger "bench" of ``library`` (``logging``, or ``picologging``, which has its API),
    writing only to ``handler``, the message alone, with that library's Formatter."""
    handler.setFormatter(library.Formatter("%(message)s"))
    logger = library.getLogger("bench")
    logger.addHandler(handler)
    logger.setLevel(library.INFO)
    logger.propagate = False
    return logger


def configure_ours(directory: Path, **settings: Any) -> None:
    """Our handlers on "mta.accounting": archiving on, size and time rotation on."""
    import mta_logging

    mta_logging.configure({"path": str(directory), "archiving": True,
                           "archive_interval": ROTATE_EVERY, "max_size": BIG_FILE, **settings})


PERCENT_LINE = "\t".join(["%s"] * len(FIELDS))
BRACE_LINE = "\t".join(["{}"] * len(FIELDS))


@dataclass
class Measured:
    count: int
    elapsed: float  # wall-clock seconds


def measure(write: Callable[[int], None], seconds: float, warm_up: bool = True) -> Measured:
    """Call ``write(i)`` in batches until ``seconds`` have passed."""
    if warm_up:
        for i in range(BATCH):  # files open, caches filled
            write(i)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for i in range(count, count + BATCH):
            write(i)
        count += BATCH
        now = time.perf_counter()
        if now >= deadline:
            return Measured(count, now - start)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def report_child(measured: Measured, **extra: Any) -> None:
    """A child's result: one JSON line on stdout."""
    print(json.dumps({**asdict(measured), "rss_mb": peak_rss_mb(), **extra}), flush=True)


@dataclass
class Row:
    name: str
    rates: list[float]  # records per wall-clock second, one per round
    rss_mb: float

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def compare(script: str, names: Sequence[str], rounds: int, seconds: float) -> list[Row]:
    """Start ``script --child NAME`` for every implementation; then ``rounds`` rounds in which
    each measures for ``seconds`` in turn (the order rotating from round to round)."""
    children = {name: subprocess.Popen(
        [sys.executable, script, "--child", name], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=ROOT) for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    try:
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in [*names[shift:], *names[:shift]]:
                result = _ask(children[name], name, f"{seconds}\n")
                rates[name].append(result["count"] / result["elapsed"])
            print(f"  round {round_number + 1}/{rounds}: " + ", ".join(
                f"{rates[name][-1]:,.0f}" for name in names), file=sys.stderr)
        return [Row(name, rates[name], _ask(children[name], name, "")["rss_mb"])
                for name in names]
    finally:
        for process in children.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def _ask(process: subprocess.Popen[str], name: str, command: str) -> dict[str, Any]:
    """Send one command to a child (seconds to measure; "" = done) and read its JSON answer."""
    assert process.stdin is not None and process.stdout is not None
    if command:
        process.stdin.write(command)
        process.stdin.flush()
    else:
        process.stdin.close()
    answer = process.stdout.readline()
    if not answer:
        raise RuntimeError(f"{name} ended early (exit status {process.wait()}); see above")
    return dict(json.loads(answer))


def ratios(ours: Row, theirs: Row) -> list[float]:
    """The ratio of the two rates in each round."""
    return [a / b for a, b in zip(ours.rates, theirs.rates, strict=True)]


def table(rows: Sequence[Row], baseline: str = BASELINE) -> str:
    """Markdown table: implementation, records/s (median round), ratio to the baseline (median
    of the rounds' ratios, and the middle half of them), peak RSS."""
    base = next(row for row in rows if row.name == baseline)
    lines = ["| implementation | records/s | × " + baseline + " | middle half | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        each = ratios(row, base)
        low, _, high = statistics.quantiles(each, n=4) if len(each) > 1 else each * 3
        lines.append(f"| {row.name} | {row.rate:,.0f} | {statistics.median(each):.2f} | "
                     f"{low:.2f}–{high:.2f} | {row.rss_mb:.1f} |")
    return "\n".join(lines)


def target(rows: Sequence[Row], ours: str, theirs: str, at_least: float) -> str:
    """One line saying whether ``ours`` reaches ``at_least`` times ``theirs`` (median of the
    rounds' ratios), and in how many rounds it did."""
    by_name = {row.name: row for row in rows}
    each = ratios(by_name[ours], by_name[theirs])
    ratio = statistics.median(each)
    verdict = "met" if ratio >= at_least else "NOT met"
    reached = sum(value >= at_least for value in each)
    return (f"- {ours} / {theirs} = {ratio:.2f} (target ≥ {at_least}): {verdict}; "
            f"reached in {reached} of {len(each)} rounds")


def machine() -> str:
    """nproc, CPU model, Python version, date: the line to put above a table."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {_dt.date.today().isoformat()}")


def arguments(description: str, rounds: int, seconds: float,
              child_options: Sequence[str] = ()) -> argparse.Namespace:
    """Common options: ``--quick`` (or ``BENCH_QUICK=1``), ``--rounds``, ``--seconds``; and
    hidden ``--child`` plus ``child_options`` (text) that a script passes to its children."""
    parser = argparse.ArgumentParser(description=description)
    for option in child_options:
        parser.add_argument("--" + option.replace("_", "-"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                        help="three short rounds (also: BENCH_QUICK=1)")
    parser.add_argument("--rounds", type=int, default=None, help=f"default {rounds}")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"seconds per implementation and round (default {seconds})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 3 if args.quick else rounds
    if args.seconds is None:
        args.seconds = 0.2 if args.quick else seconds
    return args


def child(implementations: Mapping[str, Callable[[Path], Callable[[int], None]]],
          name: str) -> None:
    """In a child process: build one implementation in a fresh directory, warm it up, then
    measure once per line read on stdin (the seconds to measure for), answering each with a
    JSON line; at the end of input, answer with the peak RSS and leave."""
    results = os.fdopen(os.dup(1), "w")  # answers only: anything else printed goes to stderr
    os.dup2(2, 1)
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        write = implementations[name](directory)
        warm_up = True
        for line in sys.stdin:
            results.write(json.dumps(asdict(measure(write, float(line), warm_up))) + "\n")
            results.flush()
            warm_up = False
        logging.shutdown()
        results.write(json.dumps({"rss_mb": peak_rss_mb()}) + "\n")
        results.flush()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def delivered_writer(delivered: Callable[..., Any]) -> Callable[[int], None]:
    """The benchmark's i-th record through an ``AccountingLogger.delivered`` bound method."""
    queued = time_queued()

    def write(i: int) -> None:
        delivered(RECIPIENTS[i % RCPTS], time_queued=queued, src_mta=SRC_MTA, src_ip=SRC_IP,
                  dest_ip=DEST_IP, vmta=VMTA, job_id=JOB_IDS[i % JOBS], dsn_status=DSN_STATUS,
                  dsn_msg=DSN_MSG)

    return write


def run_comparison(script: str, description: str,
                   implementations: Mapping[str, Callable[[Path], Writer]], baseline: str,
                   targets: Sequence[tuple[str, str, float]]) -> None:
    """A comparison script's main(): in a child, serve one implementation; otherwise run the
    rounds and print the machine, the table and a line per (ours, theirs, at least) target."""
    args = arguments(description, rounds=20, seconds=0.25)
    if args.child:
        child(implementations, args.child)
        return
    rows = compare(script, list(implementations), args.rounds, args.seconds)
    print(machine())
    print()
    print(table(rows, baseline=baseline))
    print()
    for ours, theirs, at_least in targets:
        print(target(rows, ours, theirs, at_least))
    sys.stdout.flush()


# == Instructions per record, under callgrind (bench_instructions.py, bench_relay_record.py) ====

CALLGRIND_WARM_UP = 1000  # records written before either count starts
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def write_counted(make_writer: Callable[[Path], Writer], records: int) -> None:
    """Under valgrind: warm up, then write ``records`` records with the writer ``make_writer``
    makes for a temporary directory (removed afterwards)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        write = make_writer(directory)
        for i in range(CALLGRIND_WARM_UP):
            write(i)
        for i in range(records):
            write(i)
        logging.shutdown()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def instructions(script: str, name: str, records: int, *options: str) -> int:
    """User-space instructions of one ``script --count name --records records *options`` run
    under callgrind, hash randomisation off."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         script, "--count", name, "--records", str(records), *options],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"})
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{name} under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions_per_record(script: str, names: Sequence[str], quick: bool,
                            *options: str) -> tuple[dict[str, float], int]:
    """Each name's instructions per record (the counts of N + EXTRA and of N records, their
    difference divided by EXTRA), the names counted in parallel, and EXTRA; exits when
    valgrind is not installed."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    base, extra = (500, 2000) if quick else (2000, 10000)

    def per_record(name: str) -> float:
        return (instructions(script, name, base + extra, *options)
                - instructions(script, name, base, *options)) / extra

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(names, pool.map(per_record, names), strict=True)), extra
