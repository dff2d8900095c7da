"""taskiq with taskiq-redis: `await task.kiq(t)`; no bulk API.

RedisStreamBroker, the broker taskiq-redis recommends (acknowledged deliveries). Workers:
`taskiq worker taskiq_driver:broker --workers 1`. Default: --max-async-tasks 100 (taskiq's
default). Tuned: --max-async-tasks 500 --max-prefetch 100. No burst mode: the harness stops
the worker once every job is recorded.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, URL, Peer, Worker, serve
from recorder import record
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=URL)


@broker.task(task_name="noop")
async def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    import taskiq_driver  # the module as the worker imports it

    await taskiq_driver.broker.startup()
    return taskiq_driver.noop.kiq, None, taskiq_driver.broker.shutdown


def worker(flags: list[str], concurrency: str, note: str) -> Worker:
    argv = [os.path.join(BIN, "taskiq"), "worker", "taskiq_driver:broker", "--workers", "1"]
    return Worker([*argv, *flags], concurrency, note)


if __name__ == "__main__":
    serve(
        Peer(
            name="taskiq",
            version=importlib.metadata.version("taskiq"),
            connect=connect,
            default=worker([], "max-async-tasks 100", "taskiq's defaults"),
            tuned=worker(
                ["--max-async-tasks", "500", "--max-prefetch", "100"],
                "max-async-tasks 500",
                "--max-prefetch 100",
            ),
            single_api="await task.kiq(t)",
            notes=[f"taskiq-redis {importlib.metadata.version('taskiq-redis')}"],
        )
    )
