"""taskmill on Redis against the Python peers, side by side, with no-op tasks.

    .venv/bin/python bench/redis_bench.py                  # full run (about 15 minutes)
    .venv/bin/python bench/redis_bench.py --quick          # small sizes, every peer
    .venv/bin/python bench/redis_bench.py --peers rq,arq --only drain

Each peer's turn at a kind of measurement gets a private `redis-server --save ''
--appendonly no` of its own on a free loopback port (never the shared 6379). The run
installs each peer from PyPI into its own venv under bench/.venvs/ (first run only), and
measures each with the same no-op task through a driver script per peer
(bench/peers/<peer>_driver.py, run by that venv's python; bench/peers/driver.py describes
the protocol). The server is flushed before every measurement. The run goes
kind by kind (enqueue, drain, latency), every peer in turn, and notes the loopback's
round trip before each kind. Latency goes in rounds (--rounds), the peers' order turned
each round, and pools each peer's samples: a slow spell of the VM then falls on every peer.

Every figure is measured in this run; a peer that cannot run, or a measurement that fails
or times out, is reported as such, never estimated. The task records its start time through
bench/peers/recorder.py (a per-process buffer sent to Redis every 20 ms), so drains are
timed from the first job start to the last one, and also from launching the workers
(interpreter start-up and imports included) to the last job.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / "bench" / "peers"
VENVS = REPO / "bench" / ".venvs"
DOCS = REPO / "docs"
sys.path.insert(0, str(PEERS_DIR))

from resp import Redis  # noqa: E402  (bench/peers is not a package the project installs)

#: What each peer's venv gets from PyPI. hiredis goes to every peer whose client is redis-py,
#: which uses it when present: the parser is not what should tell the queues apart.
REQUIREMENTS: dict[str, list[str]] = {
    "celery": ["celery[redis]", "hiredis"],
    "rq": ["rq", "hiredis"],
    "dramatiq": ["dramatiq[redis]", "hiredis"],
    "arq": ["arq", "hiredis"],
    "saq": ["saq[redis]", "hiredis", "typing_extensions"],  # saq 0.26 imports it undeclared
    "taskiq": ["taskiq", "taskiq-redis", "hiredis"],
    "huey": ["huey", "redis", "hiredis"],
    "streaq": ["streaq"],  # its client is coredis, not redis-py,
    "plot": ["matplotlib"],
}
PEERS = ["taskmill", "celery", "rq", "dramatiq", "arq", "saq", "taskiq", "huey", "streaq"]
STAMP = "bench-requirements.txt"


class BenchError(Exception):
    """A measurement that could not complete (timeout, lost jobs, failed process)."""


class TimedOut(BenchError):
    """Not every job ran within --timeout; what had run by then."""

    def __init__(self, message: str, count: int, first: float, last: float) -> None:
        super().__init__(message)
        self.count, self.first, self.last = count, first, last


#: The measurements by kind, as --only names them; a run takes them in this order.
SECTIONS = ("enqueue", "drain", "latency")


def loopback_us(url: str, count: int = 2_000) -> float:
    """The median PING round trip to the server, in µs: how fast this machine's loopback is
    at that moment (on a VM it changes within minutes, and every one-call figure with it)."""
    times = []
    with Redis(url) as redis:
        for _ in range(count):
            began = time.perf_counter()
            redis.execute("PING")
            times.append(time.perf_counter() - began)
    return round(sorted(times)[count // 2] * 1e6, 1)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes --------------------------------------------------------------------------------


class Procs:
    """Every child process still running, so that a timeout or the watchdog can end them."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def start(self, argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path) -> Any:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a stop reaches its children too
            )
        with self.lock:
            self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        # Children that outlived their parent (a pool's processes) share its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with self.lock:
            if proc in self.live:
                self.live.remove(proc)

    def stop_all(self, grace: float = 2.0) -> None:
        with self.lock:
            procs = list(self.live)
        for proc in procs:
            self.stop(proc, grace)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_redis(procs: Procs, scratch: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(scratch), "--protected-mode", "no"]
    proc = procs.start(argv, scratch / "redis.log", dict(os.environ), scratch)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with Redis(url) as redis:
                    redis.execute("PING")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(
                        f"redis-server did not start: {tail(scratch / 'redis.log')}"
                    ) from None
                time.sleep(0.05)
        yield url
    finally:
        procs.stop(proc)


def tail(log: Path, lines: int = 12) -> str:
    if not log.exists():
        return "(no output)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"


# -- venvs ------------------------------------------------------------------------------------


def ensure_venv(
    name: str,
    timeout: float = 900.0,
    *,
    requirements: Sequence[str] | None = None,
    interpreter: str = "python3",
) -> Path:
    """bench/.venvs/<name> with `requirements` (REQUIREMENTS[name] unless given), made by
    `interpreter` on first use; its python."""
    requirements = list(REQUIREMENTS[name] if requirements is None else requirements)
    venv = VENVS / name
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements) + "\n"
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    progress(f"installing {name} into {venv.relative_to(REPO)} ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "--quiet", *requirements]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"pip install {' '.join(requirements)} failed:\n{done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


# -- one peer ---------------------------------------------------------------------------------


@dataclass
class PeerRun:
    """A peer's driver and workers, against the private server."""

    name: str
    python: Path
    url: str
    scratch: Path
    procs: Procs
    info: dict[str, Any] = field(default_factory=dict)
    #: Set for the driver and workers too (BENCH_QUEUE_URL, when the queue is elsewhere).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        paths = [str(PEERS_DIR)] + ([str(REPO)] if self.name == "taskmill" else [])
        return {
            **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
            "BENCH_REDIS_URL": self.url,
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def driver(self, *args: str, timeout: float) -> dict[str, Any]:
        """Run one driver command; its JSON line. Raises BenchError on failure."""
        script = PEERS_DIR / f"{self.name}_driver.py"
        log = self.scratch / f"{self.name}-driver-{args[0]}.log"
        proc = self.procs.start([str(self.python), str(script), *args], log, self.env, PEERS_DIR)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc, 1.0)
            raise BenchError(
                f"driver {' '.join(args)} still running after {timeout:.0f}s"
            ) from None
        self.procs.stop(proc)
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
        try:
            out: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise BenchError(f"driver {' '.join(args)} said no JSON:\n{tail(log)}") from None
        if "error" in out:
            detail = "" if out["error"].startswith("not available") else f"\n{tail(log)}"
            raise BenchError(f"{out['error']}{detail}")
        return out

    def workers(self, mode: str, count: int, burst: bool = True) -> list[subprocess.Popen[bytes]]:
        spec = self.info["workers"][mode]
        argv = [a for a in spec["argv"] if burst or a not in ("--burst", "--one-shot")]
        env = {**self.env, **spec["env"]}
        return [
            self.procs.start(argv, self.scratch / f"{self.name}-{mode}-{i}.log", env, PEERS_DIR)
            for i in range(count)
        ]

    def worker_logs(self, mode: str, count: int) -> str:
        return "\n".join(
            f"--- worker {i}:\n{tail(self.scratch / f'{self.name}-{mode}-{i}.log')}"
            for i in range(count)
        )


def flush(url: str) -> None:
    with Redis(url) as redis:
        redis.execute("FLUSHALL")


def recorded(url: str) -> tuple[int, float, float]:
    """(jobs recorded, first start, last start) from the recorder's hash."""
    with Redis(url) as redis:
        reply = redis.execute("HMGET", "bench:agg", "count", "first", "last")
    assert isinstance(reply, list)
    count, first, last = (r if isinstance(r, bytes) else b"0" for r in reply)
    return int(count), float(first), float(last)


def wait_recorded(
    run: PeerRun, n: int, timeout: float, workers: list[subprocess.Popen[bytes]]
) -> tuple[int, float, float]:
    """Poll until n jobs are recorded; BenchError on timeout or when every worker died."""
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    while True:
        count, first, last = recorded(run.url)
        if count >= n:
            return count, first, last
        now = time.monotonic()
        if all(w.poll() is not None for w in workers):
            # A burst worker may exit a moment before its last records arrive.
            gone_since = gone_since or now
            if now - gone_since > 2.0:
                raise BenchError(f"workers exited with {count:,} of {n:,} jobs done")
        if now > deadline:
            message = f"{count:,} of {n:,} jobs done after {timeout:.0f}s (--timeout)"
            raise TimedOut(message, count, first, last)
        time.sleep(0.01)


# -- the measurements -------------------------------------------------------------------------


def measure_enqueue(run: PeerRun, n: int, bulk: bool, timeout: float) -> dict[str, Any]:
    flush(run.url)
    args = ["enqueue", "--n", str(n)] + (["--bulk"] if bulk else [])
    out = run.driver(*args, timeout=timeout)
    return {"jobs": n, "seconds": out["seconds"], "jobs_per_s": n / out["seconds"]}


def measure_drain(
    run: PeerRun, n: int, mode: str, processes: int, timeout: float
) -> dict[str, Any]:
    flush(run.url)
    filled = run.driver("fill", "--n", str(n), timeout=timeout)
    launched = time.time()
    workers = run.workers(mode, processes)
    partial = False
    try:
        try:
            count, first, last = wait_recorded(run, n, timeout, workers)
        except TimedOut as exc:
            if exc.count < 100:
                raise BenchError(f"{exc}\n{run.worker_logs(mode, processes)}") from None
            # A peer this slow still has a rate: the jobs it ran in the time it had.
            count, first, last, partial = exc.count, exc.first, exc.last, True
            progress(f"    {exc}: reporting the rate of those")
        except BenchError as exc:
            raise BenchError(f"{exc}\n{run.worker_logs(mode, processes)}") from None
    finally:
        for worker in workers:
            run.procs.stop(worker)
    # More runs than jobs: some ran twice. The rate is still what the workers did; the
    # report flags it, since a job may also not have run yet when the count was reached.
    duplicates = max(0, count - n)
    span = max(last - first, 1e-9)
    wall = last - launched
    return {
        "mode": mode,
        "processes": processes,
        "concurrency": run.info["workers"][mode]["concurrency"],
        "queued": n,
        "jobs": count,
        "partial": partial,
        "duplicates": duplicates,
        "fill_seconds": round(filled["seconds"], 3),
        "span_seconds": round(span, 4),
        "wall_seconds": round(wall, 4),
        "startup_seconds": round(first - launched, 4),
        "jobs_per_s": count / span,
        "wall_jobs_per_s": count / wall,
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure_latency(run: PeerRun, rate: float, seconds: float, timeout: float) -> dict[str, Any]:
    """One long-running worker at its default settings; jobs paced at `rate` per second."""
    flush(run.url)
    workers = run.workers("default", 1, burst=False)
    try:
        # Warm up: the worker is up and has run jobs before the timed ones are sent.
        run.driver("pace", "--rate", "20", "--seconds", "0.5", timeout=timeout)
        wait_recorded(run, 10, timeout, workers)
        with Redis(run.url) as redis:
            redis.execute("DEL", "bench:agg", "bench:latency")
        paced = run.driver("pace", "--rate", str(rate), "--seconds", str(seconds), timeout=timeout)
        total = paced["jobs"]
        wait_recorded(run, total, timeout, workers)
        with Redis(run.url) as redis:
            reply = redis.execute("LRANGE", "bench:latency", 0, -1)
    except BenchError as exc:
        raise BenchError(f"{exc}\n{run.worker_logs('default', 1)}") from None
    finally:
        for worker in workers:
            run.procs.stop(worker)
    assert isinstance(reply, list)
    latencies = [float(x) for x in reply if isinstance(x, bytes)]
    if len(latencies) != total:
        raise BenchError(f"{len(latencies)} latencies for {total} jobs")
    return {
        "jobs": total,
        "rate": rate,
        "seconds": seconds,
        "pacer_max_late_ms": round(paced["max_late"] * 1e3, 3),
        "samples": latencies,
    }


def latency_summary(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """measure_latency's rounds of one peer as one figure: the percentiles of all their
    samples, and each round's p50 to show how far they differ."""
    samples = [x for part in rounds for x in part["samples"]]
    return {
        "jobs": len(samples),
        "rate": rounds[0]["rate"],
        "seconds": sum(part["seconds"] for part in rounds),
        "rounds_p50_ms": [percentile(part["samples"], 50) * 1e3 for part in rounds],
        "pacer_max_late_ms": max(part["pacer_max_late_ms"] for part in rounds),
        **{f"p{q}_ms": percentile(samples, q) * 1e3 for q in (50, 95, 99)},
        "max_ms": max(samples) * 1e3,
    }


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    get: Callable[[dict[str, Any]], float | None]
    higher_is_better: bool = True


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        value: Any = result
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return float(value)

    return get


FIGURES = [
    Figure(
        "enqueue_single",
        "enqueue, one call at a time",
        "jobs/s",
        _get("enqueue_single", "jobs_per_s"),
    ),
    Figure("enqueue_bulk", "enqueue, bulk API", "jobs/s", _get("enqueue_bulk", "jobs_per_s")),
    Figure(
        "drain_default",
        "drain, 1 process, default concurrency",
        "jobs/s",
        _get("drain_default", "jobs_per_s"),
    ),
    Figure(
        "drain_tuned",
        "drain, 1 process, tuned concurrency",
        "jobs/s",
        _get("drain_tuned", "jobs_per_s"),
    ),
    Figure(
        "drain_per_core",
        "drain, 1 process per core (tuned)",
        "jobs/s",
        _get("drain_per_core", "jobs_per_s"),
    ),
    Figure("latency_p50", "enqueue-to-start latency p50", "ms", _get("latency", "p50_ms"), False),
    Figure("latency_p95", "enqueue-to-start latency p95", "ms", _get("latency", "p95_ms"), False),
    Figure("latency_p99", "enqueue-to-start latency p99", "ms", _get("latency", "p99_ms"), False),
]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    yield line(headers)
    yield line(["-" * w for w in widths])
    yield from (line(r) for r in rows)


def number(value: float, unit: str) -> str:
    return f"{value:,.2f}" if unit == "ms" else f"{value:,.0f}"


def setting(figure: str, result: dict[str, Any]) -> str:
    workers = result.get("info", {}).get("workers", {})
    if figure.startswith("drain_"):
        mode = "default" if figure == "drain_default" else "tuned"
        processes = (os.cpu_count() or 1) if figure == "drain_per_core" else 1
        drain = result.get(figure) or {"processes": processes, **workers.get(mode, {})}
        return f"{drain['processes']} x {drain.get('concurrency', '?')}"
    if figure.startswith("latency"):
        return f"1 x {workers['default']['concurrency']}" if workers else ""
    if figure == "enqueue_bulk":
        return str(result.get("info", {}).get("bulk_api") or "")
    if figure == "enqueue_single":
        return str(result.get("info", {}).get("single_api") or "")
    return ""


def report(
    data: dict[str, Any],
    title: str = "taskmill vs peers on Redis (no-op task; a private redis-server per peer and "
    "kind, FLUSHALL between runs)",
) -> str:
    results: dict[str, dict[str, Any]] = data["results"]
    params = data["params"]
    machine = data["machine"]
    server = data.get("server") or f"redis {data['redis_version']}"
    out = [
        title,
        f"machine: {machine['cores']} cores, {machine['cpu']}; {machine['python']}; "
        f"{server}; load before: {machine['load_before']}",
        f"N: single enqueue {params['single']:,}, bulk {params['bulk']:,}, drain "
        f"{params['drain']:,}; latency {params['rate']:g} jobs/s for {params['seconds']:g} s"
        + (f" in {params['rounds']} rounds" if params.get("rounds", 1) > 1 else ""),
        "drain jobs/s: first job start to last job start; 'wall' counts from launching the "
        "worker(s), start-up included",
        "vs taskmill: the peer's figure / taskmill's (for latency, above 1 is slower)",
    ]
    if data.get("loopback_us"):
        rtts = ", ".join(f"{k} {v:g}" for k, v in data["loopback_us"].items())
        out.insert(2, f"loopback PING round trip before each kind of measurement (µs): {rtts}")
    base = results.get("taskmill", {})
    partial = twice = False
    for fig in FIGURES:
        rows = []
        mine = fig.get(base)
        for name, result in results.items():
            value = fig.get(result)
            error = result.get("errors", {}).get(fig.key)
            if value is None:
                shown = (
                    "n/a"
                    if error is None
                    else "FAILED"
                    if "not available" not in error
                    else "not available"
                )
                if fig.key == "enqueue_bulk" and error is None:
                    shown = "no bulk API"
                rows.append([name, setting(fig.key, result), shown, "", ""])
                continue
            ratio = f"{value / mine:.2f}x" if mine else "n/a"
            extra = ""
            if fig.key.startswith("drain"):
                extra = f"{number(result[fig.key]['wall_jobs_per_s'], 'jobs/s')}"
            shown = number(value, fig.unit)
            if fig.key.startswith("drain") and result[fig.key]["partial"]:
                shown += "*"
                partial = True
            if fig.key.startswith("drain") and result[fig.key].get("duplicates"):
                shown += f" ({result[fig.key]['duplicates']} ran twice!)"
                twice = True
            rows.append([name, setting(fig.key, result), shown, ratio, extra])
        headers = [
            "peer",
            "setting",
            fig.unit,
            "vs taskmill",
            "wall jobs/s" if fig.key.startswith("drain") else "",
        ]
        out += ["", f"{fig.label}"]
        out += table(headers, rows)
    if partial:
        out += [
            "",
            f"*: stopped at --timeout ({params['timeout']:g} s) before every job ran; "
            "the rate of the jobs that did (see the JSON)",
        ]
    if twice:
        out += [
            "",
            "ran twice!: the tasks recorded more runs than jobs were queued (some were delivered "
            "again while or after they ran); the rate counts every run",
        ]
    errors = [
        f"  {name} {key}: {msg.splitlines()[0]}"
        for name, result in results.items()
        for key, msg in result.get("errors", {}).items()
    ]
    if errors:
        out += ["", "not measured:", *errors]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def chart(json_path: Path, png_path: Path, procs: Procs, scratch: Path) -> None:
    python = ensure_venv("plot")
    log = scratch / "plot.log"
    proc = procs.start(
        [str(python), str(PEERS_DIR / "plot.py"), str(json_path), str(png_path)],
        log,
        dict(os.environ),
        PEERS_DIR,
    )
    try:
        proc.wait(120)
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"plot failed:\n{tail(log)}")


# -- main -------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--peers", help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--only", choices=SECTIONS)
    parser.add_argument("--single", type=int, help="jobs per single-call enqueue (5,000)")
    parser.add_argument("--bulk", type=int, help="jobs per bulk enqueue (20,000)")
    parser.add_argument("--drain", type=int, help="jobs per drain (20,000)")
    parser.add_argument("--rate", type=float, default=100.0, help="latency: jobs/s (100)")
    parser.add_argument("--seconds", type=float, help="latency: seconds of pacing (10)")
    parser.add_argument(
        "--rounds", type=int, help="latency: rounds the seconds are split into (3; --quick 2)"
    )
    parser.add_argument("--timeout", type=float, help="seconds one measurement may take (120)")
    parser.add_argument("--max-time", type=float, default=2400.0, help="seconds for the run")
    parser.add_argument("--json", type=Path, default=DOCS / "bench-redis.json")
    parser.add_argument("--png", type=Path, default=DOCS / "bench-redis.png")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    quick = args.quick
    args.single = args.single or (500 if quick else 5_000)
    args.bulk = args.bulk or (2_000 if quick else 20_000)
    args.drain = args.drain or (2_000 if quick else 20_000)
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.rounds = max(1, args.rounds or (2 if quick else 3))
    args.timeout = args.timeout or (60.0 if quick else 120.0)
    args.peers = args.peers.split(",") if args.peers else PEERS
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return args


def run_peer(
    name: str,
    args: argparse.Namespace,
    url: str,
    procs: Procs,
    scratch: Path,
    *,
    venv: Callable[[str], Path] = ensure_venv,
    extra_env: dict[str, str] | None = None,
    reset: Callable[[PeerRun], None] | None = None,
) -> dict[str, Any]:
    """Every measurement of one peer. venv: makes the peer's venv; reset: empties the
    peer's queue before each measurement (the recorder's server is flushed anyway)."""
    result: dict[str, Any] = {"errors": {}}
    errors: dict[str, str] = result["errors"]
    figures = [f.key for f in FIGURES if f.key.startswith(args.only or "")]

    def fail_all(message: str) -> dict[str, Any]:
        errors.update(dict.fromkeys(figures, message))
        return result

    try:
        python = Path(sys.executable) if name == "taskmill" else venv(name)
    except (BenchError, subprocess.SubprocessError) as exc:
        return fail_all(f"install failed: {exc}")
    run = PeerRun(name, python, url, scratch, procs, extra_env=dict(extra_env or {}))
    try:
        run.info = run.driver("info", timeout=args.timeout)
    except BenchError as exc:
        return fail_all(str(exc))
    result["info"] = run.info
    if run.info.get("unavailable"):
        return fail_all(f"not available: {run.info['unavailable']}")

    def attempt(key: str, measure: Callable[[], dict[str, Any]]) -> None:
        progress(f"  {name}: {key} ...")
        try:
            if reset is not None:
                reset(run)
            result[key] = measure()
        except BenchError as exc:
            errors[key] = str(exc)
            progress(f"  {name}: {key} FAILED: {exc}")

    if args.only in (None, "enqueue"):
        attempt("enqueue_single", lambda: measure_enqueue(run, args.single, False, args.timeout))
        if run.info.get("bulk_api"):
            attempt("enqueue_bulk", lambda: measure_enqueue(run, args.bulk, True, args.timeout))
    if args.only in (None, "drain"):
        cores = os.cpu_count() or 1
        for key, mode, processes in (
            ("drain_default", "default", 1),
            ("drain_tuned", "tuned", 1),
            ("drain_per_core", "tuned", cores),
        ):

            def drain(mode: str = mode, processes: int = processes) -> dict[str, Any]:
                return measure_drain(run, args.drain, mode, processes, args.timeout)

            attempt(key, drain)
    if args.only in (None, "latency"):
        attempt("latency", lambda: measure_latency(run, args.rate, args.seconds, args.timeout))
        for key in ("latency_p50", "latency_p95", "latency_p99"):
            if "latency" in errors:
                errors[key] = errors["latency"]
        errors.pop("latency", None)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    procs = Procs()
    scratch = Path(tempfile.mkdtemp(prefix="taskmill-redis-bench-"))

    def give_up() -> None:
        print(
            f"\nredis_bench: gave up after {args.max_time:.0f}s (--max-time); stacks:",
            file=sys.stderr,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        procs.stop_all(grace=0.5)
        shutil.rmtree(scratch, ignore_errors=True)
        os._exit(3)

    timer = threading.Timer(args.max_time, give_up)
    timer.daemon = True
    timer.start()
    data: dict[str, Any] = {"machine": machine(), "params": {}, "results": {}}
    try:
        with private_redis(procs, scratch) as url, Redis(url) as redis:
            server = redis.execute("INFO", "server")
        assert isinstance(server, bytes)
        data["redis_version"] = next(
            line.split(":", 1)[1]
            for line in server.decode().splitlines()
            if line.startswith("redis_version:")
        )
        data["params"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        # Kind by kind, every peer in turn: a slow spell of the machine then falls on a few
        # neighbouring measurements of every peer, not on all of one peer's. Latency, the
        # figure a passing spell moves most, is taken in rounds, the peers' order turned each
        # time, and each peer's samples pooled. Each peer's turn gets a server of its own,
        # which inherits nothing (keyspace, allocator) from another peer's measurements.
        data["loopback_us"] = {}
        for section in [args.only] if args.only else SECTIONS:
            rounds = args.rounds if section == "latency" else 1
            section_args = argparse.Namespace(
                **{**vars(args), "only": section, "seconds": args.seconds / rounds}
            )
            for r in range(rounds):
                turn = r * len(args.peers) // rounds
                for name in args.peers[turn:] + args.peers[:turn]:
                    progress(f"{name}: {section}" + (f" {r + 1}/{rounds}" if rounds > 1 else ""))
                    with private_redis(procs, scratch) as url:
                        if section not in data["loopback_us"]:
                            data["loopback_us"][section] = loopback_us(url)
                        part = run_peer(name, section_args, url, procs, scratch)
                    result = data["results"].setdefault(name, {"errors": {}})
                    result["errors"].update(part.pop("errors"))
                    if "latency" in part:
                        result.setdefault("latency_rounds", []).append(part.pop("latency"))
                    result.update(part)
        for result in data["results"].values():
            if "latency_rounds" in result:
                result["latency"] = latency_summary(result.pop("latency_rounds"))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(report(data))
        print(f"\nJSON: {args.json}")
        if not args.no_chart:
            try:
                chart(args.json, args.png, procs, scratch)
                print(f"chart: {args.png}")
            except (BenchError, subprocess.SubprocessError) as exc:
                print(f"chart: not written: {exc}")
    finally:
        timer.cancel()
        procs.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
