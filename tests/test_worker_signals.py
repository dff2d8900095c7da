"""Ctrl-C (SIGINT) and SIGTERM stop a `taskmill worker` gracefully, with a sync and an async
handler running: their jobs are handed back, not failed, and the worker exits 0. (A
KeyboardInterrupt a handler raises only fails its attempt: test_worker_handlers.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from taskmill import App, JobState
from tests import sample_tasks
from tests.conftest import start_taskmill, wait_until

# A worker process, and its grace period waited out: a second or two each.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_stops_the_worker_gracefully(
    sig: signal.Signals, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    url = f"sqlite:///{tmp_path / 'signals.db'}"
    env = {
        **os.environ,
        "TASKMILL_URL": url,
        "TASKMILL_TEST_LOG": str(tmp_path / "effects.log"),
        "TASKMILL_HEARTBEAT": "0.2",
        "TASKMILL_POLL_INTERVAL": "0.2",
        "TASKMILL_GRACE": "0.5",
    }
    app = App(url)
    try:
        jobs = await app.aenqueue_many(
            [sample_tasks.record.prepare(1, hold=30.0), sample_tasks.nap.prepare(30.0)]
        )
        worker = start_taskmill(workers, env, "worker", "--concurrency", "2")

        async def both_running() -> bool:
            states = [(await app.aget(job.id)).state for job in jobs]
            return states == [JobState.RUNNING] * 2

        await wait_until(both_running, "both jobs run")
        worker.send_signal(sig)
        assert await asyncio.to_thread(worker.wait, 20) == 0
        for job in jobs:
            stored = await app.aget(job.id)
            assert (stored.state, stored.attempts, stored.errors) == (JobState.PENDING, 0, [])
    finally:
        await app.aclose()
