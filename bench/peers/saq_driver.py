"""SAQ: `await queue.enqueue('noop', enqueued_at=t)`; no bulk API. Workers: `saq <settings>`.

Default: concurrency 10 (SAQ's default). Tuned: concurrency 100. SAQ has no burst mode: the
harness stops the worker once every job is recorded.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, URL, Peer, Worker, serve
from recorder import record
from saq import Queue

queue = Queue.from_url(URL)


async def noop(ctx: Any, *, enqueued_at: float) -> None:
    record(enqueued_at)


settings = {"queue": queue, "functions": [noop], "concurrency": 10}
tuned = {"queue": queue, "functions": [noop], "concurrency": 100}


async def connect() -> Any:
    await queue.connect()

    async def send(enqueued_at: float) -> None:
        await queue.enqueue("noop", enqueued_at=enqueued_at)

    return send, None, queue.disconnect


def worker(name: str, concurrency: str, note: str) -> Worker:
    argv = [os.path.join(BIN, "saq"), f"saq_driver.{name}", "--workers", "1", "--quiet"]
    return Worker(argv, concurrency, note)


if __name__ == "__main__":
    serve(
        Peer(
            name="saq",
            version=importlib.metadata.version("saq"),
            connect=connect,
            default=worker("settings", "concurrency=10", "SAQ's default"),
            tuned=worker("tuned", "concurrency=100", ""),
            single_api="await queue.enqueue('noop', enqueued_at=t)",
        )
    )
