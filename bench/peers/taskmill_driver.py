"""taskmill, driven like the peers: `task.enqueue` one call at a time, `app.enqueue_many` in bulk.

Run with the project's venv, on the queue URL the harness gives (Redis or PostgreSQL). A
backend that cannot run here makes `info` say so, and the harness reports the row as not
available.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from typing import Any

from driver import BIN, QUEUE_URL, Peer, Send, SendMany, Worker, serve


async def connect() -> tuple[Send, SendMany | None, Callable[[], Any]]:
    os.environ["TASKMILL_URL"] = QUEUE_URL
    from taskmill_app import app, noop  # the worker imports it as bench.peers.taskmill_app

    # The sync API, as a user calls it; connected outside the timing, as the peers' clients
    # are.
    app.connect()

    def send(enqueued_at: float) -> None:
        noop.enqueue(enqueued_at)

    def send_many(times: list[float]) -> None:
        app.enqueue_many([noop.prepare(t) for t in times])

    return send, send_many, app.close


async def setup() -> None:
    from taskmill.backends import connect

    backend = connect(QUEUE_URL)
    await backend.open()  # creates the schema, where the backend has one
    await backend.close()


def available() -> str:
    """Empty if taskmill can run on the queue URL here, else why not."""
    from taskmill.backends import connect
    from taskmill.errors import TaskmillError

    try:
        connect(QUEUE_URL)  # not opened: this only checks the scheme and the imports
    except (TaskmillError, ImportError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def worker(concurrency: int) -> Worker:
    return Worker(
        argv=[
            os.path.join(BIN, "taskmill"),
            "worker",
            "--app",
            "bench.peers.taskmill_app:app",
            "--burst",
            "--concurrency",
            str(concurrency),
            "--log-level",
            "WARNING",
        ],
        concurrency=f"--concurrency {concurrency}",
        env={"TASKMILL_URL": QUEUE_URL},
    )


if __name__ == "__main__":
    serve(
        Peer(
            name="taskmill",
            version=importlib.metadata.version("taskmill"),
            connect=connect,
            setup=setup,
            default=worker(10),
            tuned=worker(100),
            single_api="task.enqueue(t)",
            bulk_api="app.enqueue_many([task.prepare(t) ...])",
            unavailable=available(),
        )
    )
