"""procrastinate on PostgreSQL: `await noop.defer_async(enqueued_at=t)`, bulk
`await noop.batch_defer_async(...)`. Workers: `procrastinate --app ... worker`.

Default: its default concurrency (1). Tuned: concurrency 10, as the issue measured it.
`--one-shot` exits once no job is left. The schema is procrastinate's own (`setup`).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import procrastinate
from driver import BIN, QUEUE_URL, Peer, Worker, serve
from recorder import record

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=QUEUE_URL))


@app.task(name="noop", queue="default")
async def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    await app.open_async()

    async def send(enqueued_at: float) -> None:
        await noop.defer_async(enqueued_at=enqueued_at)

    async def send_many(times: list[float]) -> None:
        await noop.batch_defer_async(*({"enqueued_at": t} for t in times))

    return send, send_many, app.close_async


async def setup() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def worker(concurrency: int, note: str) -> Worker:
    argv = [os.path.join(BIN, "procrastinate"), "--app", "procrastinate_driver.app", "worker"]
    argv += ["--concurrency", str(concurrency), "--one-shot"]
    return Worker(argv, f"--concurrency {concurrency}", note)


if __name__ == "__main__":
    serve(
        Peer(
            name="procrastinate",
            version=importlib.metadata.version("procrastinate"),
            connect=connect,
            setup=setup,
            default=worker(1, "procrastinate's default"),
            tuned=worker(10, ""),
            single_api="await noop.defer_async(enqueued_at=t)",
            bulk_api="await noop.batch_defer_async(...)",
        )
    )
