"""The taskmill side of the Redis benchmark: an app with one no-op async task.

Workers run it as `taskmill worker --app bench.peers.taskmill_app:app --burst --concurrency C`
with TASKMILL_URL pointing at the benchmark's private Redis, and bench/peers on PYTHONPATH
for the recorder.
"""

from __future__ import annotations

from recorder import record

from taskmill import App

#: The URL comes from TASKMILL_URL, which the harness sets.
app = App()


@app.task(name="bench.noop")
async def noop(enqueued_at: float) -> None:
    """Async, so a job costs the queue and not a hop to a thread."""
    record(enqueued_at)
