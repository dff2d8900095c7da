"""Throughput of the SQLite backend with no-op tasks: enqueue (single and bulk) and drain.

    .venv/bin/python bench/sqlite_bench.py            # the full run (about 1.5 minutes)
    .venv/bin/python bench/sqlite_bench.py --quick    # small sizes, about 15 seconds
    .venv/bin/python bench/sqlite_bench.py --json     # machine-readable, on stdout

Every measurement gets a fresh database in a temporary directory, removed afterwards.
Drains run real worker processes (`taskmill worker --app bench.sqlite_bench:app --burst`),
which import this module: `app` below reads TASKMILL_URL, which the bench sets for them.
Each drain is timed twice: from process start to exit (what a user waits), and from the
first claim to the last recorded finish, read from the jobs' started_at / finished_at
(what the queue sustains, without interpreter start-up and module imports).

The targets of the issue are printed beside the figures; nothing here is hard-coded but
the targets themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from taskmill import App, Job, JobState, Task
from taskmill.app import BATCH

#: Targets stated in the issue, for this 2-core machine (jobs/s).
TARGET_DRAIN = 10_000  # one worker process
TARGET_BULK = 50_000  # app.enqueue_many, building the jobs included

NOOP = "bench.noop"
NOOP_SYNC = "bench.noop_sync"
REPO = Path(__file__).resolve().parent.parent
APP_SPEC = "bench.sqlite_bench:app"

T = TypeVar("T")


async def noop(i: int) -> None:
    """The drained task. Async, so a job costs the queue and not a hop to a thread."""


def noop_sync(i: int) -> None:
    """The same for a sync handler, which the worker runs in its thread pool."""


@dataclass(slots=True)
class BenchApp:
    app: App
    noop: Task[[int], None]
    noop_sync: Task[[int], None]


def make_app(url: str | None = None) -> BenchApp:
    # Names are fixed, not derived from the module: run as a script this module is
    # __main__, while the workers import it as bench.sqlite_bench.
    bench_app = App(url)
    return BenchApp(
        bench_app,
        bench_app.task(name=NOOP)(noop),
        bench_app.task(name=NOOP_SYNC)(noop_sync),
    )


#: What the worker processes run; its URL comes from TASKMILL_URL.
app = make_app().app


# -- results --------------------------------------------------------------------------------


@dataclass(slots=True)
class Enqueue:
    name: str
    jobs: int
    seconds: float
    target: int | None = None
    #: Seconds of every run; `seconds` is their median.
    runs: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "jobs_per_s": round(self.rate),
            "us_per_job": round(self.seconds / self.jobs * 1e6, 2),
        }


@dataclass(slots=True)
class Drain:
    task: str
    processes: int
    concurrency: int
    jobs: int
    launcher: str
    #: Process start to the last exit.
    wall: float
    #: First claim (min started_at) to last recorded finish (max finished_at).
    span: float
    #: Process start to the first claim: interpreter, imports, connect, migrate.
    startup: float
    #: CPU seconds (user + system) of all the worker processes, start-up included.
    cpu: float
    #: Span of every run; this record is the run of the median span.
    runs: list[float] = field(default_factory=list)

    @property
    def wall_rate(self) -> float:
        return self.jobs / self.wall

    @property
    def span_rate(self) -> float:
        return self.jobs / self.span

    @property
    def target(self) -> int | None:
        return TARGET_DRAIN if self.processes == 1 and self.task == NOOP else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "wall_jobs_per_s": round(self.wall_rate),
            "span_jobs_per_s": round(self.span_rate),
            "cpu_us_per_job": round(self.cpu / self.jobs * 1e6, 1),
            "target": self.target,
        }


class BenchError(Exception):
    """A measurement that could not complete (timeout, lost jobs, failed worker)."""


# -- plumbing -------------------------------------------------------------------------------


class Scratch:
    """Fresh database files in one temporary directory; live worker processes, so that a
    timeout can kill them and still remove the directory."""

    def __init__(self, parent: str | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="taskmill-bench-", dir=parent))
        self.count = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def url(self, name: str) -> str:
        self.count += 1
        path = self.root / f"{self.count:02d}-{name}.db"
        return f"sqlite:///{path}"  # path is absolute: sqlite:////tmp/...

    def drop(self, url: str) -> None:
        """Remove one database (with its WAL files) as soon as it is measured: 100,000 jobs
        take tens of MB, and a full run makes a dozen databases."""
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                # Each worker leads its own session: take any children (a process pool) too.
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        self.kill_all()
        shutil.rmtree(self.root, ignore_errors=True)


def watchdog(scratch: Scratch, seconds: float) -> threading.Timer:
    """Ends the whole run after `seconds` even if an in-process step hangs, printing every
    thread's stack first: a bench that can hang is worse than one that fails."""

    def fire() -> None:
        print(f"\nsqlite_bench: gave up after {seconds:.0f}s; stacks:", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        scratch.close()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def repeat(
    times: int, measure: Callable[[], T], key: Callable[[T], float]
) -> tuple[T, list[float]]:
    """Run `measure` `times` times; the median run by `key`, and every run's key."""
    results = sorted((measure() for _ in range(times)), key=key)
    return results[(len(results) - 1) // 2], [key(r) for r in results]


async def pending_count(bench: BenchApp) -> int:
    backend = await bench.app.backend()
    return sum(q.counts[JobState.PENDING.value] for q in await backend.list_queues())


def check_stored(expected: int, stored: int) -> None:
    if stored != expected:
        raise BenchError(f"{stored} jobs stored, expected {expected}")


# -- enqueue --------------------------------------------------------------------------------


def enqueue_sync(scratch: Scratch, n: int) -> float:
    url = scratch.url("enqueue-sync")
    bench = make_app(url)
    try:
        bench.app.run(bench.app.backend())  # connect and migrate outside the timing
        start = time.perf_counter()
        for i in range(n):
            bench.noop.enqueue(i)
        elapsed = time.perf_counter() - start
        check_stored(n, bench.app.run(pending_count(bench)))
    finally:
        bench.app.close()
        scratch.drop(url)
    return elapsed


def enqueue_async(scratch: Scratch, n: int) -> float:
    url = scratch.url("enqueue-async")

    async def run() -> float:
        bench = make_app(url)
        try:
            await bench.app.backend()
            start = time.perf_counter()
            for i in range(n):
                await bench.noop.aenqueue(i)
            elapsed = time.perf_counter() - start
            check_stored(n, await pending_count(bench))
        finally:
            await bench.app.aclose()
        return elapsed

    try:
        return asyncio.run(run())
    finally:
        scratch.drop(url)


def enqueue_many(scratch: Scratch, n: int) -> float:
    """The user's bulk path: building the jobs is part of it."""
    url = scratch.url("enqueue-many")
    bench = make_app(url)
    try:
        bench.app.run(bench.app.backend())
        start = time.perf_counter()
        bench.app.enqueue_many([bench.noop.prepare(i) for i in range(n)])
        elapsed = time.perf_counter() - start
        check_stored(n, bench.app.run(pending_count(bench)))
    finally:
        bench.app.close()
        scratch.drop(url)
    return elapsed


def build_jobs(n: int) -> tuple[list[Job], float]:
    """Jobs made by task.prepare (App.make_job), and the time that took."""
    bench = make_app("sqlite:///unused.db")  # never opened
    start = time.perf_counter()
    jobs = [bench.noop.prepare(i) for i in range(n)]
    return jobs, time.perf_counter() - start


def backend_enqueue(scratch: Scratch, jobs: Sequence[Job], batch: int) -> float:
    """backend.enqueue alone, on prebuilt jobs, `batch` per call."""
    url = scratch.url(f"backend-enqueue-{batch}")

    async def run() -> float:
        bench = make_app(url)
        try:
            backend = await bench.app.backend()
            start = time.perf_counter()
            for first in range(0, len(jobs), batch):
                await backend.enqueue(jobs[first : first + batch])
            elapsed = time.perf_counter() - start
            check_stored(len(jobs), await pending_count(bench))
        finally:
            await bench.app.aclose()
        return elapsed

    try:
        return asyncio.run(run())
    finally:
        scratch.drop(url)


# -- drain ----------------------------------------------------------------------------------


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"


def worker_command(launcher: str, concurrency: int) -> list[str]:
    if launcher == "cli":
        exe = Path(sys.executable).parent / "taskmill"
        cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "taskmill.cli"]
        return [*cli, "worker", "--app", APP_SPEC, "--burst", "--concurrency", str(concurrency)]
    # "direct": Worker(...).run() in a plain interpreter, for when the CLI is missing, or to
    # tell the CLI's own start-up cost apart.
    return [sys.executable, "-m", "bench.sqlite_bench", "--as-worker", str(concurrency)]


def run_as_worker(concurrency: int) -> None:
    from taskmill.worker import Worker

    async def run() -> None:
        try:
            await Worker(app, concurrency=concurrency, burst=True).run()
        finally:
            await app.aclose()

    asyncio.run(run())


async def fill(url: str, n: int, task: str) -> None:
    bench = make_app(url)
    chosen = bench.noop if task == NOOP else bench.noop_sync
    try:
        await bench.app.aenqueue_many([chosen.prepare(i) for i in range(n)])
    finally:
        await bench.app.aclose()


async def drained(url: str, n: int) -> tuple[float, float]:
    """(min started_at, max finished_at) of the succeeded jobs; raises unless all n are."""
    bench = make_app(url)
    try:
        backend = await bench.app.backend()
        jobs, _ = await backend.list_jobs(state=JobState.SUCCEEDED, limit=n + 1)
        if len(jobs) != n:
            counts = {s: c for q in await backend.list_queues() for s, c in q.counts.items() if c}
            raise BenchError(f"{len(jobs)} of {n} jobs succeeded; states: {counts}")
        started = min(job.started_at or 0.0 for job in jobs)
        finished = max(job.finished_at or 0.0 for job in jobs)
        return started, finished
    finally:
        await bench.app.aclose()


def drain(
    scratch: Scratch,
    n: int,
    task: str,
    processes: int,
    concurrency: int,
    launcher: str,
    timeout: float,
) -> Drain:
    url = scratch.url(f"drain-{processes}x{concurrency}")
    try:
        asyncio.run(fill(url, n, task))
        env = {
            **os.environ,
            "TASKMILL_URL": url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        command = worker_command(launcher, concurrency)
        logs = [scratch.root / f"worker-{scratch.count:02d}-{i}.log" for i in range(processes)]
        exits: list[float | None] = [None] * processes

        def reap(i: int, proc: subprocess.Popen[bytes]) -> None:
            # A blocking wait in a thread: Popen.wait(timeout) polls, up to 50 ms late.
            proc.wait()
            exits[i] = time.perf_counter()

        # Workers are the only children reaped meanwhile, so this delta is their CPU time.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        epoch = time.time()
        start = time.perf_counter()
        reapers = []
        for i, log in enumerate(logs):
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    command,
                    env=env,
                    cwd=REPO,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            with scratch.lock:
                scratch.procs.append(proc)
            reaper = threading.Thread(target=reap, args=(i, proc), daemon=True)
            reaper.start()
            reapers.append((reaper, proc))
        deadline = start + timeout
        for reaper, _ in reapers:
            reaper.join(max(0.0, deadline - time.perf_counter()))
        if any(reaper.is_alive() for reaper, _ in reapers):
            scratch.kill_all()
            raise BenchError(f"workers still running after {timeout:.0f}s (--timeout)")
        with scratch.lock:
            scratch.procs.clear()
        wall = max(e for e in exits if e is not None) - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        for (_, proc), log in zip(reapers, logs, strict=True):
            if proc.returncode != 0:
                raise BenchError(f"worker exited with {proc.returncode}:\n{tail(log)}")
        try:
            first, last = asyncio.run(drained(url, n))
        except BenchError as exc:
            # Workers that stop early are a bug worth its evidence: show what they said.
            said = "\n".join(f"--- worker {i}:\n{tail(log)}" for i, log in enumerate(logs))
            raise BenchError(f"{exc}\n{said}") from None
        return Drain(
            task=task,
            processes=processes,
            concurrency=concurrency,
            jobs=n,
            launcher=launcher,
            wall=wall,
            span=last - first,
            startup=first - epoch,
            cpu=cpu,
        )
    finally:
        scratch.drop(url)


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with_model = Path("/proc/cpuinfo")
    if with_model.exists():
        for line in with_model.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": cpu,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "taskmill": importlib.metadata.version("taskmill"),
        "orjson": importlib.metadata.version("orjson"),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def verdict(rate: float, target: int | None) -> str:
    if target is None:
        return ""
    return "meets" if rate >= target else f"{rate / target:.0%} of it"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]

    # First column left-aligned (names), the figures right-aligned.
    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    yield line(headers)
    yield line(["-" * w for w in widths])
    yield from (line(r) for r in rows)


BUSY = "  <- other processes were busy: figures may be low"


def report(
    info: dict[str, Any],
    enqueues: list[Enqueue],
    drains: list[Drain],
    failures: list[str],
    repeats: int,
) -> str:
    out = [
        "taskmill SQLite benchmark (no-op tasks, fresh database per measurement)",
        f"machine: {info['cores']} cores ({info['usable_cores']} usable), {info['cpu']}",
        f"         {info['python']}, SQLite {info['sqlite']}, taskmill {info['taskmill']}, "
        f"orjson {info['orjson']}, {info['platform']}",
        f"load average before the run: {', '.join(map(str, info['load_before']))}"
        + (BUSY if info["load_before"][0] >= 0.5 else ""),
        f"runs per figure: {repeats} (median shown)",
        "",
        "Enqueue",
    ]
    out += table(
        ["measurement", "jobs", "seconds", "jobs/s", "us/job", "target", "vs target"],
        [
            [
                e.name,
                f"{e.jobs:,}",
                f"{e.seconds:.3f}",
                f"{e.rate:,.0f}",
                f"{e.seconds / e.jobs * 1e6:.1f}",
                f"{e.target:,}" if e.target else "",
                verdict(e.rate, e.target),
            ]
            for e in enqueues
        ],
    )
    out += [
        "",
        "Drain (worker processes in --burst mode; wall = process start to exit,",
        "       span = first claim to last finish, from the jobs' started_at/finished_at)",
    ]
    out += table(
        [
            "task",
            "procs",
            "conc.",
            "jobs",
            "wall s",
            "wall jobs/s",
            "span s",
            "span jobs/s",
            "start-up s",
            "CPU us/job",
            "target",
            "wall vs target",
            "span vs target",
        ],
        [
            [
                d.task,
                str(d.processes),
                str(d.concurrency),
                f"{d.jobs:,}",
                f"{d.wall:.3f}",
                f"{d.wall_rate:,.0f}",
                f"{d.span:.3f}",
                f"{d.span_rate:,.0f}",
                f"{d.startup:.3f}",
                f"{d.cpu / d.jobs * 1e6:.0f}",
                f"{d.target:,}" if d.target else "",
                verdict(d.wall_rate, d.target),
                verdict(d.span_rate, d.target),
            ]
            for d in drains
        ],
    )
    if drains:
        command = " ".join(worker_command(drains[0].launcher, 0)).replace(" 0", " C")
        out.append(f"workers: {command}")
    if failures:
        out += ["", "FAILED:", *(f"  {f}" for f in failures)]
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a few seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--single", type=int, help="jobs per single-enqueue loop (5,000)")
    parser.add_argument("--bulk", type=int, help="jobs per bulk enqueue (100,000)")
    parser.add_argument("--drain", type=int, help="jobs per drain (20,000)")
    parser.add_argument(
        "--concurrency",
        type=ints,
        default=[10, 100],
        help="worker concurrencies, comma-separated (10,100)",
    )
    parser.add_argument(
        "--processes",
        type=ints,
        default=[1, 2, 4],
        help="worker process counts, comma-separated (1,2,4)",
    )
    parser.add_argument(
        "--no-sync-task",
        action="store_true",
        help="skip the drains of the sync no-op (thread pool)",
    )
    parser.add_argument("--only", choices=["enqueue", "drain"], help="run one half only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; median shown")
    parser.add_argument(
        "--launcher",
        choices=["auto", "cli", "direct"],
        default="auto",
        help="how workers start: the taskmill CLI, or Worker() in python "
        "(auto: the CLI if taskmill.cli exists)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds one drain may take before its workers are killed",
    )
    parser.add_argument(
        "--max-time", type=float, default=1800.0, help="seconds the whole run may take"
    )
    parser.add_argument("--dir", help="where to put the temporary databases")
    parser.add_argument("--as-worker", type=int, metavar="C", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.single = args.single or (500 if quick else 5_000)
    args.bulk = args.bulk or (10_000 if quick else 100_000)
    args.drain = args.drain or (2_000 if quick else 20_000)
    if args.launcher == "auto":
        args.launcher = "cli" if importlib.util.find_spec("taskmill.cli") else "direct"
    if min(args.single, args.bulk, args.drain, args.repeat, *args.concurrency, *args.processes) < 1:
        parser.error("sizes, counts and --repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.as_worker is not None:
        run_as_worker(args.as_worker)
        return 0
    info = machine()  # before the run: its load average tells whether others were busy
    scratch = Scratch(args.dir)
    timer = watchdog(scratch, args.max_time)
    enqueues: list[Enqueue] = []
    drains: list[Drain] = []
    failures: list[str] = []

    def attempt(label: str, step: Callable[[], None]) -> None:
        # One failed measurement is reported, and the others still run.
        progress(f"  {label} ...")
        try:
            step()
        except Exception as exc:
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            progress(f"  {label}: FAILED: {exc}")

    def single(name: str, n: int, measure: Callable[[], float], target: int | None = None) -> None:
        seconds, runs = repeat(args.repeat, measure, key=lambda s: s)
        enqueues.append(Enqueue(name, n, seconds, target, [round(r, 4) for r in runs]))

    try:
        if args.only != "drain":
            progress("enqueue:")
            attempt(
                "sync enqueue",
                lambda: single(
                    "task.enqueue() loop (sync)",
                    args.single,
                    lambda: enqueue_sync(scratch, args.single),
                ),
            )
            attempt(
                "async enqueue",
                lambda: single(
                    "await task.aenqueue() loop",
                    args.single,
                    lambda: enqueue_async(scratch, args.single),
                ),
            )
            attempt(
                "enqueue_many",
                lambda: single(
                    "app.enqueue_many([task.prepare(i) ...])",
                    args.bulk,
                    lambda: enqueue_many(scratch, args.bulk),
                    TARGET_BULK,
                ),
            )
            built: list[Job] = []

            def build() -> float:
                jobs, seconds = build_jobs(args.bulk)
                built[:] = jobs
                return seconds

            attempt(
                "task.prepare",
                lambda: single("  of which: task.prepare() (make_job)", args.bulk, build),
            )
            if built:
                attempt(
                    "backend.enqueue",
                    lambda: single(
                        f"  backend.enqueue(prebuilt), {BATCH:,} per call",
                        args.bulk,
                        lambda: backend_enqueue(scratch, built, BATCH),
                    ),
                )
                attempt(
                    "backend.enqueue one call",
                    lambda: single(
                        "  backend.enqueue(prebuilt), one call",
                        args.bulk,
                        lambda: backend_enqueue(scratch, built, len(built)),
                    ),
                )
            del built[:]
        if args.only != "enqueue":
            progress(f"drain ({args.launcher} launcher):")
            configs = [(NOOP, p, c) for p in args.processes for c in args.concurrency]
            if not args.no_sync_task and 1 in args.processes:
                configs += [(NOOP_SYNC, 1, c) for c in args.concurrency]
            for task, procs, conc in configs:

                def one(task: str = task, procs: int = procs, conc: int = conc) -> None:
                    result, runs = repeat(
                        args.repeat,
                        lambda: drain(
                            scratch, args.drain, task, procs, conc, args.launcher, args.timeout
                        ),
                        key=lambda d: d.span,
                    )
                    result.runs = [round(r, 4) for r in runs]
                    drains.append(result)

                attempt(f"{task} x{procs} processes, concurrency {conc}", one)
    finally:
        timer.cancel()
        scratch.close()

    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "params": {k: v for k, v in vars(args).items() if k != "as_worker"},
                    "targets": {"drain_one_process": TARGET_DRAIN, "bulk_enqueue": TARGET_BULK},
                    "enqueue": [e.to_dict() for e in enqueues],
                    "drain": [d.to_dict() for d in drains],
                    "failures": failures,
                },
                indent=2,
            )
        )
    else:
        print(report(info, enqueues, drains, failures, args.repeat))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
