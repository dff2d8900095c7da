"""Celery: `task.delay(t)`; no bulk API (a group publishes one message per task).

Redis as broker, no result backend (nobody reads the results of a no-op). Workers:
`celery -A celery_driver worker --without-gossip --without-mingle --without-heartbeat`, which
only skip cluster chatter at start-up (one worker here). Default: the prefork pool at its
default concurrency (one child per core). Tuned: the threads pool with 16 threads and a
prefetch multiplier of 16, so the worker holds enough messages to keep its threads busy.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from celery import Celery
from driver import BIN, URL, Peer, Worker, serve
from recorder import record

app = Celery("celery_driver", broker=URL)
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop(enqueued_at: float) -> None:
    record(enqueued_at)


async def connect() -> Any:
    import celery_driver  # this file as the worker imports it, not as __main__

    celery_driver.noop.delay(0.0)  # connect outside the timing...
    celery_driver.app.control.purge()  # ...and drop that job
    return celery_driver.noop.delay, None, lambda: None


def worker(flags: list[str], concurrency: str, note: str) -> Worker:
    argv = [os.path.join(BIN, "celery"), "-A", "celery_driver", "worker", "-l", "WARNING"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", *flags]
    return Worker(argv, concurrency, note)


if __name__ == "__main__":
    serve(
        Peer(
            name="celery",
            version=importlib.metadata.version("celery"),
            connect=connect,
            default=worker(["-P", "prefork"], "prefork -c 2", "default pool and concurrency"),
            tuned=worker(
                ["-P", "threads", "-c", "16", "--prefetch-multiplier", "16"],
                "threads -c 16",
                "threads pool, prefetch multiplier 16",
            ),
            single_api="task.delay(t)",
        )
    )
