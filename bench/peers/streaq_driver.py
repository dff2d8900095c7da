"""streaq: `await task.enqueue(t)`; bulk: `await worker.enqueue_many([...])` (a pipeline).

Workers: `streaq run streaq_driver:<worker> --burst`. Default: concurrency 16 (streaq's
default). Tuned: concurrency 100.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, URL, Peer, Worker, serve
from recorder import record
from streaq import Worker as StreaqWorker


def make(concurrency: int) -> StreaqWorker:
    worker = StreaqWorker(redis_url=URL, concurrency=concurrency)

    @worker.task(name="noop")
    async def noop(enqueued_at: float) -> None:
        record(enqueued_at)

    return worker


worker = make(16)
tuned = make(100)


async def connect() -> Any:
    import streaq_driver

    client = streaq_driver.worker
    noop = client.registry["noop"]
    await client.__aenter__()

    async def send(enqueued_at: float) -> None:
        await noop.enqueue(enqueued_at)

    async def send_many(times: list[float]) -> None:
        await client.enqueue_many([noop.enqueue(t) for t in times])

    async def close() -> None:
        await client.__aexit__(None, None, None)

    return send, send_many, close


def command(name: str, concurrency: str, note: str) -> Worker:
    argv = [os.path.join(BIN, "streaq"), "run", f"streaq_driver:{name}", "--burst"]
    return Worker(argv, concurrency, note)


if __name__ == "__main__":
    serve(
        Peer(
            name="streaq",
            version=importlib.metadata.version("streaq"),
            connect=connect,
            default=command("worker", "concurrency=16", "streaq's default"),
            tuned=command("tuned", "concurrency=100", ""),
            single_api="await task.enqueue(t)",
            bulk_api="await worker.enqueue_many([task.enqueue(t) ...])",
        )
    )
