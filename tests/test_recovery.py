"""Worker processes: SIGKILL recovery, SIGTERM hand-back, many processes on one backend.

Workers run as `taskmill worker` subprocesses, as a user runs them. Only backends shared
between processes take part (not memory://).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from taskmill import App, JobState
from taskmill.backends import Outcome
from taskmill.backends.rules import LEASE_EXPIRED
from tests import sample_tasks
from tests.conftest import effects, start_taskmill

# Worker processes, most of them waiting out a lease or a grace period: seconds each.
pytestmark = pytest.mark.slow


@pytest.fixture
def env(shared_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKMILL_URL": shared_url,
        "TASKMILL_TEST_LOG": str(tmp_path / "effects.log"),
        "TASKMILL_LEASE": "2",
        "TASKMILL_HEARTBEAT": "0.2",
        "TASKMILL_MAINTAIN_INTERVAL": "0.2",
        "TASKMILL_POLL_INTERVAL": "0.2",
        "TASKMILL_GRACE": "0.5",
    }


def start_worker(
    started: list[subprocess.Popen[bytes]], env: dict[str, str], *extra: str
) -> subprocess.Popen[bytes]:
    return start_taskmill(started, env, "worker", *extra)


async def wait_for_states(app: App, ids: list[str], state: JobState, timeout: float) -> None:
    backend = await app.backend()
    deadline = time.monotonic() + timeout
    while True:
        jobs = [await backend.get(job_id) for job_id in ids]
        if all(job is not None and job.state == state for job in jobs):
            return
        assert time.monotonic() < deadline, Counter(j.state.value for j in jobs if j is not None)
        await asyncio.sleep(0.1)


async def test_sigkilled_worker_jobs_run_again_elsewhere(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"])
    handles = await app.aenqueue_many([sample_tasks.record.prepare(n, hold=3.0) for n in range(8)])
    ids = [h.id for h in handles]
    doomed = start_worker(workers, env, "--concurrency", "8")
    await wait_for_states(app, ids, JobState.RUNNING, 30)
    backend = await app.backend()
    held = {job.id: job.token for job in [await backend.get(i) for i in ids] if job and job.token}
    assert len(held) == 8
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)

    start_worker(workers, env, "--concurrency", "8")
    await wait_for_states(app, ids, JobState.SUCCEEDED, 60)
    assert effects(env) == Counter(range(8))  # every job once: the killed ones had not acted
    for job_id in ids:
        job = await backend.get(job_id)
        assert job is not None
        assert job.attempts == 2
        assert [e.error for e in job.errors] == [LEASE_EXPIRED]
    # The killed worker's tokens can no longer complete or renew anything.
    stale = [Outcome(i, token, JobState.SUCCEEDED, result=b"-1") for i, token in held.items()]
    assert await backend.finish(stale) == [False] * 8
    info = (await backend.list_workers())[0]
    assert await backend.heartbeat(info, held, 30.0, {}) == set(held)
    assert [(await app.aget(job_id)).result for job_id in ids] == list(range(8))
    await app.aclose()


async def test_a_job_that_keeps_killing_its_worker_ends_in_the_dead_letter_queue(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"])
    (poison,) = await app.aenqueue_many([sample_tasks.poison.prepare()])
    (fine,) = await app.aenqueue_many([sample_tasks.record.prepare(1)])
    deaths = 0
    while (job := await app.aget(poison.id)).state != JobState.DEAD:
        assert deaths < 5, "the poison job kept coming back"
        # Each worker rescues its predecessor's job once the lease (2 s) has expired.
        proc = start_worker(workers, env)
        deadline = time.monotonic() + 30
        while proc.poll() is None and (await app.aget(poison.id)).state != JobState.DEAD:
            assert time.monotonic() < deadline, "the worker neither died nor finished the job"
            await asyncio.sleep(0.1)
        if proc.poll() is not None:
            assert proc.returncode == -signal.SIGKILL
            deaths += 1
    assert deaths == 2  # max_retries=1: two attempts, each killed its worker
    assert [e.error for e in job.errors] == [LEASE_EXPIRED, LEASE_EXPIRED]
    await wait_for_states(app, [fine.id], JobState.SUCCEEDED, 30)  # the survivor ran it
    proc.terminate()
    assert proc.wait(20) == 0
    await app.aclose()


async def test_sigterm_finishes_or_hands_back_running_jobs(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"])
    quick, slow = await app.aenqueue_many(
        [sample_tasks.record.prepare(1, hold=0.1), sample_tasks.record.prepare(2, hold=30.0)]
    )
    worker = start_worker(workers, env, "--concurrency", "2")
    await wait_for_states(app, [slow.id], JobState.RUNNING, 30)
    await wait_for_states(app, [quick.id], JobState.SUCCEEDED, 30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    job = await app.aget(slow.id)
    assert job.state == JobState.PENDING  # handed back within the grace period, not lost
    assert job.attempts == 0
    assert (await (await app.backend()).list_workers()) == []
    await app.aclose()


async def test_four_worker_processes_drain_10000_jobs_once_each(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"])
    count = 10_000
    handles = await app.aenqueue_many([sample_tasks.record.prepare(n) for n in range(count)])
    procs = [start_worker(workers, env, "--concurrency", "16", "--burst") for _ in range(4)]
    for proc in procs:
        assert proc.wait(300) == 0
    assert effects(env) == Counter(range(count))  # each side effect exactly once, none lost
    backend = await app.backend()
    (queue,) = await backend.list_queues()
    assert queue.counts["succeeded"] == count
    assert sum(queue.counts.values()) == count
    assert len({(await backend.get(h.id)).worker for h in handles[::100]}) > 1  # type: ignore[union-attr]
    await app.aclose()
