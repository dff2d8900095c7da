"""The worker and the app end to end, on every backend."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from taskmill import (
    App,
    InvalidArgumentsError,
    JobFailedError,
    JobState,
    PayloadError,
    PermanentError,
    UnknownTaskError,
    Worker,
    current_job,
)
from taskmill.app import BATCH
from taskmill.job import Job
from tests import sample_tasks
from tests.conftest import FakeClock


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait for a condition the test cannot be signalled about (another process's work)."""
    deadline = time.monotonic() + timeout
    while not await _call(predicate):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _call(predicate: Callable[[], Any]) -> Any:
    value = predicate()
    return await value if asyncio.iscoroutine(value) else value


async def state_of(app: App, job_id: str) -> JobState:
    return (await app.aget(job_id)).state


async def test_sync_and_async_handlers_run_and_return(app: App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def shout(text: str) -> dict[str, Any]:
        return {"text": text.upper(), "thread": threading.current_thread().name,
                "job": current_job().id}  # fmt: skip

    one = await add.aenqueue(2, 3)
    two = await shout.aenqueue("hi")
    await Worker(app, burst=True).run()
    assert await one.aresult(5) == 5
    result = await two.aresult(5)
    assert result["text"] == "HI" and result["job"] == two.id
    assert result["thread"].startswith("taskmill-job")
    job = await two.arefresh()
    assert job.state == JobState.SUCCEEDED and job.attempts == 1 and job.worker
    assert job.started_at and job.finished_at and job.started_at <= job.finished_at


async def test_contextvars_reach_sync_handlers(app: App) -> None:
    seen: list[str] = []
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")

    @app.task
    def probe() -> None:
        seen.append(var.get())

    var.set("worker-context")
    await probe.aenqueue()
    await Worker(app, burst=True).run()
    assert seen == ["worker-context"]


def test_enqueue_from_sync_code(url: str) -> None:
    app = App(url)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    handle = double.enqueue(21)
    assert handle.status == JobState.PENDING
    asyncio.run(Worker(app, burst=True).run())
    assert handle.result(timeout=5) == 42
    many = app.enqueue_many([double.prepare(i) for i in range(5)])
    asyncio.run(Worker(app, burst=True).run())
    assert [h.result(5) for h in many] == [0, 2, 4, 6, 8]
    app.close()


async def test_retries_with_backoff_then_dead_letter(app: App) -> None:
    @app.task(max_retries=2, retry="fixed", retry_delay=0.05, jitter=0)
    def fails() -> None:
        raise ValueError("always")

    handle = await fails.aenqueue()
    async with running(Worker(app)):
        await until(lambda: _is(app, handle.id, JobState.DEAD))
    job = await handle.arefresh()
    assert job.attempts == 3
    assert [e.attempt for e in job.errors] == [1, 2, 3]
    assert all("ValueError: always" in e.error and e.traceback for e in job.errors)
    with pytest.raises(JobFailedError, match="always"):
        await handle.aresult(1)


async def _is(app: App, job_id: str, state: JobState) -> bool:
    return await state_of(app, job_id) == state


async def test_permanent_error_skips_retries(app: App) -> None:
    @app.task(max_retries=5)
    def refuse() -> None:
        raise PermanentError("bad request")

    handle = await refuse.aenqueue()
    await Worker(app, burst=True).run()
    job = await handle.arefresh()
    assert job.state == JobState.DEAD and job.attempts == 1


async def test_flaky_job_succeeds_after_retries(app: App) -> None:
    @app.task(max_retries=3, retry="linear", retry_delay=0.01)
    def flaky() -> int:
        attempt = current_job().attempt
        if attempt < 3:
            raise RuntimeError(f"attempt {attempt}")
        return attempt

    handle = await flaky.aenqueue()
    async with running(Worker(app)):
        assert await handle.aresult(10) == 3
    job = await handle.arefresh()
    assert [e.error for e in job.errors] == ["RuntimeError: attempt 1", "RuntimeError: attempt 2"]


async def test_timeouts_are_enforced(app: App) -> None:
    @app.task(timeout=0.1, max_retries=0)
    async def too_slow() -> None:
        await asyncio.sleep(30)

    @app.task(timeout=0.1, max_retries=0)
    def too_slow_sync() -> None:
        time.sleep(0.5)

    handles = [await too_slow.aenqueue(), await too_slow_sync.aenqueue()]
    started = time.monotonic()
    await Worker(app, burst=True).run()
    assert time.monotonic() - started < 5
    for handle in handles:
        job = await handle.arefresh()
        assert job.state == JobState.DEAD and job.error == "timed out after 0.1s"


async def test_cancel_running_async_job_reaches_handler(app: App) -> None:
    started, reached = asyncio.Event(), asyncio.Event()

    @app.task
    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reached.set()
            raise

    handle = await long.aenqueue()
    async with running(Worker(app)):
        await asyncio.wait_for(started.wait(), 5)
        await handle.acancel()
        await asyncio.wait_for(reached.wait(), 5)
        await until(lambda: _is(app, handle.id, JobState.CANCELLED))


async def test_cancel_running_sync_job_reaches_handler(app: App) -> None:
    started, stopped = threading.Event(), threading.Event()

    @app.task
    def long() -> None:
        started.set()
        for _ in range(500):
            current_job().check_cancelled()
            time.sleep(0.01)
        stopped.set()  # only reached if the cancellation never came

    handle = await long.aenqueue()
    async with running(Worker(app)):
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        await handle.acancel()
        await until(lambda: _is(app, handle.id, JobState.CANCELLED))
    assert not stopped.is_set()


async def test_cancel_pending_job_is_immediate(app: App) -> None:
    @app.task
    def never() -> None:
        raise AssertionError("a cancelled job ran")

    handle = await never.aenqueue()
    assert (await handle.acancel()).state == JobState.CANCELLED
    await Worker(app, burst=True).run()
    assert await state_of(app, handle.id) == JobState.CANCELLED


async def test_progress_is_reported(app: App) -> None:
    release = asyncio.Event()

    @app.task
    async def report() -> None:
        current_job().progress(0.25)
        await release.wait()
        current_job().progress(0.75)  # the job ends before any heartbeat carries this

    handle = await report.aenqueue()
    async with running(Worker(app)):
        await until(lambda: _progress(app, handle.id, 0.25))
        release.set()
        await handle.aresult(5)
    assert (await handle.arefresh()).progress == 0.75


async def _progress(app: App, job_id: str, value: float) -> bool:
    return (await app.aget(job_id)).progress == value


async def test_priorities_run_highest_first(app: App) -> None:
    order: list[str] = []

    @app.task
    def note(label: str) -> None:
        order.append(label)

    for label, priority in [("low", "low"), ("crit", "critical"), ("med", "medium"),
                            ("high", "high"), ("n50", 50)]:  # fmt: skip
        await note.options(priority=priority).aenqueue(label)
    await Worker(app, concurrency=1, burst=True).run()
    assert order == ["n50", "crit", "high", "med", "low"]


async def test_delayed_job_waits_for_its_time(app: App) -> None:
    @app.task
    def stamp() -> float:
        return time.time()

    await app.backend()  # connected first: a slow first connection would eat the delay
    enqueued = time.time()
    handle = await stamp.options(delay=0.3).aenqueue()
    assert handle.job.state == JobState.SCHEDULED
    async with running(Worker(app)):
        ran_at = await handle.aresult(10)
    assert ran_at >= enqueued + 0.3


async def test_weighted_queues_do_not_starve(app: App) -> None:
    ran: Counter[str] = Counter()

    @app.task
    def tick(queue: str) -> None:
        ran[queue] += 1

    await app.aenqueue_many(
        [tick.options(queue=q).prepare(q) for q in ("big", "small") for _ in range(200)]
    )
    worker = Worker(app, {"big": 9, "small": 1}, concurrency=1)
    async with running(worker):
        await until(lambda: sum(ran.values()) >= 100)
    assert ran["small"] > 0 and ran["big"] > ran["small"]


async def test_strict_queue_order(app: App) -> None:
    order: list[str] = []

    @app.task
    def note(queue: str) -> None:
        order.append(queue)

    for q in ("second", "first", "second", "first"):
        await note.options(queue=q).aenqueue(q)
    await Worker(app, ["first", "second"], concurrency=1, strict=True, burst=True).run()
    assert order == ["first", "first", "second", "second"]


async def test_paused_queue_is_not_worked_until_resumed(app: App) -> None:
    @app.task(queue="q")
    def work() -> str:
        return "done"

    backend = await app.backend()
    await backend.set_paused("q", True)
    handle = await work.aenqueue()
    await Worker(app, ["q"], burst=True).run()
    assert await state_of(app, handle.id) == JobState.PENDING
    await backend.set_paused("q", False)
    await Worker(app, ["q"], burst=True).run()
    assert await handle.aresult(5) == "done"


async def test_bad_input_is_refused_at_enqueue(app: App) -> None:
    @app.task
    def typed(a: int, *, b: str = "x") -> None: ...

    with pytest.raises(UnknownTaskError, match=r"known tasks: .*typed"):
        await app.aenqueue("nope")
    with pytest.raises(InvalidArgumentsError, match="typed"):
        await app.aenqueue(typed.name, [1, 2])
    with pytest.raises(PayloadError, match="JSON"):
        await typed.aenqueue(object())  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="over the limit"):
        await app.aenqueue(typed.name, ["x" * (app.settings.max_payload + 1)])
    assert (await (await app.backend()).list_jobs())[0] == []  # nothing was stored


async def test_bad_jobs_reach_the_dead_letter_queue_not_a_crash(app: App) -> None:
    @app.task(max_retries=0)
    def typed(a: int) -> int:
        return a

    @app.task(max_retries=0)
    def unstorable() -> object:
        return object()

    backend = await app.backend()
    undecodable = Job(task=typed.name, payload=b"\xff not json", max_retries=0)
    misfit = Job(task=typed.name, payload=b'{"args":[1,2,3],"kwargs":{}}', max_retries=0)
    unknown = Job(task="gone", max_retries=0)
    await backend.enqueue([undecodable, misfit, unknown])
    bad_result = await unstorable.aenqueue()
    good = await typed.aenqueue(7)
    await Worker(app, burst=True).run()
    assert await good.aresult(5) == 7
    expected = [
        (undecodable.id, "PayloadError"),
        (misfit.id, "InvalidArguments"),
        (unknown.id, "UnknownTaskError"),
        (bad_result.id, "PayloadError"),
    ]
    for job_id, reason in expected:
        job = await app.aget(job_id)
        assert job.state == JobState.DEAD and reason in (job.error or ""), job.error


async def test_ttl_expires_jobs_that_wait_too_long(app: App) -> None:
    @app.task
    def late() -> None:
        raise AssertionError("an expired job ran")

    handle = await late.options(ttl=0.05).aenqueue()
    await asyncio.sleep(0.1)
    await Worker(app, burst=True).run()
    assert await state_of(app, handle.id) == JobState.EXPIRED


async def test_caller_chosen_id_and_metadata(app: App) -> None:
    @app.task
    def noop() -> None: ...

    first = await noop.options(id="order-42", metadata={"user": 7}).aenqueue()
    again = await noop.options(id="order-42").aenqueue()
    assert first.id == again.id == "order-42"
    assert (await app.aget("order-42")).metadata == {"user": 7}


async def test_enqueue_many_takes_any_iterable_and_stores_nothing_if_one_item_is_bad(
    app: App,
) -> None:
    @app.task
    def echo(n: int) -> int:
        return n

    count = 2 * BATCH + 1  # three batches, the last of one job
    items = (echo.prepare(n) if n % 2 else {"task": echo.name, "args": [n]} for n in range(count))
    handles = await app.aenqueue_many(items)
    assert [h.job.args for h in handles] == [[n] for n in range(count)]
    backend = await app.backend()
    assert len((await backend.list_jobs(limit=2 * count))[0]) == count
    bad: list[Job | dict[str, Any]] = [echo.prepare(n) for n in range(BATCH)]
    bad.append({"task": echo.name, "args": [1, 2]})
    with pytest.raises(InvalidArgumentsError):
        await app.aenqueue_many(bad)
    assert len((await backend.list_jobs(limit=2 * count))[0]) == count


async def test_job_times_come_from_the_options_else_from_the_enqueue(url: str) -> None:
    clock = FakeClock()
    app = App(url, clock=clock)

    @app.task(ttl=60)
    def noop() -> None: ...

    built = noop.prepare()
    assert (built.run_at, built.expires_at) == (0.0, clock() + 60)  # run_at 0: when stored
    delayed = noop.options(delay=5, ttl=None).prepare()
    at = noop.options(scheduled_at=clock() + 30, delay=5, expires_at=clock() + 90).prepare()
    assert (delayed.run_at, delayed.expires_at) == (clock() + 5, None)
    assert (at.run_at, at.expires_at) == (clock() + 30, clock() + 90)  # absolute ones win
    clock.advance(10)
    stored = await app.aenqueue_many([built, delayed, at])
    assert [h.job.state for h in stored] == [JobState.PENDING, JobState.PENDING, JobState.SCHEDULED]
    assert stored[0].job.run_at == stored[0].job.created_at == clock()
    await app.aclose()
    app.close()


async def test_worker_registers_and_unregisters(app: App) -> None:
    @app.task
    def noop() -> None: ...

    backend = await app.backend()
    worker = Worker(app, ["a", "b"], concurrency=3)
    async with running(worker):
        await until(lambda: _listed(backend, worker.id))
        (info,) = [w for w in await backend.list_workers() if w.id == worker.id]
        assert (info.pid, info.queues, info.concurrency) == (os.getpid(), ["a", "b"], 3)
        assert noop.name in info.tasks
    assert worker.id not in [w.id for w in await backend.list_workers()]


async def _listed(backend: Any, worker_id: str) -> bool:
    return worker_id in [w.id for w in await backend.list_workers()]


async def test_an_idle_worker_stops_in_its_wait_however_often_told(app: App) -> None:
    app.settings = dataclasses.replace(app.settings, poll_interval=30.0)

    @app.task
    async def later() -> None:
        pass

    worker = Worker(app, concurrency=2)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)  # idle now, in a wait that would last 30 s
    began = time.monotonic()
    worker.stop()
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 2
    job = await later.aenqueue()
    assert (await job.arefresh()).state == JobState.PENDING  # no wait of it took the job


async def test_graceful_stop_finishes_or_hands_back(app: App) -> None:
    app.settings = dataclasses.replace(app.settings, grace=0.3)

    @app.task
    async def quick() -> str:
        await asyncio.sleep(0.05)
        return "done"

    @app.task
    async def endless() -> None:
        await asyncio.sleep(60)

    fast = await quick.aenqueue()
    slow = await endless.aenqueue()
    worker = Worker(app, concurrency=2)
    async with running(worker):
        await until(lambda: _is(app, slow.id, JobState.RUNNING))
    assert await fast.aresult(1) == "done"
    job = await slow.arefresh()
    assert job.state == JobState.PENDING and job.attempts == 0  # handed back, not lost


async def test_process_executor_kills_on_timeout(app: App) -> None:
    spin = app.task(executor="process", timeout=0.5, max_retries=0)(sample_tasks.spin)
    pid = app.task(executor="process")(sample_tasks.pid)
    hung = await spin.aenqueue(30.0)
    other = await pid.aenqueue()
    await Worker(app, processes=1, burst=True).run()
    assert (await hung.arefresh()).error == "timed out after 0.5s"
    assert await other.aresult(5) != os.getpid()  # the killed child was replaced


async def test_prefetched_jobs_are_cancellable_and_handed_back(app: App) -> None:
    # The running job outlasts any grace: a short one hands it back without waiting 2 s.
    app.settings = dataclasses.replace(app.settings, grace=0.3)
    started = asyncio.Event()

    @app.task
    async def block() -> None:
        started.set()
        await asyncio.sleep(60)

    first, second, third = [await block.aenqueue() for _ in range(3)]
    async with running(Worker(app, concurrency=1, prefetch=2)):
        await asyncio.wait_for(started.wait(), 5)
        await until(lambda: _is(app, third.id, JobState.RUNNING))  # claimed ahead, waiting
        await second.acancel()
        await until(lambda: _is(app, second.id, JobState.CANCELLED))
    for handle in (first, third):
        job = await handle.arefresh()
        assert job.state == JobState.PENDING
        assert job.attempts == 0


async def test_two_workers_keep_to_a_queue_concurrency_limit(app: App) -> None:
    now, most = 0, 0

    @app.task(name="hold", queue="capped")
    async def hold() -> None:
        nonlocal now, most
        now += 1
        most = max(most, now)
        await asyncio.sleep(0.05)
        now -= 1

    await (await app.backend()).configure_queue("capped", {"concurrency": 2})
    handles = await app.aenqueue_many([hold.prepare() for _ in range(12)])
    async with (
        running(Worker(app, ["capped"], concurrency=4)),
        running(Worker(app, ["capped"], concurrency=4)),
    ):
        for handle in handles:
            await handle.aresult(20)
    assert most == 2
