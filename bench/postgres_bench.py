"""taskmill on PostgreSQL against procrastinate and Oban (Python), side by side, no-op tasks.

    .venv/bin/python bench/postgres_bench.py                   # full run (about 10 minutes)
    .venv/bin/python bench/postgres_bench.py --quick           # small sizes
    .venv/bin/python bench/postgres_bench.py --peers taskmill --only drain

The harness is redis_bench.py's (its drivers, measurements and report; see
bench/peers/README.md): here each peer's queue lives in a database of its own on the
PostgreSQL server given by --dsn (default: the local one), created for this run and dropped
after it; before every measurement it is dropped and created again, and the peer's driver
lays its schema in it (`setup`). The tasks record their start times through a private
redis-server, as in the Redis benchmark, so recording costs the queue under test nothing.
procrastinate and Oban are installed from PyPI into bench/.venvs/ on first use; Oban needs
Python 3.12, found on PATH or under pyenv.

The issue's targets are printed under the table.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from redis_bench import (
    DOCS,
    FIGURES,
    BenchError,
    PeerRun,
    Procs,
    ensure_venv,
    latency_summary,
    machine,
    private_redis,
    progress,
    report,
    run_peer,
)

PEERS = ["taskmill", "procrastinate", "oban"]
REQUIREMENTS = {
    "procrastinate": ["procrastinate", "psycopg[binary]"],
    "oban": ["oban", "psycopg[binary]"],
}
#: The oldest Python each peer runs on, when it is newer than this one.
PYTHONS = {"oban": (3, 12)}
#: The issue's targets for taskmill on this 2-core machine.
#: figure -> (what the issue asks, bound, True if the bound is a floor).
TARGETS: dict[str, tuple[str, float, bool]] = {
    "drain_tuned": ("drain >= 5,000 jobs/s", 5_000, True),
    "enqueue_bulk": ("bulk enqueue >= 30,000 jobs/s", 30_000, True),
    "latency_p50": ("latency p50 <= 2 ms at 100 jobs/s", 2.0, False),
    "latency_p99": ("latency p99 <= 10 ms at 100 jobs/s", 10.0, False),
}


def interpreter(version: tuple[int, int]) -> str:
    """A python of this version: one installed by pyenv (its shims only work for the
    versions selected), or one on PATH."""
    name = f"python{version[0]}.{version[1]}"
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"{version[0]}.{version[1]}.*/bin/python3"))
    found = str(candidates[-1]) if candidates else shutil.which(name)
    if found is None:
        raise BenchError(f"{name} is not installed (the peer needs it)")
    return found


def venv(name: str) -> Path:
    wanted = PYTHONS.get(name)
    python = "python3" if wanted is None or sys.version_info >= wanted else interpreter(wanted)
    return ensure_venv(name, requirements=REQUIREMENTS[name], interpreter=python)


def database_url(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


class Databases:
    """A database per peer on the server, made empty again before each measurement."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.made: set[str] = set()

    def name(self, peer: str) -> str:
        return f"taskmill_bench_{peer}"

    def url(self, peer: str) -> str:
        return database_url(self.dsn, self.name(peer))

    def reset(self, run: PeerRun) -> None:
        name = self.name(run.name)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
            conn.execute(f"CREATE DATABASE {name}".encode())
        self.made.add(name)
        run.driver("setup", timeout=120)

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--peers", help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--only", choices=["enqueue", "drain", "latency"])
    parser.add_argument("--single", type=int, help="jobs per single-call enqueue (3,000)")
    parser.add_argument("--bulk", type=int, help="jobs per bulk enqueue (50,000)")
    parser.add_argument("--drain", type=int, help="jobs per drain (20,000)")
    parser.add_argument("--rate", type=float, default=100.0, help="latency: jobs/s (100)")
    parser.add_argument("--seconds", type=float, help="latency: seconds of pacing (10)")
    parser.add_argument("--timeout", type=float, help="seconds one measurement may take (120)")
    parser.add_argument("--max-time", type=float, default=1800.0, help="seconds for the run")
    parser.add_argument("--json", type=Path, default=DOCS / "bench-postgres.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.single = args.single or (500 if quick else 3_000)
    args.bulk = args.bulk or (5_000 if quick else 50_000)
    args.drain = args.drain or (2_000 if quick else 20_000)
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.timeout = args.timeout or (60.0 if quick else 120.0)
    args.peers = args.peers.split(",") if args.peers else PEERS
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return args


def targets(data: dict[str, Any]) -> list[str]:
    mine = data["results"].get("taskmill", {})
    lines = ["", "targets (taskmill):"]
    for figure in FIGURES:
        if figure.key in TARGETS:
            label, bound, floor = TARGETS[figure.key]
            value = figure.get(mine)
            met = value is not None and (value >= bound if floor else value <= bound)
            verdict = "not measured" if value is None else ("met" if met else "MISSED")
            shown = "" if value is None else f" ({value:,.2f} {figure.unit})"
            lines.append(f"  {label}: {verdict}{shown}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    procs = Procs()
    scratch = Path(tempfile.mkdtemp(prefix="taskmill-postgres-bench-"))
    databases = Databases(args.dsn)

    def give_up() -> None:
        print(f"\npostgres_bench: gave up after {args.max_time:.0f}s; stacks:", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        procs.stop_all(grace=0.5)
        databases.drop()
        os._exit(3)

    timer = threading.Timer(args.max_time, give_up)
    timer.daemon = True
    timer.start()
    data: dict[str, Any] = {"machine": machine(), "params": {}, "results": {}}
    try:
        with psycopg.connect(args.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        data["server"] = f"PostgreSQL {row[0] if row else '?'}"
        data["params"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        with private_redis(procs, scratch) as recorder:
            for name in args.peers:
                progress(f"{name}:")
                extra = {"BENCH_QUEUE_URL": databases.url(name)}
                result = data["results"][name] = run_peer(
                    name, args, recorder, procs, scratch,
                    venv=venv, extra_env=extra, reset=databases.reset,
                )  # fmt: skip
                if "latency" in result:
                    result["latency"] = latency_summary([result["latency"]])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        title = (
            "taskmill vs peers on PostgreSQL (no-op task; a database per peer, made anew "
            "before each measurement)"
        )
        print(report(data, title))
        print("\n".join(targets(data)))
        print(f"\nJSON: {args.json}")
    finally:
        timer.cancel()
        procs.stop_all()
        databases.drop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
