"""huey: calling the task enqueues it; no bulk API. Workers: `huey_consumer huey_driver.huey`.

RedisHuey (blocking pops, no polling). Default: -w 1 -k thread (huey's defaults: one
worker thread). Tuned: -w 8 -k thread. No burst mode: the harness stops the consumer once
every job is recorded.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from driver import BIN, URL, Peer, Worker, serve
from huey import RedisHuey
from recorder import record

huey = RedisHuey("bench", url=URL)


@huey.task()
def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    import huey_driver  # the module as the consumer imports it: task names carry it

    huey_driver.huey.storage.conn.ping()
    return huey_driver.noop, None, lambda: None


def worker(workers: int, note: str) -> Worker:
    argv = [os.path.join(BIN, "huey_consumer"), "huey_driver.huey", "-w", str(workers)]
    return Worker([*argv, "-k", "thread", "-q"], f"-w {workers} -k thread", note)


if __name__ == "__main__":
    serve(
        Peer(
            name="huey",
            version=importlib.metadata.version("huey"),
            connect=connect,
            default=worker(1, "huey's default"),
            tuned=worker(8, ""),
            single_api="task(t)",
        )
    )
