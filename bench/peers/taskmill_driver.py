"""taskmill, driven like the peers: `task.enqueue` one call at a time, `app.enqueue_many` in bulk.

Run with the project's venv; the Redis backend is `redis://` (taskmill.backends.redis). Until
that backend exists, `info` says so and the harness reports the row as not available.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from typing import Any

from driver import BIN, URL, Peer, Send, SendMany, Worker, serve


async def connect() -> tuple[Send, SendMany | None, Callable[[], Any]]:
    os.environ["TASKMILL_URL"] = URL
    from taskmill_app import app, noop  # the worker imports it as bench.peers.taskmill_app

    # The sync API, as a user calls it (the backend runs on the app's own loop thread);
    # connected outside the timing, as the peers' clients are.
    app.run(app.backend())

    def send(enqueued_at: float) -> None:
        noop.enqueue(enqueued_at)

    def send_many(times: list[float]) -> None:
        app.enqueue_many([noop.prepare(t) for t in times])

    return send, send_many, app.close


def available() -> str:
    """Empty if taskmill can run on Redis here, else why not."""
    if importlib.util.find_spec("taskmill.backends.redis") is None:
        return "taskmill.backends.redis does not exist yet"
    from taskmill.backends import connect
    from taskmill.errors import TaskmillError

    try:
        connect(URL)  # not opened: this only checks the scheme and the imports
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
        env={"TASKMILL_URL": URL},
    )


if __name__ == "__main__":
    serve(
        Peer(
            name="taskmill",
            version=importlib.metadata.version("taskmill"),
            connect=connect,
            default=worker(10),
            tuned=worker(100),
            single_api="task.enqueue(t)",
            bulk_api="app.enqueue_many([task.prepare(t) ...])",
            unavailable=available(),
        )
    )
