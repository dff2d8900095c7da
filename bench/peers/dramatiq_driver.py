"""Dramatiq: `actor.send(t)`; no bulk API. Workers: `dramatiq dramatiq_driver -p 1 -t N`.

The RedisBroker with its default middleware. Default: one process with dramatiq's default
8 threads. Tuned: 32 threads (more threads in flight while the no-op holds the GIL briefly).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from driver import BIN, URL, Peer, Worker, serve
from recorder import record

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    return noop.send, None, broker.close


def worker(threads: int, note: str) -> Worker:
    argv = [os.path.join(BIN, "dramatiq"), "dramatiq_driver", "-p", "1", "-t", str(threads)]
    return Worker(argv, f"-p 1 -t {threads}", note)


if __name__ == "__main__":
    serve(
        Peer(
            name="dramatiq",
            version=importlib.metadata.version("dramatiq"),
            connect=connect,
            default=worker(8, "dramatiq's default threads"),
            tuned=worker(32, ""),
            single_api="actor.send(t)",
        )
    )
