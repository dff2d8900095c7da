"""RQ: `queue.enqueue('rq_driver.noop', t)`; bulk: `queue.enqueue_many(...)` (one pipeline).

Default: `rq worker --burst`, which forks a work horse per job (so each job's record is
sent at once: BENCH_RECORD_SYNC=1). Tuned: `--worker-class rq.worker.SimpleWorker`, which runs
jobs in the worker process itself. An RQ worker runs one job at a time: no concurrency knob.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, URL, Peer, Worker, serve
from recorder import record
from redis import Redis
from rq import Queue

NOOP = "rq_driver.noop"


def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    redis = Redis.from_url(URL)
    queue = Queue(connection=redis)
    redis.ping()

    def send(enqueued_at: float) -> None:
        queue.enqueue(NOOP, enqueued_at)

    def send_many(times: list[float]) -> None:
        queue.enqueue_many([Queue.prepare_data(NOOP, (t,)) for t in times])

    return send, send_many, redis.close


def worker(flags: list[str], concurrency: str, note: str, env: dict[str, str]) -> Worker:
    argv = [os.path.join(BIN, "rq"), "worker", "--burst", "--url", URL, "-q", *flags]
    return Worker(argv, concurrency, note, env)


if __name__ == "__main__":
    serve(
        Peer(
            name="rq",
            version=importlib.metadata.version("rq"),
            connect=connect,
            default=worker([], "fork per job", "rq's default Worker", {"BENCH_RECORD_SYNC": "1"}),
            tuned=worker(
                ["--worker-class", "rq.worker.SimpleWorker"],
                "SimpleWorker",
                "no fork per job",
                {},
            ),
            single_api="queue.enqueue(name, t)",
            bulk_api="queue.enqueue_many([Queue.prepare_data(...)])",
        )
    )
