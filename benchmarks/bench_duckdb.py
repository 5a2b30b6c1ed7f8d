"""Reading back at analyst speed: mta-logging against DuckDB and zgrep, in one run.

Generates accounting files with the library itself (default 1,000,000 records; ``--records``
for quick runs): delivered, deferred and bounce files rotated at 1 MB into the archive, the
deferred and bounce archives gzipped, 2,000 domains, replies with tabs, backslashes, quotes and
a byte that is not UTF-8, a week of local times (Europe/Berlin) crossing the end of summer
time. Then times, each command in a fresh process (wall seconds and peak RSS of the process
and its workers):

- report: ``mta-logging report --json`` against DuckDB ``read_csv`` told to read the files
  as the reader does (quoting off, escapes undone, domains lower-cased) computing the same
  totals, domains, hours and queue delays;
- grep: one recipient's history, ``mta-logging grep --rcpt`` against DuckDB and ``zgrep -F``;
- export: ``mta-logging export --parquet`` against DuckDB ``COPY ... TO parquet``;
- sql: the same query by ``mta-logging sql`` over the export and by DuckDB over its copy.

Every pair is checked to give the same numbers; the table says ``yes`` or what differed.
Each command runs ``--runs`` times (default 3), the tools of a task taking turns; the table
shows the median wall seconds and their spread (slowest − fastest), the median CPU seconds
and the largest peak RSS. "vs ours" is the other tool's median wall time over ours (above 1:
ours is faster). On a shared machine the CPU seconds are the steadier figures.

    .venv/bin/python benchmarks/bench_duckdb.py [--records N] [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mta_logging.handlers import AccountingFileHandler  # noqa: E402
from mta_logging.logger import AccountingLogger  # noqa: E402
from mta_logging.outcome import Kind  # noqa: E402

ZONE = "Europe/Berlin"
START = datetime(2026, 10, 22)  # the week holds 2026-10-25, end of summer time
DOMAINS = [f"d{i:04d}.example" for i in range(2000)]
REPLIES = {
    Kind.DELIVERED: ("2.0.0", "250 2.0.0 OK id={n} \"queued\"\tas Q{n}"),
    Kind.DEFERRED: ("4.2.2", "452 4.2.2 <{rcpt}> Mailbox full\\try later, caf\udce9"),
    Kind.BOUNCE: ("5.1.1", "550 5.1.1 <{rcpt}>: \"User unknown\"\tin virtual table"),
}
UNESCAPE = r"""CREATE MACRO unescape(s) AS
    replace(replace(replace(replace(replace(s, '\\', chr(57344)), '\t', chr(9)),
            '\n', chr(10)), '\r', chr(13)), chr(57344), '\');"""
READ_CSV = (r"read_csv('{root}/**/[!.]*.tsv*', delim = '\t', quote = '', escape = '', "
            "header = true, all_varchar = true, union_by_name = true)")
DUCK_REPORT = """
CREATE TABLE r AS SELECT type, lower(split_part(rcpt, '@', -1)) AS domain,
    strptime(timeLogged, '%Y-%m-%d %H:%M:%S') AS logged,
    strptime(timeQueued, '%Y-%m-%d %H:%M:%S') AS queued
  FROM (SELECT unescape(COLUMNS(*)) FROM {read});
SELECT json_object(
  'totals', (SELECT json_group_object(type, n) FROM (SELECT type, count(*) n FROM r GROUP BY 1)),
  'domains', (SELECT json_group_array(json_object('domain', domain, 'total', n)) FROM
              (SELECT domain, count(*) n FROM r GROUP BY 1 ORDER BY n DESC, domain LIMIT 10)),
  'hours', (SELECT count(DISTINCT date_trunc('hour', logged)) FROM r),
  'delay', (SELECT json_object('count', count(*), 'min', min(s), 'max', max(s))
            FROM (SELECT epoch(logged) - epoch(queued) s FROM r
                  WHERE type = 'd' AND queued IS NOT NULL)));
"""


@dataclass(frozen=True, slots=True)
class Timing:
    """One command's run: wall seconds, CPU seconds, peak RSS (MB) and what it printed."""

    seconds: float
    cpu: float
    peak_mb: float
    output: str


@dataclass(frozen=True, slots=True)
class Runs:
    """The runs of one command: median and spread of the wall seconds, median CPU seconds,
    largest peak RSS, and what the first run printed."""

    timings: tuple[Timing, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(t.seconds for t in self.timings)

    @property
    def spread(self) -> float:
        return max(t.seconds for t in self.timings) - min(t.seconds for t in self.timings)

    @property
    def cpu(self) -> float:
        return statistics.median(t.cpu for t in self.timings)

    @property
    def peak_mb(self) -> float:
        return max(t.peak_mb for t in self.timings)

    @property
    def output(self) -> str:
        return self.timings[0].output


def taking_turns(commands: list[Callable[[], Timing]], runs: int) -> list[Runs]:
    """Each command run ``runs`` times, the commands one after the other in each round (so
    that a busy spell of the machine falls on all of them alike)."""
    rounds = [[command() for command in commands] for _ in range(runs)]
    return [Runs(tuple(round_[index] for round_ in rounds)) for index in range(len(commands))]


def generate(root: Path, count: int) -> str:
    """Write ``count`` records under ``root`` with the library; returns a recipient that
    has several records (the one whose history the grep rows look up)."""
    rng = random.Random(20)
    recipients = [f"u{i:06d}@{DOMAINS[i % len(DOMAINS)]}" for i in range(count // 5 + 1)]
    handlers = {kind: AccountingFileHandler(kind, path=root, archiving=True, max_size=1,
                                            compress=kind is not Kind.DELIVERED)
                for kind in (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)}
    week = 7 * 86400
    for index in range(count):
        roll = rng.random()
        kind = Kind.DELIVERED if roll < 0.8 else Kind.DEFERRED if roll < 0.93 else Kind.BOUNCE
        rcpt = rng.choice(recipients)
        if rng.random() < 0.3:
            local, _at, domain = rcpt.partition("@")
            rcpt = f"{local}@{domain.upper()}"
        when = START + timedelta(seconds=index * week / count)
        status, reply = REPLIES[kind]
        record = logging.LogRecord("mta.accounting", kind.level, "bench", 0, "%s", (rcpt,),
                                   None)
        record.created = time.mktime(when.timetuple())
        record.outcome = AccountingLogger.outcome(  # type: ignore[attr-defined]
            kind, rcpt, time_queued=when - timedelta(seconds=rng.randrange(1, 7200)),
            vmta=f"pool-{index % 4}", src_ip="192.0.2.10", job_id=f"job-{index % 97}",
            dsn_status=status, dsn_msg=reply.format(n=index, rcpt=rcpt),
            delay=300 if kind is Kind.DEFERRED else None)
        handlers[kind].handle(record)
    for handler in handlers.values():
        handler.close()
    return recipients[1234 % len(recipients)]


def timed(argv: list[str], env: dict[str, str]) -> Timing:
    """Run ``argv`` in a fresh process; its wall time, CPU time and peak RSS (those of its
    worker processes and threads included)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=env)
    assert process.stdout is not None
    output = process.stdout.read().decode("utf-8", "backslashreplace")
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{argv[:4]} failed with status {process.returncode}")
    return Timing(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)


def duck(script: str, env: dict[str, str]) -> Timing:
    """DuckDB (all cores) in a fresh Python process, printing the last statement's rows."""
    code = ("import duckdb, sys\nc = duckdb.connect()\n"
            "c.execute('SET enable_progress_bar = false')\n"
            "*first, last = [s for s in sys.argv[1].split(';\\n') if s.strip()]\n"
            "[c.execute(s) for s in first]\n"
            "print('\\n'.join('\\t'.join(map(str, row)) for row in c.execute(last).fetchall()))")
    return timed([sys.executable, "-c", code, script], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (median)")
    parser.add_argument("--keep", metavar="DIR", help="write (or reuse) the files in DIR")
    args = parser.parse_args()
    env = {**os.environ, "TZ": ZONE, "PYTHONPATH": str(ROOT)}
    os.environ["TZ"] = ZONE
    time.tzset()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-duckdb-"))
    root = work / "accounting_files"
    marker = work / "rcpt.txt"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        marker.write_text(generate(root, args.records), encoding="utf-8")
        print(f"generated {args.records:,} records in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    rcpt = marker.read_text(encoding="utf-8")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    gzipped = sum(name.endswith(".gz") for name in files)
    ours = [sys.executable, "-m", "mta_logging.cli"]
    read = READ_CSV.format(root=root)

    runs = args.runs
    rows: list[tuple[str, str, Runs, str]] = []

    report, duck_report = taking_turns([
        lambda: timed([*ours, "report", "--json", str(root)], env),
        lambda: duck(UNESCAPE + DUCK_REPORT.format(read=read), env)], runs)
    rows += [("report", "mta-logging report", report, agree_report(report, duck_report)),
             ("report", "DuckDB read_csv", duck_report, "")]

    local, _at, domain = rcpt.partition("@")
    grep, duck_grep, zgrep = taking_turns([
        lambda: timed([*ours, "grep", "--count", "--rcpt", rcpt, str(root)], env),
        lambda: duck(UNESCAPE + f"SELECT count(*) FROM {read} WHERE split_part(rcpt, '@', 1) "
                     f"= '{local}' AND lower(split_part(rcpt, '@', -1)) = '{domain}'", env),
        lambda: timed(["zgrep", "-ihF", rcpt, *files], env)], runs)
    found = len(zgrep.output.splitlines())
    rows += [("grep one rcpt", "mta-logging grep --rcpt", grep,
              same(grep.output, duck_grep.output) + (f" ({grep.output.strip()} records)")),
             ("grep one rcpt", "DuckDB read_csv", duck_grep, ""),
             ("grep one rcpt", "zgrep -iF", zgrep,
              same(grep.output, str(found)) + f" ({found} lines)")]

    parquet = work / "export"
    duck_copy = work / "duckdb.parquet"

    def export_anew() -> Timing:
        shutil.rmtree(parquet, ignore_errors=True)
        return timed([*ours, "export", "--parquet", str(parquet), str(root)], env)

    export, duck_export = taking_turns([
        export_anew,
        lambda: duck(UNESCAPE + f"COPY (SELECT unescape(COLUMNS(*)) FROM {read}) TO "
                     f"'{duck_copy}' (FORMAT parquet);\nSELECT count(*) FROM '{duck_copy}'",
                     env)], runs)
    sql_count = timed([*ours, "sql", "SELECT count(*) FROM records", str(parquet)], env)
    rows += [("export parquet", "mta-logging export", export,
              same(sql_count.output.split()[-1], duck_export.output)),
             ("export parquet", "DuckDB COPY", duck_export, "")]

    query = ("SELECT kind, count(*), count(DISTINCT domain) FROM records GROUP BY kind "
             "ORDER BY kind")
    history = f"SELECT timeLogged, kind, dsnMsg FROM records WHERE rcpt ILIKE '{rcpt}'"
    sql, duck_sql, sql_rcpt, duck_rcpt = taking_turns([
        lambda: timed([*ours, "sql", "--csv", query, str(parquet)], env),
        lambda: duck(f"CREATE VIEW records AS SELECT type AS kind, "
                     f"lower(split_part(rcpt, '@', -1)) AS domain FROM '{duck_copy}';\n"
                     f"{query}", env),
        lambda: timed([*ours, "sql", "--csv", history, str(parquet)], env),
        lambda: duck(f"CREATE VIEW records AS SELECT *, type AS kind FROM '{duck_copy}';\n"
                     f"{history}", env)], runs)
    ours_sql = "\n".join(line.replace(",", "\t") for line in sql.output.splitlines()[1:])
    rows += [("sql group by", "mta-logging sql (Parquet)", sql, same(ours_sql,
                                                                     duck_sql.output)),
             ("sql group by", "DuckDB (its Parquet)", duck_sql, ""),
             ("sql one rcpt", "mta-logging sql (Parquet)", sql_rcpt,
              same(str(len(sql_rcpt.output.splitlines()) - 1),
                   str(len(duck_rcpt.output.splitlines())))),
             ("sql one rcpt", "DuckDB (its Parquet)", duck_rcpt, "")]

    print(f"{args.records:,} records in {len(files)} files ({gzipped} gzipped), "
          f"{sum(Path(f).stat().st_size for f in files) / 1e6:,.0f} MB on disk; "
          f"{os.cpu_count()} CPUs; each command in a fresh process, {runs} runs each "
          "(median, spread = slowest - fastest)\n")
    print(f"{'task':<15} {'tool':<27} {'seconds':>8} {'spread':>7} {'CPU s':>6} "
          f"{'peak RSS':>9} {'vs ours':>8}  agree")
    for task, tool, timing, agreement in rows:
        first = next(t for k, _tool, t, _a in rows if k == task)
        ratio = f"{timing.seconds / first.seconds:.2f}x" if timing is not first else ""
        print(f"{task:<15} {tool:<27} {timing.seconds:8.2f} {timing.spread:7.2f} "
              f"{timing.cpu:6.2f} {timing.peak_mb:6.0f} MB {ratio:>8}  {agreement}")
    if not args.keep:
        shutil.rmtree(work)


def same(ours: str, theirs: str) -> str:
    """``yes`` when both printed the same (white space around aside), else both."""
    if ours.strip() == theirs.strip():
        return "yes"
    return f"NO: {ours.strip()!r} vs {theirs.strip()!r}"


def agree_report(report: Runs, duck_report: Runs) -> str:
    """Compare the numbers both computed: totals, top domains, hours, queue delays."""
    ours: dict[str, Any] = json.loads(report.output)
    theirs: dict[str, Any] = json.loads(duck_report.output)
    totals = ours["totals"]
    mine = {
        "totals": {k: v for k, v in (("d", totals["delivered"]), ("df", totals["deferred"]),
                                     ("b", totals["bounced"])) if v},
        "domains": [{"domain": row["domain"], "total": row["total"]} for row in ours["domains"]],
        "hours": len(ours["hours"]),
        "delay": {key: ours["queue_delay"][key] for key in ("count", "min", "max")},
    }
    theirs["delay"] = {key: int(value) if value is not None else None
                       for key, value in theirs["delay"].items()}
    wrong = [key for key in mine if mine[key] != theirs[key]]
    return "yes" if not wrong else "NO: " + ", ".join(
        f"{key} {mine[key]} vs {theirs[key]}" for key in wrong)


if __name__ == "__main__":
    main()
