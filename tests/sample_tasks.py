"""Tasks that run in other processes: process-pool children and worker subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from taskmill import App, current_job

#: Worker subprocesses load this app; TASKMILL_URL names their backend.
app = App()


def spin(seconds: float) -> None:
    """Busy, not sleeping: only killing the process stops it early."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def pid() -> int:
    return os.getpid()


@app.task(name="record", max_retries=5, retry="fixed", retry_delay=0.05)
def record(n: int, hold: float = 0.0) -> int:
    """Append n to the file named by TASKMILL_TEST_LOG: the job's one visible side effect."""
    time.sleep(hold)
    with open(os.environ["TASKMILL_TEST_LOG"], "a") as log:
        log.write(f"{n}\n")
    return n


@app.task(name="poison", max_retries=1, retry="fixed", retry_delay=0.05)
def poison() -> None:
    """Kills the worker that runs it, as a segfaulting extension or an OOM kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tick")
def tick() -> float:
    """Append the tick of the schedule that enqueued this job to TASKMILL_TEST_LOG."""
    fired: float = current_job().job.metadata["tick"]
    with open(os.environ["TASKMILL_TEST_LOG"], "a") as log:
        log.write(f"{int(fired)}\n")
    return fired


@app.periodic("30 2 * * *", tz="Europe/Paris", queue="reports")
def nightly() -> str:
    """A schedule declared in code: each scheduler stores it when it starts."""
    return "report"


@app.task(name="nap")
async def nap(seconds: float) -> float:
    """An async handler that waits: running when a worker is told to stop."""
    await asyncio.sleep(seconds)
    return seconds
