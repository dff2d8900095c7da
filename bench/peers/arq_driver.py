"""arq: `await pool.enqueue_job(...)`; no bulk API. Workers: `arq arq_driver.<Settings> --burst`.

Default: WorkerSettings as documented (max_jobs=10, poll_delay=0.5 s, results kept 1 h).
Tuned: max_jobs=100, poll_delay=0.05 s (arq polls its queue rather than blocking), results
not kept (nobody reads them here).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from driver import BIN, URL, Peer, Worker, serve
from recorder import record

REDIS = RedisSettings.from_dsn(URL)


async def noop(ctx: dict[str, Any], enqueued_at: float) -> None:
    record(enqueued_at)


class WorkerSettings:
    functions = [noop]
    redis_settings = REDIS


class TunedSettings:  # arq reads a settings class's own __dict__: no inheritance
    functions = [noop]
    redis_settings = REDIS
    max_jobs = 100
    poll_delay = 0.05
    keep_result = 0


async def connect() -> Any:
    pool = await create_pool(REDIS)

    async def send(enqueued_at: float) -> None:
        await pool.enqueue_job("noop", enqueued_at)

    return send, None, pool.aclose


def worker(settings: str, concurrency: str, note: str) -> Worker:
    return Worker(
        [os.path.join(BIN, "arq"), f"arq_driver.{settings}", "--burst"], concurrency, note
    )


if __name__ == "__main__":
    serve(
        Peer(
            name="arq",
            version=importlib.metadata.version("arq"),
            connect=connect,
            default=worker("WorkerSettings", "max_jobs=10", "arq's defaults"),
            tuned=worker("TunedSettings", "max_jobs=100", "poll_delay=0.05, keep_result=0"),
            single_api="await pool.enqueue_job('noop', t)",
        )
    )
