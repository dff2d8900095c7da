"""Handlers that misbehave fail their own attempt and nothing else: BaseException
subclasses, SystemExit, KeyboardInterrupt and CancelledError raised by a handler, and sync
handlers hung past their timeout. What a handler does is the worker's business alone, so
these run on the memory backend."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from taskmill import App, JobState, Task, Worker
from tests import sample_tasks
from tests.conftest import fast_settings, wait_until


class Boom(BaseException):
    """Not an Exception: what a careless handler or library may raise."""


@pytest.fixture
async def app() -> AsyncIterator[App]:
    instance = App(settings=fast_settings(f"memory://{uuid.uuid4().hex}"))
    yield instance
    await instance.aclose()
    instance.close()


async def burst(app: App, *, concurrency: int = 10, processes: int | None = None) -> None:
    """Run a worker until the queue is empty; it must stop on its own, soon."""
    worker = Worker(app, burst=True, concurrency=concurrency, processes=processes)
    await asyncio.wait_for(worker.run(), 30)


def raising(app: App, exc: BaseException, *, sync: bool, retries: int = 0) -> Task[[], None]:
    """A task whose handler raises `exc`."""

    def handler() -> None:
        raise exc

    async def async_handler() -> None:
        raise exc

    name = f"raise_{type(exc).__name__}_{'sync' if sync else 'async'}"
    declare = app.task(name=name, max_retries=retries, retry="fixed", retry_delay=0.01)
    return declare(handler) if sync else declare(async_handler)


async def fails_alone(app: App, exc: BaseException, error: str) -> None:
    """Jobs raising `exc` (sync and async) beside a good one: each bad one ends dead with
    `error` and its traceback, the good one succeeds on its one attempt, and the worker
    comes to its end as usual."""

    @app.task
    async def good() -> str:
        await asyncio.sleep(0.2)  # still running while the others fail
        return "ok"

    bad = [await raising(app, exc, sync=sync).aenqueue() for sync in (True, False)]
    fine = await good.aenqueue()
    await burst(app)
    for handle in bad:
        job = await handle.arefresh()
        assert (job.state, job.attempts, job.error) == (JobState.DEAD, 1, error)
        assert job.errors[-1].traceback and error.split(":")[0] in job.errors[-1].traceback
    assert await fine.aresult(1) == "ok" and (await fine.arefresh()).attempts == 1


async def test_a_base_exception_fails_the_attempt(app: App) -> None:
    await fails_alone(app, Boom("not an Exception"), "Boom: not an Exception")


async def test_system_exit_fails_the_attempt_not_the_worker(app: App) -> None:
    await fails_alone(app, SystemExit(3), "SystemExit: 3")


async def test_keyboard_interrupt_fails_the_attempt_not_the_worker(app: App) -> None:
    await fails_alone(app, KeyboardInterrupt(), "KeyboardInterrupt")


async def test_a_base_exception_is_retried_as_the_task_says(app: App) -> None:
    handle = await raising(app, Boom("again"), sync=False, retries=1).aenqueue()
    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _finished(app, handle.id), "the job ran out of retries")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    job = await handle.arefresh()
    assert job.state == JobState.DEAD and job.attempts == 2
    assert [e.error for e in job.errors] == ["Boom: again", "Boom: again"]


async def test_a_cancelled_error_of_the_handlers_own_is_a_failure(app: App) -> None:
    # Nobody asked to cancel these jobs: the handler raised it, so the attempt failed (and
    # is retried as any failure is); it is neither a cancellation nor left running.
    bad = [
        await raising(app, asyncio.CancelledError("mine"), sync=False).aenqueue(),
        await raising(app, concurrent.futures.CancelledError(), sync=True).aenqueue(),
    ]
    await burst(app)
    for handle in bad:
        job = await handle.arefresh()
        assert job.state == JobState.DEAD and job.attempts == 1
        assert job.error is not None and job.error.startswith("CancelledError")


async def test_timeouts_count_from_the_handlers_start(app: App) -> None:
    # One child process, busy for a second: the job behind it waits longer than its own
    # timeout for the child, yet is not charged for the wait.
    spin = app.task(executor="process")(sample_tasks.spin)
    pid = app.task(executor="process", timeout=0.5, max_retries=0)(sample_tasks.pid)
    warm_up = app.task(executor="process", name="warm-up")(sample_tasks.pid)
    worker = Worker(app, processes=1, concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        await (await warm_up.aenqueue()).aresult(20)  # the child is up
        busy = await spin.aenqueue(1.0)
        await wait_until(lambda: _running(app, busy.id), "the child is busy")
        behind = await pid.aenqueue()
        await behind.aresult(20)
        job = await behind.arefresh()
        assert (job.state, job.attempts, job.errors) == (JobState.SUCCEEDED, 1, [])
        assert (await busy.arefresh()).state == JobState.SUCCEEDED
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_a_hung_sync_handler_costs_its_thread_not_the_workers(app: App) -> None:
    release = threading.Event()  # lets the hung thread go at the end
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @app.task(timeout=0.3, max_retries=0, priority=9)
    def hang() -> None:
        release.wait(30)

    @app.task(timeout=5.0, max_retries=0)
    def work(n: int) -> int:
        with lock:
            runs[n] += 1
        time.sleep(0.02)
        return n

    # After the hang, four at once: only four threads running together pass the barrier.
    together = threading.Barrier(4, timeout=10)

    @app.task(timeout=5.0, max_retries=0)
    def meet() -> int:
        return together.wait()

    hung = await hang.aenqueue()
    handles = [await work.aenqueue(n) for n in range(15)]
    worker = Worker(app, concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _finished(app, hung.id), "the hung job timed out")
        handles += [await meet.aenqueue() for _ in range(4)]
        for handle in handles:
            await handle.aresult(20)
        assert (await hung.arefresh()).error == "timed out after 0.3s"
        for handle in handles:
            job = await handle.arefresh()
            assert (job.state, job.attempts, job.errors) == (JobState.SUCCEEDED, 1, [])
        assert runs == Counter(range(15))
        assert worker._threads.abandoned == 1  # still hung, its place taken
    finally:
        release.set()
        worker.stop()
        await asyncio.wait_for(task, 10)


async def _finished(app: App, job_id: str) -> bool:
    return (await app.aget(job_id)).state.finished


async def _running(app: App, job_id: str) -> bool:
    return (await app.aget(job_id)).state == JobState.RUNNING
