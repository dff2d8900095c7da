"""The backend contract: every backend passes these unchanged (see backends/base.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from taskmill.backends import Backend, Lease, Outcome, WorkerInfo
from taskmill.backends.rules import LEASE_EXPIRED
from taskmill.errors import BackendError
from taskmill.job import AttemptError, Job, JobState, encode
from taskmill.retry import RetryPolicy
from taskmill.schedule import RECENT_JOBS, Schedule
from tests.conftest import FakeClock

LEASE = 30.0


def make(task: str = "t", **fields: Any) -> Job:
    fields.setdefault("retry", RetryPolicy("fixed", delay=5.0, jitter=0.0))
    return Job(task=task, **fields)


def worker_info(worker_id: str = "w1") -> WorkerInfo:
    return WorkerInfo(worker_id, "host", 1, ["default"], 4, ["t"], started_at=0.0)


async def claim(
    backend: Backend, limit: int = 10, queues: tuple[str, ...] = ("default",)
) -> list[Job]:
    return await backend.claim(queues, "w1", limit, LEASE)


def ok(job: Job, result: Any = None) -> Outcome:
    assert job.token
    return Outcome(job.id, job.token, JobState.SUCCEEDED, result=encode(result))


def failed(job: Job, state: JobState, clock: FakeClock, run_at: float | None = None) -> Outcome:
    assert job.token
    error = AttemptError(job.attempts, "boom", "Traceback...", "w1", clock())
    return Outcome(job.id, job.token, state, error=error, run_at=run_at)


# -- enqueue and read --------------------------------------------------------------------


async def test_enqueue_stores_the_whole_record(backend: Backend, clock: FakeClock) -> None:
    job = make(queue="emails", priority=3, max_retries=5, timeout=7.5, metadata={"k": [1]},
               payload=b'{"args":[1],"kwargs":{"x":"y"}}', expires_at=clock() + 60)  # fmt: skip
    (stored,) = await backend.enqueue([job])
    assert stored.state == JobState.PENDING
    assert stored.created_at == clock() == stored.run_at
    got = await backend.get(job.id)
    assert got is not None
    assert (got.task, got.queue, got.priority, got.max_retries) == ("t", "emails", 3, 5)
    assert (got.timeout, got.metadata, got.expires_at) == (7.5, {"k": [1]}, clock() + 60)
    assert got.retry == job.retry
    assert (got.args, got.kwargs) == ([1], {"x": "y"})
    assert got.attempts == 0 and got.errors == [] and got.token is None
    assert await backend.get("missing") is None


async def test_enqueue_makes_the_jobs_given_records(backend: Backend, clock: FakeClock) -> None:
    now, later = make(), make(run_at=clock() + 60)
    stored = await backend.enqueue([now, later])
    # Every backend prepares the caller's jobs in place, and returns records equal to them.
    assert (now.state, now.created_at, now.run_at) == (JobState.PENDING, clock(), clock())
    assert (later.state, later.created_at) == (JobState.SCHEDULED, clock())
    assert [(j.id, j.state, j.created_at, j.run_at) for j in stored] == [
        (j.id, j.state, j.created_at, j.run_at) for j in (now, later)
    ]
    now.priority = 9  # the record is the store's: a later change to the object is not stored
    got = await backend.get(now.id)
    assert got is not None and got.priority != 9


async def test_enqueue_with_an_existing_id_keeps_the_first(backend: Backend) -> None:
    await backend.enqueue([make(id="same", queue="a")])
    _first, again = await backend.enqueue([make(id="other"), make(id="same", queue="b")])
    assert again.queue == "a"
    jobs, _ = await backend.list_jobs()
    assert sorted(j.id for j in jobs) == ["other", "same"]
    # One job at a time, with every default (the Redis backend's shortest path).
    (first,) = await backend.enqueue([Job(task="t", id="plain", payload=b'{"args":[1]}')])
    (same,) = await backend.enqueue([Job(task="t", id="plain", payload=b'{"args":[2]}')])
    (moved,) = await backend.enqueue([Job(task="t", id="plain", queue="b")])
    assert (same.args, moved.queue, moved.args) == ([1], "default", [1])
    assert same.created_at == first.created_at


async def test_a_batch_answers_each_job_in_its_place(backend: Backend) -> None:
    # New, repeated, existing and other-queue ids mixed, over two queues, in one batch
    # longer than the Redis script's chunk of ids (1,000).
    await backend.enqueue([make(id="old", queue="a", priority=3)])
    jobs = [make(queue="ab"[i % 2], payload=b'{"args":[%d]}' % i) for i in range(1100)]
    jobs[10] = make(id="old", queue="b")  # its id belongs to queue a: that job is the answer
    jobs[1051] = make(id="old", queue="a")  # exists: kept
    jobs[1061] = make(id=jobs[5].id, queue=jobs[5].queue)  # repeated: the first one stays
    stored = await backend.enqueue(jobs)
    assert [j.id for j in stored] == [j.id for j in jobs]
    assert [(j.queue, j.priority) for j in (stored[10], stored[1051])] == [("a", 3)] * 2
    assert stored[1061].args == stored[5].args == [5]
    assert [j.args for j in stored[1000:1010]] == [[i] for i in range(1000, 1010)]
    listed, _ = await backend.list_jobs(limit=2000)
    assert len(listed) == 1 + 1100 - 3


async def test_future_run_at_is_scheduled_and_waits(backend: Backend, clock: FakeClock) -> None:
    (job,) = await backend.enqueue([make(run_at=clock() + 10)])
    assert job.state == JobState.SCHEDULED
    assert await claim(backend) == []
    clock.advance(10)
    assert [j.id for j in await claim(backend)] == [job.id]


async def test_list_jobs_filters_and_pages(backend: Backend) -> None:
    jobs = [make(task=f"t{i % 2}", queue=f"q{i % 3}") for i in range(10)]
    await backend.enqueue(jobs)
    page, cursor = await backend.list_jobs(limit=4)
    assert [j.id for j in page] == [j.id for j in reversed(jobs)][:4]  # newest first
    seen = [j.id for j in page]
    while cursor:
        page, cursor = await backend.list_jobs(limit=4, cursor=cursor)
        seen += [j.id for j in page]
    assert seen == [j.id for j in reversed(jobs)]
    only, _ = await backend.list_jobs(task="t1", queue="q0")
    assert {j.id for j in only} == {j.id for j in jobs if j.task == "t1" and j.queue == "q0"}
    assert (await backend.list_jobs(state=JobState.RUNNING))[0] == []


# -- claim: order, queues, pause, expiry -------------------------------------------------


async def test_claim_orders_by_priority_then_fifo(backend: Backend) -> None:
    jobs = [make(priority=p) for p in (1, 0, 3, 1, 2, 3, 0)]
    await backend.enqueue(jobs)
    taken = [j.id for j in await claim(backend, limit=100)]
    expected = sorted(jobs, key=lambda j: -j.priority)  # sorted() is stable: FIFO among equals
    assert taken == [j.id for j in expected]


async def test_claim_respects_limit_and_queue_order(backend: Backend) -> None:
    a = [make(queue="a") for _ in range(3)]
    b = [make(queue="b", priority=3) for _ in range(3)]
    await backend.enqueue(a + b)
    first = await backend.claim(["b", "a"], "w1", 4, LEASE)
    assert [j.id for j in first] == [j.id for j in b] + [a[0].id]
    rest = await backend.claim(["a", "b"], "w1", 10, LEASE)
    assert [j.id for j in rest] == [j.id for j in a[1:]]
    assert await backend.claim(["other"], "w1", 10, LEASE) == []


async def test_claim_marks_running_with_a_fresh_token(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue([make(), make()])
    one, two = await claim(backend)
    assert one.state == two.state == JobState.RUNNING
    assert one.attempts == 1 and one.worker == "w1" and one.started_at == clock()
    assert one.lease_until == clock() + LEASE
    assert one.token and two.token and one.token != two.token
    stored = await backend.get(one.id)
    assert stored is not None and stored.state == JobState.RUNNING and stored.token == one.token
    assert await claim(backend) == []  # never handed out twice


async def test_paused_queue_accepts_but_hands_out_nothing(backend: Backend) -> None:
    await backend.set_paused("default", True)
    (job,) = await backend.enqueue([make()])
    assert await claim(backend) == []
    (info,) = await backend.list_queues()
    assert info.paused and info.counts["pending"] == 1
    await backend.set_paused("default", False)
    assert [j.id for j in await claim(backend)] == [job.id]
    await backend.set_paused("empty", True)
    await backend.set_paused("empty", False)
    assert [(q.name, q.paused) for q in await backend.list_queues()] == [
        ("default", False),
        ("empty", False),
    ]


async def test_expired_jobs_never_run(backend: Backend, clock: FakeClock) -> None:
    (job,) = await backend.enqueue([make(expires_at=clock() + 5)])
    (later,) = await backend.enqueue([make(expires_at=clock() + 500)])
    clock.advance(6)
    assert [j.id for j in await claim(backend)] == [later.id]
    stored = await backend.get(job.id)
    assert stored is not None and stored.state == JobState.EXPIRED


# -- finishing attempts and tokens -----------------------------------------------------


async def test_success_stores_the_result(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    clock.advance(2)
    outcome = ok(job, {"answer": [42]})
    outcome.progress = 0.9
    assert await backend.finish([outcome]) == [True]
    stored = await backend.get(job.id)
    assert stored is not None
    assert stored.state == JobState.SUCCEEDED and stored.result == {"answer": [42]}
    assert stored.progress == 0.9
    assert stored.finished_at == clock() and stored.token is None


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.SCHEDULED, JobState.EXPIRED])
async def test_an_attempt_cannot_end_in_a_state_that_is_no_outcome(
    backend: Backend, state: JobState
) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    assert job.token
    with pytest.raises(BackendError, match=f"cannot end as {state.value}"):
        await backend.finish([ok(job, 1), Outcome(job.id, job.token, state)])
    stored = await backend.get(job.id)  # refused whole: the good outcome was not applied
    assert stored is not None and stored.state == JobState.RUNNING and stored.token == job.token


async def test_a_stale_token_cannot_finish(backend: Backend) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    stale = Outcome(job.id, "not-the-token", JobState.SUCCEEDED, result=b"1")
    assert await backend.finish([stale, ok(job, 2)]) == [False, True]
    assert await backend.finish([ok(job, 3)]) == [False]  # finished once only
    stored = await backend.get(job.id)
    assert stored is not None and stored.result == 2


async def test_retry_then_dead_keeps_every_error(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue([make(max_retries=1)])
    (job,) = await claim(backend)
    applied = await backend.finish([failed(job, JobState.RETRYING, clock, clock() + 5)])
    assert applied == [True]
    stored = await backend.get(job.id)
    assert stored is not None and stored.state == JobState.RETRYING and stored.run_at == clock() + 5
    assert await claim(backend) == []
    clock.advance(5)
    (again,) = await claim(backend)
    assert again.attempts == 2 and again.token != job.token
    await backend.finish([failed(again, JobState.DEAD, clock)])
    dead = await backend.get(job.id)
    assert dead is not None and dead.state == JobState.DEAD
    assert [(e.attempt, e.error, e.traceback) for e in dead.errors] == [
        (1, "boom", "Traceback..."),
        (2, "boom", "Traceback..."),
    ]


async def test_handing_back_does_not_count_the_attempt(backend: Backend) -> None:
    first, _second = await backend.enqueue([make(), make()])
    taken = await claim(backend)
    assert taken[0].token
    await backend.finish([Outcome(taken[0].id, taken[0].token, JobState.PENDING)])
    stored = await backend.get(first.id)
    assert stored is not None and stored.state == JobState.PENDING and stored.attempts == 0
    (again,) = await claim(backend)
    assert again.id == first.id  # kept its place ahead of nothing newer


# -- cancellation ------------------------------------------------------------------------


async def test_cancel_waiting_job_is_immediate(backend: Backend) -> None:
    (job,) = await backend.enqueue([make()])
    cancelled = await backend.cancel(job.id)
    assert cancelled is not None and cancelled.state == JobState.CANCELLED
    assert await claim(backend) == []
    assert await backend.cancel("missing") is None


async def test_cancel_running_job_reaches_its_worker(backend: Backend) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    assert job.token
    asked = await backend.cancel(job.id)
    assert asked is not None and asked.state == JobState.RUNNING and asked.cancel_requested
    stop = await backend.heartbeat(worker_info(), {job.id: job.token}, LEASE, {})
    assert stop == {job.id}
    await backend.finish([Outcome(job.id, job.token, JobState.CANCELLED)])
    stored = await backend.get(job.id)
    assert stored is not None and stored.state == JobState.CANCELLED


async def test_a_requested_cancel_survives_hand_back_and_lost_leases(
    backend: Backend, clock: FakeClock
) -> None:
    handed, lost = await backend.enqueue([make(), make()])
    taken = {job.id: job for job in await claim(backend)}
    await backend.cancel(handed.id)
    await backend.cancel(lost.id)
    token = taken[handed.id].token
    assert token
    assert await backend.finish([Outcome(handed.id, token, JobState.PENDING)]) == [True]
    clock.advance(LEASE + 1)
    assert await backend.maintain() == 1
    for job_id in (handed.id, lost.id):
        stored = await backend.get(job_id)
        assert stored is not None
        assert stored.state == JobState.CANCELLED
        assert stored.finished_at == clock() or job_id == handed.id
    assert await claim(backend) == []


async def test_cancel_leaves_finished_jobs(backend: Backend) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    await backend.finish([ok(job)])
    after = await backend.cancel(job.id)
    assert after is not None and after.state == JobState.SUCCEEDED


async def test_delete_removes_a_job_but_not_a_running_one(backend: Backend) -> None:
    _first, second = await backend.enqueue([make(), make()])
    (running,) = await claim(backend, limit=1)
    assert await backend.delete(running.id) is False
    assert await backend.delete(second.id) is True
    assert await backend.get(second.id) is None


# -- leases, heartbeats, rescue --------------------------------------------------------


async def test_heartbeat_extends_leases_and_stores_progress(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue([make()])
    (job,) = await claim(backend)
    assert job.token
    clock.advance(LEASE - 1)
    stop = await backend.heartbeat(worker_info(), {job.id: job.token}, LEASE, {job.id: 0.5})
    assert stop == set()
    clock.advance(LEASE - 1)
    assert await backend.maintain() == 0
    stored = await backend.get(job.id)
    assert stored is not None and stored.state == JobState.RUNNING and stored.progress == 0.5


async def test_expired_lease_is_rescued_and_the_old_token_is_dead(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue([make(max_retries=2)])
    (job,) = await claim(backend)
    assert job.token
    clock.advance(LEASE + 1)
    assert await backend.maintain() == 1
    stored = await backend.get(job.id)
    assert stored is not None and stored.state == JobState.RETRYING
    assert stored.errors[-1].error == LEASE_EXPIRED and stored.errors[-1].attempt == 1
    assert stored.run_at == clock() + 5.0  # the job's fixed backoff
    clock.advance(5)
    (again,) = await claim(backend)
    assert again.attempts == 2
    stop = await backend.heartbeat(worker_info(), {job.id: job.token}, LEASE, {})
    assert stop == {job.id}  # the first worker learns it lost the job
    assert await backend.finish([ok(job, "late")]) == [False]
    assert await backend.finish([ok(again, "on time")]) == [True]


async def test_a_job_that_keeps_killing_workers_goes_dead(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue([make(max_retries=1, retry=RetryPolicy("fixed", 0.0, jitter=0.0))])
    for _ in range(2):
        assert len(await claim(backend)) == 1
        clock.advance(LEASE + 1)
        assert await backend.maintain() == 1
    (dead,), _ = await backend.list_jobs(state=JobState.DEAD)
    assert dead.attempts == 2 and [e.error for e in dead.errors] == [LEASE_EXPIRED] * 2
    assert await claim(backend) == []


async def test_finished_jobs_are_pruned_after_their_ttl(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue([make(result_ttl=10), make(result_ttl=10, max_retries=0)])
    done, dies = await claim(backend)
    await backend.finish([ok(done), failed(dies, JobState.DEAD, clock)])
    clock.advance(11)
    await backend.maintain()
    assert await backend.get(done.id) is None
    assert await backend.get(dies.id) is not None  # the dead-letter queue is kept


# -- workers ---------------------------------------------------------------------------


async def test_workers_register_by_heartbeat(backend: Backend, clock: FakeClock) -> None:
    await backend.heartbeat(worker_info("w1"), {}, LEASE, {})
    await backend.heartbeat(worker_info("w2"), {}, LEASE, {})
    workers = await backend.list_workers()
    assert [w.id for w in workers] == ["w1", "w2"]
    assert workers[0].host == "host" and workers[0].last_seen == clock()
    await backend.unregister_worker("w1")
    assert [w.id for w in await backend.list_workers()] == ["w2"]
    clock.advance(3600)
    assert await backend.list_workers() == []


# -- queues and the dead-letter queue --------------------------------------------------


async def test_list_queues_counts_every_state(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue([make(queue="a"), make(queue="a"), make(queue="b", run_at=clock() + 9)])
    (_running,) = await backend.claim(["a"], "w1", 1, LEASE)
    a, b = await backend.list_queues()
    assert (a.name, a.counts["running"], a.counts["pending"], a.counts["dead"]) == ("a", 1, 1, 0)
    assert a.oldest_pending == clock()
    assert (b.name, b.counts["scheduled"], b.oldest_pending) == ("b", 1, None)


async def test_list_queues_counts_due_jobs_per_priority_and_recent_finishes(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue([make(priority=p) for p in (0, 2, 2, 5)])
    await backend.enqueue([make(priority=7, run_at=clock() + 5), make(queue="other")])
    first, second = await claim(backend, limit=2)  # priorities 5 and 2
    await backend.finish([ok(first), failed(second, JobState.DEAD, clock)])
    (info, _other) = await backend.list_queues()
    assert info.ready_by_priority == {0: 1, 2: 1}
    assert info.finished_recently == 2
    clock.advance(30)
    (cancelled,) = await claim(backend, limit=1)  # the scheduled one, now due and first
    assert cancelled.priority == 7
    await backend.finish([Outcome(cancelled.id, cancelled.token or "", JobState.CANCELLED)])
    (info, _other) = await backend.list_queues()
    assert info.finished_recently == 2  # a cancelled job is not throughput
    clock.advance(31)
    (info, _other) = await backend.list_queues()
    assert info.finished_recently == 0
    assert info.ready_by_priority == {0: 1, 2: 1}


async def test_queue_settings_are_stored_replaced_and_deleted(backend: Backend) -> None:
    settings = {"weight": 3, "concurrency": 2, "retry": {"strategy": "fixed"}}
    await backend.configure_queue("empty", settings)
    await backend.configure_queue("busy", {"weight": 1})
    await backend.configure_queue("busy", {"weight": 2})
    await backend.set_paused("busy", True)
    await backend.enqueue([make(queue="busy")])
    busy, empty = await backend.list_queues()
    assert (busy.name, busy.settings, busy.paused) == ("busy", {"weight": 2}, True)
    assert (empty.name, empty.settings, empty.paused) == ("empty", settings, False)
    assert await backend.queue_settings() == {"busy": {"weight": 2}, "empty": settings}
    assert await backend.delete_queue("empty")
    assert not await backend.delete_queue("empty")
    assert await backend.delete_queue("busy")
    (busy,) = await backend.list_queues()  # its job keeps it listed, without settings
    assert (busy.name, busy.settings, busy.paused, busy.counts["pending"]) == ("busy", {}, False, 1)
    assert len(await backend.claim(["busy"], "w1", 10, LEASE)) == 1  # no longer paused
    assert await backend.queue_settings() == {}


async def test_a_queue_concurrency_limit_holds_across_workers(backend: Backend) -> None:
    await backend.enqueue([make(queue="capped") for _ in range(6)] + [make() for _ in range(3)])
    await backend.configure_queue("capped", {"concurrency": 2, "weight": 3})
    # Workers claiming at once, each asking for more than the limit.
    claims = [backend.claim(["capped", "default"], f"w{i}", 4, LEASE) for i in range(4)]
    taken = [job for batch in await asyncio.gather(*claims) for job in batch]
    capped = [job for job in taken if job.queue == "capped"]
    assert len(capped) == 2 and sum(job.queue == "default" for job in taken) == 3
    assert await backend.claim(["capped"], "w9", 4, LEASE) == []
    # An attempt that ends frees its place; a job handed back does too.
    assert await backend.finish([ok(capped[0])]) == [True]
    (third,) = await backend.claim(["capped"], "w9", 4, LEASE)
    assert third.token is not None
    back = Outcome(third.id, third.token, JobState.PENDING)
    assert await backend.finish([back]) == [True]
    assert [j.id for j in await backend.claim(["capped"], "w9", 4, LEASE)] == [third.id]
    # Raising the limit takes effect at the next claim; removing it lifts it.
    await backend.configure_queue("capped", {"concurrency": 3})
    assert len(await backend.claim(["capped"], "w9", 4, LEASE)) == 1
    assert await backend.claim(["capped"], "w9", 4, LEASE) == []
    await backend.configure_queue("capped", {})
    assert len(await backend.claim(["capped"], "w9", 4, LEASE)) == 2
    (info,) = [q for q in await backend.list_queues() if q.name == "capped"]
    assert info.counts["running"] == 5


async def test_requeue_and_purge_the_dead_letter_queue(backend: Backend, clock: FakeClock) -> None:
    jobs = [make(task=f"t{i % 2}", queue=f"q{i % 2}", max_retries=0) for i in range(6)]
    await backend.enqueue(jobs)
    taken = await backend.claim(["q0", "q1"], "w1", 10, LEASE)
    await backend.finish([failed(j, JobState.DEAD, clock) for j in taken])
    assert await backend.requeue(ids=[jobs[0].id]) == 1
    assert await backend.requeue(task="t1") == 3
    requeued = await backend.get(jobs[1].id)
    assert requeued is not None and requeued.state == JobState.PENDING
    assert requeued.attempts == 0 and len(requeued.errors) == 1
    assert await backend.purge(queue="q0") == 2
    assert (await backend.list_jobs(state=JobState.DEAD))[0] == []
    assert await backend.requeue() == 0
    assert len(await backend.claim(["q0", "q1"], "w1", 10, LEASE)) == 4


# -- waiting for work --------------------------------------------------------------------


async def test_wait_wakes_on_enqueue(backend: Backend, url: str, clock: FakeClock) -> None:
    from taskmill.backends import connect

    producer = connect(url, clock=clock)
    await producer.open()
    try:
        waiter = asyncio.create_task(backend.wait(["default"], 10.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await producer.enqueue([make()])
        await asyncio.wait_for(waiter, 2.0)
    finally:
        await producer.close()


async def test_wait_returns_at_once_when_a_job_is_due(backend: Backend) -> None:
    await backend.enqueue([make()])
    await asyncio.wait_for(backend.wait(["default"], 10.0), 1.0)


async def test_wait_ignores_a_paused_queue_until_it_resumes(backend: Backend) -> None:
    await backend.set_paused("default", True)
    await backend.enqueue([make()])
    waiter = asyncio.create_task(backend.wait(["default"], 10.0))
    await asyncio.sleep(0.3)
    assert not waiter.done()  # the due job is not claimable
    await backend.set_paused("default", False)
    await asyncio.wait_for(waiter, 2.0)


async def test_wait_times_out(backend: Backend) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await backend.wait(["default"], 0.1)
    assert loop.time() - start < 5.0


async def test_wait_and_claim_takes_a_job_stored_while_waiting(
    backend: Backend, url: str, clock: FakeClock
) -> None:
    from taskmill.backends import connect

    producer = connect(url, clock=clock)
    await producer.open()
    try:
        waiter = asyncio.create_task(backend.wait_and_claim(["default"], "w1", 5, LEASE, 10.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        (job,) = await producer.enqueue([make()])
        (taken,) = await asyncio.wait_for(waiter, 2.0)
    finally:
        await producer.close()
    assert (taken.id, taken.state, taken.worker, taken.attempts) == (job.id, "running", "w1", 1)
    stored = await backend.get(job.id)
    assert stored is not None
    assert (stored.token, stored.started_at, stored.lease_until) == (
        taken.token,
        taken.started_at,
        taken.lease_until,
    )
    assert taken.started_at is not None and taken.started_at >= job.created_at
    assert await backend.finish([ok(taken)]) == [True]


async def test_wait_and_claim_times_out_with_nothing(backend: Backend) -> None:
    assert await backend.wait_and_claim(["default"], "w1", 5, LEASE, 0.1) == []


async def test_a_cancelled_wait_and_claim_leaves_no_job_behind(
    backend: Backend, url: str, clock: FakeClock
) -> None:
    """Cancelled as a job arrives, the waiter either has it, or the job waits unclaimed:
    never running for nobody."""
    from taskmill.backends import connect

    producer = connect(url, clock=clock)
    await producer.open()
    try:
        for _ in range(10):
            waiter = asyncio.create_task(backend.wait_and_claim(["default"], "w1", 5, LEASE, 10.0))
            await asyncio.sleep(0.02)
            (job,) = await producer.enqueue([make()])
            waiter.cancel()
            taken: list[Job] = []
            with contextlib.suppress(asyncio.CancelledError):
                taken = await waiter
            stored = await backend.get(job.id)
            assert stored is not None
            if taken:
                assert stored.state is JobState.RUNNING and stored.token == taken[0].token
                assert await backend.finish([ok(taken[0])]) == [True]
            else:
                assert (stored.state, stored.attempts) == (JobState.PENDING, 0)
                await backend.delete(job.id)
    finally:
        await producer.close()


@pytest.mark.parametrize("size", [1, 250])
async def test_bulk_enqueue_then_claim_everything(backend: Backend, size: int) -> None:
    jobs = [make(payload=b'{"args":[%d],"kwargs":{}}' % i) for i in range(size)]
    stored = await backend.enqueue(jobs)
    assert [j.id for j in stored] == [j.id for j in jobs]
    taken: list[Job] = []
    while batch := await claim(backend, limit=100):
        taken += batch
    assert [j.args for j in taken] == [[i] for i in range(size)]


# -- schedules ---------------------------------------------------------------------------------


def schedule(name: str = "nightly", **fields: Any) -> Schedule:
    fields.setdefault("options", {"queue": "reports", "priority": 3, "timeout": 60.0})
    return Schedule(name, "t", "30 2 * * *", "Europe/Paris", [1], {"k": "v"}, **fields)


async def test_schedules_are_stored_listed_and_deleted(backend: Backend) -> None:
    assert await backend.list_schedules() == []
    assert await backend.get_schedule("nightly") is None
    first = schedule(catch_up=600.0, jitter=5.0, created_at=123.5)
    await backend.put_schedule(schedule("b-second", source="code"))
    await backend.put_schedule(first)
    got = await backend.get_schedule("nightly")
    assert got == first
    assert [s.name for s in await backend.list_schedules()] == ["b-second", "nightly"]
    assert (await backend.list_schedules())[1] == first
    assert await backend.delete_schedule("nightly") is True
    assert await backend.delete_schedule("nightly") is False
    assert [s.name for s in await backend.list_schedules()] == ["b-second"]


async def test_put_schedule_replaces_the_definition_and_keeps_the_state(backend: Backend) -> None:
    await backend.put_schedule(schedule())
    assert await backend.record_tick("nightly", 1000.0, "schedule:nightly:1000")
    await backend.put_schedule(schedule(paused=True, options={"queue": "other"}))
    got = await backend.get_schedule("nightly")
    assert got is not None
    assert (got.paused, got.options) == (True, {"queue": "other"})
    assert (got.last_tick, got.recent_jobs) == (1000.0, ["schedule:nightly:1000"])
    # Deleting drops the state: a schedule made again under the name starts afresh.
    await backend.delete_schedule("nightly")
    await backend.put_schedule(schedule())
    got = await backend.get_schedule("nightly")
    assert got is not None
    assert (got.last_tick, got.recent_jobs) == (None, [])


async def test_record_tick_only_moves_forward(backend: Backend) -> None:
    assert not await backend.record_tick("nightly", 1000.0, "j1")  # no such schedule
    await backend.put_schedule(schedule())
    assert await backend.record_tick("nightly", 1000.0, "j1")
    assert not await backend.record_tick("nightly", 1000.0, "j1")  # the same tick again
    assert not await backend.record_tick("nightly", 999.0, "j0")  # an older one
    for tick in range(1001, 1001 + RECENT_JOBS):
        assert await backend.record_tick("nightly", float(tick), f"j{tick}")
    got = await backend.get_schedule("nightly")
    assert got is not None
    assert got.last_tick == 1000.0 + RECENT_JOBS
    assert got.recent_jobs == [f"j{t}" for t in range(1000 + RECENT_JOBS, 1000, -1)]


async def test_record_tick_at_once_from_many_callers_records_each_tick_once(
    backend: Backend,
) -> None:
    await backend.put_schedule(schedule())
    results = await asyncio.gather(
        *(backend.record_tick("nightly", 1000.0, "j") for _ in range(10))
    )
    assert sorted(results) == [False] * 9 + [True]


# -- leases ------------------------------------------------------------------------------------


async def test_a_lease_is_held_renewed_and_taken_over_once_expired(
    backend: Backend, clock: FakeClock
) -> None:
    assert await backend.get_lease("leader") is None
    assert await backend.acquire_lease("leader", "a", 10.0) == Lease("leader", "a", clock() + 10)
    taken = await backend.acquire_lease("leader", "b", 10.0)  # held: b learns by whom
    assert taken == Lease("leader", "a", clock() + 10)
    clock.advance(6)
    renewed = await backend.acquire_lease("leader", "a", 10.0)
    assert renewed == Lease("leader", "a", clock() + 10)
    clock.advance(9.5)
    assert (await backend.acquire_lease("leader", "b", 10.0)).holder == "a"  # renewal held
    assert await backend.get_lease("leader") == renewed
    clock.advance(0.5)  # expires_at reached: the lease is free
    assert await backend.get_lease("leader") is None
    assert await backend.acquire_lease("leader", "b", 3.0) == Lease("leader", "b", clock() + 3)
    assert (await backend.acquire_lease("leader", "a", 10.0)).holder == "b"
    assert (await backend.acquire_lease("other", "a", 10.0)).holder == "a"  # names are apart


async def test_a_released_lease_is_free_at_once(backend: Backend, clock: FakeClock) -> None:
    await backend.acquire_lease("leader", "a", 10.0)
    await backend.release_lease("leader", "b")  # not b's: nothing happens
    assert (await backend.acquire_lease("leader", "b", 10.0)).holder == "a"
    await backend.release_lease("leader", "a")
    assert await backend.get_lease("leader") is None
    assert (await backend.acquire_lease("leader", "b", 10.0)).holder == "b"


async def test_many_contenders_at_once_one_takes_the_lease(backend: Backend) -> None:
    leases = await asyncio.gather(
        *(backend.acquire_lease("leader", f"h{i}", 10.0) for i in range(10))
    )
    assert len({lease.holder for lease in leases}) == 1


async def test_ids_and_filters_with_nul_match_nothing(backend: Backend) -> None:
    """No record holds NUL (PostgreSQL cannot store it): an id or filter with one is
    answered as not found, never as an outage (issue 17)."""
    job = make()
    await backend.enqueue([job])
    await backend.finish([failed(j, JobState.DEAD, FakeClock()) for j in await claim(backend)])
    nul = f"{job.id}\x00"
    assert await backend.get(nul) is None
    assert await backend.cancel(nul) is None
    assert await backend.delete(nul) is False
    for queue, task in (("default\x00", None), (None, "t\x00")):
        assert await backend.list_jobs(queue=queue, task=task) == ([], None)
        assert await backend.purge(queue=queue, task=task) == 0
        assert await backend.requeue(queue=queue, task=task) == 0
    assert await backend.requeue(ids=[nul]) == 0
    assert await backend.requeue(ids=[nul, job.id]) == 1
    got = await backend.get(job.id)
    assert got is not None and got.state == JobState.PENDING
