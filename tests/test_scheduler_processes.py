"""Schedulers as processes: three on one backend, the leader SIGKILLed; a restart of all.

Schedulers and workers run as `taskmill scheduler` and `taskmill worker` subprocesses, as a
user runs them, on every backend that processes share (conftest.SHARED_BACKENDS). Ticks
are counted from the jobs' side effect: the `tick` task appends its tick to a file, which
the tests also watch to move on as soon as the ticks they need have run.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from taskmill import App, JobState
from taskmill.backends import Backend, Lease
from taskmill.schedule import LEADER
from tests.conftest import effects, start_taskmill, wait_until

#: The scheduler lease in these tests: a dead leader is replaced within it.
LEASE = 3.0


@pytest.fixture
def env(shared_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKMILL_URL": shared_url,
        "TASKMILL_TEST_LOG": str(tmp_path / "ticks.log"),
        "TASKMILL_SCHEDULER_LEASE": str(LEASE),
        "TASKMILL_LEASE": "2",
        "TASKMILL_HEARTBEAT": "0.2",
        "TASKMILL_MAINTAIN_INTERVAL": "0.5",
        "TASKMILL_POLL_INTERVAL": "0.2",
        "TASKMILL_GRACE": "0.5",
    }


def start(
    started: list[subprocess.Popen[bytes]], env: dict[str, str], command: str, *extra: str
) -> subprocess.Popen[bytes]:
    return start_taskmill(started, env, command, "--log-level", "WARNING", *extra)


def stop_all(started: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process still running: each stops cleanly."""
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            assert proc.wait(20) == 0


async def wait_for_leader(backend: Backend, timeout: float = 30.0) -> Lease:
    deadline = time.monotonic() + timeout
    while (lease := await backend.get_lease(LEADER)) is None:
        assert time.monotonic() < deadline, "no scheduler took the lead"
        await asyncio.sleep(0.1)
    return lease


async def drain(app: App, schedule: str, timeout: float = 30.0) -> list[float]:
    """Pause the schedule, wait until each job it enqueued ran; their creation times."""
    await app.schedules.apause(schedule)
    backend = await app.backend()
    deadline = time.monotonic() + timeout
    while True:
        jobs, _ = await backend.list_jobs(task="tick", limit=10_000)
        if all(job.state == JobState.SUCCEEDED for job in jobs):
            return sorted(job.created_at for job in jobs)
        assert time.monotonic() < deadline, Counter(job.state.value for job in jobs)
        await asyncio.sleep(0.2)


def span(ran: Counter[int]) -> int:
    """Seconds from the first tick that ran to the last."""
    return max(ran) - min(ran) if ran else 0


def assert_each_second_once(ran: Counter[int]) -> list[int]:
    """Every second from the first tick to the last ran, each once; the ticks, in order."""
    assert ran, "no tick ran"
    assert max(ran.values()) == 1, {t: n for t, n in ran.items() if n > 1}
    ticks = sorted(ran)
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), "a tick is missing"
    return ticks


@pytest.mark.slow
async def test_three_schedulers_fire_each_tick_once_across_a_sigkilled_leader(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"], strict=False)  # the tasks are the workers'
    # catch_up: ticks due while the lead changes hands are fired late, each once.
    await app.schedules.acreate("every-second", "tick", "* * * * * *", catch_up="20s")
    schedulers = [start(workers, env, "scheduler") for _ in range(3)]
    start(workers, env, "worker", "--concurrency", "4")
    backend = await app.backend()
    await wait_for_leader(backend)
    # Followers try for the lead each time the leader's lease would end: over a lease of
    # ticks, each has tried at least once while the leader renewed.
    await wait_until(lambda: span(effects(env)) > LEASE + 1, "ticks ran for over a lease")

    leader = await wait_for_leader(backend)
    (doomed,) = [p for p in schedulers if f":{p.pid}:" in leader.holder]
    killed_at = time.time()
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    # The successor takes over within a lease, then leads a lease more against the last
    # follower.
    after = killed_at + 2 * LEASE
    await wait_until(lambda: max(effects(env)) > after, "a successor fired ticks on time")

    successor = await wait_for_leader(backend)
    assert successor.holder != leader.holder
    created = await drain(app, "every-second")
    ticks = assert_each_second_once(effects(env))
    assert ticks[0] + LEASE + 1 < killed_at < ticks[-1] - 2 * LEASE
    # The takeover: from the kill to the first job the successor enqueued, and the longest
    # pause between two enqueues over the whole run.
    takeover = min(t for t in created if t > killed_at) - killed_at
    longest = max(b - a for a, b in itertools.pairwise(created))
    print(f"\n{len(ticks)} ticks; takeover {takeover:.2f}s; longest pause {longest:.2f}s")
    # Within the lease, with half a second for the successor's step on a busy machine. The
    # longest pause also holds the time from the old leader's last job to the kill: up to a
    # tick's period.
    assert takeover <= LEASE + 0.5
    assert longest <= LEASE + 1.0 + 0.5
    schedule = await app.schedules.aget("every-second")
    assert schedule.last_tick == ticks[-1]
    assert schedule.recent_jobs[0] == f"schedule:every-second:{ticks[-1]}"
    stop_all(workers)
    await app.aclose()


@pytest.mark.slow
async def test_schedules_survive_a_restart_of_every_process(
    env: dict[str, str], workers: list[subprocess.Popen[bytes]]
) -> None:
    app = App(env["TASKMILL_URL"], strict=False)  # the tasks are the workers'
    await app.schedules.acreate("every-second", "tick", "* * * * * *", catch_up="1m")
    first = [start(workers, env, "worker", "--scheduler"), start(workers, env, "scheduler")]
    await wait_until(lambda: len(effects(env)) >= 2, "two ticks ran")
    stop_all(first)
    await app.aclose()  # this process too: nothing of the schedule lives outside the backend
    stopped = time.time()
    before = effects(env)
    # Down until the next whole second at least, so that a tick falls due with nothing
    # running, whatever the machine's speed at starting the next worker.
    await asyncio.sleep(math.floor(stopped) + 1.05 - time.time())

    app = App(env["TASKMILL_URL"], strict=False)  # the tasks are the workers'
    names = [s.name for s in await app.schedules.alist()]
    # The app declares one in code, stored by the first scheduler to start.
    assert names == ["every-second", "tests.sample_tasks.nightly"]
    restarted = time.time()
    start(workers, env, "worker", "--scheduler")
    await wait_until(lambda: max(effects(env)) > restarted, "a tick after the restart ran")
    await drain(app, "every-second")
    ran = effects(env)
    ticks = assert_each_second_once(ran)  # the ticks missed while down ran late, once
    assert max(before) < stopped < ticks[-1] and len(ran) > len(before)
    assert any(stopped < tick < restarted for tick in ticks)  # one of them at least
    await app.aclose()
