"""Redis memory under taskmill: bytes per pending job, and whether memory plateaus.

    .venv/bin/python bench/redis_memory.py                 # 1,000,000 jobs, about 3 minutes
    .venv/bin/python bench/redis_memory.py --jobs 200000   # quicker

On a private `redis-server` (free loopback port, no persistence), with the no-op task of
bench/peers/taskmill_app.py and default settings (so the default retention: a queue keeps
its newest 100,000 finished jobs, see KEEP_FINISHED in taskmill/backends/redis.py):

1. **Pending**: `--pending` jobs enqueued; used_memory after minus before, per job.
2. **Sustained**: `--jobs` jobs enqueued in rounds of `--round` while two worker processes
   (`taskmill worker`, one per core) run them (the pending ones first); after each round,
   used_memory is sampled. The table shows memory against jobs processed; "plateau" compares
   the last sample with the one at the halfway point.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "bench" / "peers"
sys.path.insert(0, str(PEERS_DIR))

from resp import Redis  # noqa: E402

from redis_bench import Procs, private_redis  # noqa: E402  (bench/ is not a package)
from taskmill import App  # noqa: E402


def used_memory(url: str) -> int:
    with Redis(url) as redis:
        info = redis.execute("INFO", "memory")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("INFO memory has no used_memory")


def counts(app: App) -> dict[str, int]:
    (queue,) = app.run(_queues(app))
    return queue


async def _queues(app: App) -> list[dict[str, int]]:
    return [q.counts for q in await (await app.backend()).list_queues()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--round", type=int, default=50_000)
    parser.add_argument("--max-time", type=float, default=900.0, help="give up after (s)")
    args = parser.parse_args()
    procs = Procs()
    with tempfile.TemporaryDirectory() as scratch, private_redis(procs, Path(scratch)) as url:
        os.environ["TASKMILL_URL"] = url
        os.environ["BENCH_REDIS_URL"] = url
        from taskmill_app import app, noop

        empty = used_memory(url)
        for first in range(0, args.pending, 10_000):
            app.enqueue_many([noop.prepare(0.0) for _ in range(min(10_000, args.pending - first))])
        per_job = (used_memory(url) - empty) / args.pending
        print(f"pending: {args.pending:,} jobs take {per_job:,.0f} bytes each")

        env = {**os.environ, "PYTHONPATH": f"{PEERS_DIR}{os.pathsep}{ROOT}"}
        argv = [str(Path(sys.executable).parent / "taskmill"), "worker"]
        argv += ["--app", "bench.peers.taskmill_app:app", "--concurrency", "100"]
        argv += ["--log-level", "WARNING"]
        workers = [
            procs.start(argv, Path(scratch) / f"worker{i}.log", env, ROOT)
            for i in range(os.cpu_count() or 1)
        ]
        deadline = time.monotonic() + args.max_time
        samples: list[tuple[int, int]] = []
        enqueued = args.pending  # worked off first
        try:
            print(f"{'processed':>12}  {'used_memory':>14}  {'succeeded kept':>14}")
            while True:
                while (now := counts(app))["pending"] + now["running"] > 0:
                    if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                        print("stopped: out of time, or a worker exited", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
                samples.append((enqueued, used_memory(url)))
                print(f"{enqueued:>12,}  {samples[-1][1]:>14,}  {now['succeeded']:>14,}")
                if enqueued >= args.jobs:
                    break
                for _ in range(0, args.round, 10_000):
                    app.enqueue_many([noop.prepare(0.0) for _ in range(10_000)])
                enqueued += args.round
        finally:
            app.close()
            procs.stop_all()
        middle = min(samples, key=lambda s: abs(s[0] - samples[-1][0] / 2))
        growth = samples[-1][1] / middle[1] - 1
        print(
            f"plateau: {middle[1]:,} bytes after {middle[0]:,} jobs, {samples[-1][1]:,} after "
            f"{samples[-1][0]:,} ({growth:+.1%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
