"""Oban (Python) on PostgreSQL: `await Noop.enqueue({"t": t})`, bulk
`await oban.enqueue_many([...])`. Workers: `oban start --queues default:N`.

Default: limit 10 (its quick start's). Tuned: limit 100. Oban has no burst mode: the
harness stops the worker once every job is recorded. The schema is Oban's own (`setup`).
Oban needs Python 3.12: its venv is made with one.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, QUEUE_URL, Peer, Worker, serve
from oban import Oban, worker
from oban.schema import install
from psycopg_pool import AsyncConnectionPool
from recorder import record


@worker(queue="default")
class Noop:
    async def process(self, job: Any) -> None:
        record(job.args["t"])


async def connect() -> Any:
    # The worker resolves jobs by class path: enqueue the class of the importable module,
    # not that of __main__.
    from oban_driver import Noop as Importable

    pool = AsyncConnectionPool(QUEUE_URL, open=False)
    await pool.open()
    oban = Oban(pool=pool)
    await oban.__aenter__()

    async def send(enqueued_at: float) -> None:
        await Importable.enqueue({"t": enqueued_at})

    async def send_many(times: list[float]) -> None:
        await oban.enqueue_many([Importable.new({"t": t}) for t in times])

    async def close() -> None:
        await oban.__aexit__(None, None, None)
        await pool.close()

    return send, send_many, close


async def setup() -> None:
    async with AsyncConnectionPool(QUEUE_URL) as pool:
        await install(pool)


def start(limit: int, note: str) -> Worker:
    argv = [os.path.join(BIN, "oban"), "start", "--dsn", QUEUE_URL, "--queues"]
    argv += [f"default:{limit}", "--log-level", "WARNING"]
    return Worker(argv, f"--queues default:{limit}", note)


if __name__ == "__main__":
    serve(
        Peer(
            name="oban",
            version=importlib.metadata.version("oban"),
            connect=connect,
            setup=setup,
            default=start(10, "the limit of Oban's quick start"),
            tuned=start(100, ""),
            single_api='await Noop.enqueue({"t": t})',
            bulk_api="await oban.enqueue_many([Noop.new(...) ...])",
        )
    )
