"""The protocol between the harness and a peer's driver script (standard library only).

A driver is `bench/peers/<peer>_driver.py`, run with the python of that peer's venv, with
BENCH_REDIS_URL set (the recorder's server), BENCH_QUEUE_URL where the queue lives when it
is elsewhere (PostgreSQL), and this folder on PYTHONPATH. It is also the module the peer's worker
imports: it defines the no-op task (which calls recorder.record) and ends with
`serve(Peer(...))`, guarded by `if __name__ == "__main__"`. Commands, each printing ONE line
of JSON on stdout:

    info                          version, bulk API or none, the worker commands
    enqueue --n N [--bulk]        time N enqueues of the no-op: {"jobs", "seconds"}
    fill --n N                    queue N jobs, the fastest way the peer has (not timed)
    pace --rate R --seconds S     enqueue R jobs/s for S s, each carrying time.time()
    setup                         create the peer's schema in an empty database, if it has one

An error prints {"error": "..."} and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Where the peer's queue lives: the Redis server itself unless said otherwise.
QUEUE_URL = os.environ.get("BENCH_QUEUE_URL", URL)
BIN = os.path.dirname(sys.executable)

#: enqueue one job carrying its enqueue time (0.0: none)
Send = Callable[[float], Awaitable[None] | None]
#: enqueue the jobs of a list of enqueue times in one bulk call
SendMany = Callable[[list[float]], Awaitable[None] | None]


@dataclass
class Worker:
    """One worker process: argv (a venv console script first), and why these settings."""

    argv: list[str]
    concurrency: str
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Peer:
    name: str
    version: str
    #: An async context: set up a client, return (send, send_many or None, close).
    connect: Callable[[], Awaitable[tuple[Send, SendMany | None, Callable[[], Any]]]]
    default: Worker
    tuned: Worker
    bulk_api: str = ""
    single_api: str = ""
    notes: list[str] = field(default_factory=list)
    #: Why this peer cannot run here (empty: it can).
    unavailable: str = ""
    #: Creates the peer's schema in an empty database (None: it needs none).
    setup: Callable[[], Coroutine[Any, Any, None]] | None = None


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


async def _run(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    send, send_many, close = await peer.connect()
    try:
        if args.command == "enqueue":
            if args.bulk:
                if send_many is None:
                    return {"error": "no bulk API"}
                start = time.perf_counter()
                await _call(send_many, [0.0] * args.n)
            else:
                start = time.perf_counter()
                for _ in range(args.n):
                    await _call(send, 0.0)
            return {"jobs": args.n, "seconds": time.perf_counter() - start}
        if args.command == "fill":
            start = time.perf_counter()
            if send_many is not None:
                for first in range(0, args.n, 5_000):
                    await _call(send_many, [0.0] * min(5_000, args.n - first))
            else:
                for _ in range(args.n):
                    await _call(send, 0.0)
            return {"jobs": args.n, "seconds": time.perf_counter() - start}
        if args.command == "pace":
            total = round(args.rate * args.seconds)
            start = time.perf_counter()
            late = 0.0
            for i in range(total):
                due = start + i / args.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    late = max(late, -wait)
                await _call(send, time.time())
            return {"jobs": total, "seconds": time.perf_counter() - start, "max_late": late}
        raise ValueError(args.command)
    finally:
        await _call(close)


def serve(peer: Peer) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["info", "enqueue", "fill", "pace", "setup"])
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--bulk", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    try:
        if args.command == "info":
            out: dict[str, Any] = {
                "name": peer.name,
                "version": peer.version,
                "python": sys.version.split()[0],
                "single_api": peer.single_api,
                "bulk_api": peer.bulk_api,
                "notes": peer.notes,
                "unavailable": peer.unavailable,
                "workers": {
                    "default": peer.default.__dict__,
                    "tuned": peer.tuned.__dict__,
                },
            }
        elif peer.unavailable:
            out = {"error": f"not available: {peer.unavailable}"}
        elif args.command == "setup":
            if peer.setup is not None:
                asyncio.run(peer.setup())
            out = {}
        else:
            out = asyncio.run(_run(peer, args))
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)
    sys.exit(1 if "error" in out else 0)
