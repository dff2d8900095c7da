"""Poison records (issue 17): a stored record a backend cannot read goes to the dead-letter
queue as rules.corrupt() says, and its queue keeps flowing; an index entry whose record is
gone is dropped. Each test corrupts the store behind the backend's back, the way a bad
migration, a hand edit or a bug of another version would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from taskmill import App
from taskmill.backends import Backend
from taskmill.backends.redis_scripts import queue_keys
from taskmill.backends.rules import CORRUPT
from taskmill.job import Job, JobState
from taskmill.worker import Worker
from tests.conftest import FakeClock, fast_settings

LEASE = 30.0

#: How a backend's store is corrupted: url, queue, job id -> None.
Corruption = Callable[[str, str, str], None]


def _sqlite(column: str, value: Any) -> Corruption:
    def corrupt(url: str, queue: str, job_id: str) -> None:
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))

    return corrupt


def _redis_client(url: str) -> Any:
    if "+cluster" in url:
        node = url.split("://")[1].split(",")[0]
        return redis.RedisCluster.from_url(f"redis://{node}")
    return redis.Redis.from_url(url)


def _redis(*command: Any) -> Corruption:
    """A command on the job's hash: its key takes the place of KEY."""

    def corrupt(url: str, queue: str, job_id: str) -> None:
        key = queue_keys(queue).job + job_id
        client = _redis_client(url)
        try:
            client.execute_command(*(key if part == "KEY" else part for part in command))
        finally:
            client.close()

    return corrupt


def _postgres(sql: str, value: Any) -> Corruption:
    def corrupt(url: str, queue: str, job_id: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.encode(), (value, job_id))

    return corrupt


#: Per backend, each way its records are corrupted, by name.
CORRUPTIONS: dict[str, dict[str, Corruption]] = {
    "sqlite": {
        "spec not JSON": _sqlite("spec", b"\xff{not json"),
        "spec of the wrong shape": _sqlite("spec", b'{"retry": 7}'),
        "errors not JSON": _sqlite("errors", "[{oops"),
        "errors of the wrong shape": _sqlite("errors", "[1, 2]"),
    },
    "redis": {
        "spec not JSON": _redis("HSET", "KEY", "spec", b"\xff{garbage"),
        "spec of the wrong shape": _redis("HSET", "KEY", "spec", b"[1]"),
        "errors not JSON": _redis("HSET", "KEY", "errors", b"[{oops"),
        "fields missing": _redis("HDEL", "KEY", "task", "payload", "created"),
        "state missing": _redis("HDEL", "KEY", "state"),
    },
    "postgres": {
        "spec of the wrong shape": _postgres(
            "UPDATE taskmill_jobs SET spec = %s::json WHERE id = %s", '{"retry": "x"}'
        ),
        "spec not an object": _postgres(
            "UPDATE taskmill_jobs SET spec = %s::json WHERE id = %s", "[1, 2]"
        ),
        "errors of the wrong shape": _postgres(
            "UPDATE taskmill_jobs SET errors = %s::jsonb WHERE id = %s", "[1]"
        ),
        "errors not a list": _postgres(
            "UPDATE taskmill_jobs SET errors = %s::jsonb WHERE id = %s", '"x"'
        ),
    },
}
CORRUPTIONS["redis-cluster"] = CORRUPTIONS["redis"]
#: The job's record deleted behind its indexes (Redis keeps them apart).
GONE = _redis("DEL", "KEY")


def kind_of(url: str) -> str:
    scheme = url.split(":", 1)[0]
    if scheme.startswith("redis"):
        return "redis-cluster" if "+cluster" in url else "redis"
    return "postgres" if scheme.startswith("postgres") else scheme


def corruptions(url: str) -> dict[str, Corruption]:
    found = CORRUPTIONS.get(kind_of(url))
    if found is None:
        pytest.skip("the memory backend stores no encoded records")
    return found


def assert_quarantined(job: Job | None) -> None:
    assert job is not None
    assert job.state == JobState.DEAD and job.finished_at is not None and job.token is None
    assert job.errors and job.errors[-1].error.startswith(CORRUPT), job.errors


async def test_a_claim_quarantines_what_it_cannot_read(url: str, backend: Backend) -> None:
    for n, (name, corrupt) in enumerate(corruptions(url).items()):
        bad, good = Job(task="t", queue=f"q{n}"), Job(task="t", queue=f"q{n}")
        await backend.enqueue([bad, good])  # the bad one first: at the head of its queue
        corrupt(url, bad.queue, bad.id)
        taken = await backend.claim([bad.queue], "w1", 10, LEASE)
        assert [job.id for job in taken] == [good.id], name
        assert_quarantined(await backend.get(bad.id))
        # It stays dead: requeue leaves it, and the queue has nothing left to hand out.
        assert await backend.requeue(ids=[bad.id]) == 0, name
        assert await backend.claim([bad.queue], "w1", 10, LEASE) == [], name
        dead, _ = await backend.list_jobs(state=JobState.DEAD, queue=bad.queue)
        assert [job.id for job in dead] == [bad.id], name


async def test_upkeep_quarantines_a_running_job_it_cannot_read(
    url: str, backend: Backend, clock: FakeClock
) -> None:
    found = corruptions(url)
    jobs = [Job(task="t") for _ in found]
    await backend.enqueue(jobs)
    assert len(await backend.claim(["default"], "w1", 100, LEASE)) == len(jobs)
    for job, corrupt in zip(jobs, found.values(), strict=True):
        corrupt(url, job.queue, job.id)
    clock.advance(LEASE + 1)
    await backend.maintain()
    for job in jobs:
        assert_quarantined(await backend.get(job.id))
    assert await backend.maintain() == 0  # not rescued again and again


async def test_a_listing_leaves_out_what_it_cannot_read(
    url: str, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    found = corruptions(url)
    bad = [Job(task="t") for _ in found]
    good = Job(task="t")
    await backend.enqueue([*bad, good])
    for job, corrupt in zip(bad, found.values(), strict=True):
        corrupt(url, job.queue, job.id)
    listed, _ = await backend.list_jobs()
    # Those still readable are listed as they are; the others left out, and logged.
    assert good.id in {job.id for job in listed}
    assert all(job.state == JobState.PENDING for job in listed)
    unread = {job.id for job in bad} - {job.id for job in listed}
    for job_id in unread:
        assert f"job {job_id!r} left out" in caplog.text
        assert await backend.get(job_id) is None  # as the listing: left out, and logged


async def test_an_index_entry_whose_record_is_gone_is_dropped(
    url: str, backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    if not kind_of(url).startswith("redis"):
        pytest.skip("only Redis keeps a job's indexes apart from its record")
    ready, later, running, good = Job(task="t"), Job(task="t"), Job(task="t"), Job(task="t")
    later.run_at = clock() + 5
    await backend.enqueue([running])
    assert [job.id for job in await backend.claim(["default"], "w1", 1, LEASE)] == [running.id]
    await backend.enqueue([ready, later, good])
    for job in (ready, later, running):
        GONE(url, job.queue, job.id)
    # The listing drops the entries it meets, the claim those in the ready and scheduled
    # indexes (and fails on none of them), upkeep the lease: each logged.
    listed, _ = await backend.list_jobs()
    assert [job.id for job in listed] == [good.id]
    clock.advance(LEASE + 1)
    assert [job.id for job in await backend.claim(["default"], "w1", 10, LEASE)] == [good.id]
    assert await backend.maintain() == 0
    for job in (ready, later, running):
        assert await backend.get(job.id) is None
        assert f"index entry {job.id!r} dropped" in caplog.text


@pytest.mark.slow
async def test_a_worker_drains_a_queue_full_of_poison(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The poison-pill test: 1,000 good jobs and 10 records corrupted in each way, drained
    by a real worker: every good one succeeds, every bad one ends dead (or, its record
    gone, dropped), and the worker never fails a claim or an upkeep step."""
    found = dict(corruptions(url))
    if kind_of(url).startswith("redis"):
        found["record gone"] = GONE
    app = App(settings=fast_settings(url))

    @app.task
    def double(x: int) -> int:
        return 2 * x

    try:
        handles = await app.aenqueue_many(
            [double.prepare(i) for i in range(1000 + 10 * len(found))]
        )
        # The bad ones at the head of the queue, each between two good ones.
        bad = handles[: 20 * len(found) : 2]
        chosen = {handle.id for handle in bad}
        good = [handle for handle in handles if handle.id not in chosen]
        for n, handle in enumerate(bad):
            list(found.values())[n % len(found)](url, handle.job.queue, handle.id)
        await Worker(app, burst=True).run()
        for handle in good:
            assert await handle.aresult(5) == 2 * handle.job.args[0]
        backend = await app.backend()
        for n, handle in enumerate(bad):
            job = await backend.get(handle.id)
            if list(found)[n % len(found)] == "record gone":
                assert job is None
            else:
                assert_quarantined(job)
    finally:
        await app.aclose()
        app.close()
    assert "claim failed" not in caplog.text and "will retry" not in caplog.text
