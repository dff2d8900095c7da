"""Schedules at run time and the scheduler's steps, in process, on every backend, with a
clock moved by hand (the processes themselves: test_scheduler_processes.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from taskmill import App, JobState, Worker
from taskmill.backends import Backend
from taskmill.errors import ScheduleError, ScheduleNotFoundError
from taskmill.job import Job
from taskmill.schedule import LEADER
from taskmill.scheduler import POLL, TICK_RETENTION, Scheduler
from tests.conftest import FakeClock, fast_settings, wait_until

#: A whole minute (UNIX seconds); the tests start half a minute after it.
MINUTE = 1_800_000_000.0


def report(month: str = "") -> str:
    return f"report {month}"


@pytest.fixture
async def timed(url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An app on the test's clock, which starts at MINUTE + 30, with a task `report`."""
    clock.now = MINUTE + 30
    instance = App(settings=fast_settings(url), clock=clock)
    instance.task(name="report")(report)
    yield instance
    await instance.aclose()
    instance.close()


async def tick_jobs(app: App) -> list[Job]:
    jobs, _ = await (await app.backend()).list_jobs(limit=1000)
    return sorted(jobs, key=lambda job: job.id)


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


async def test_the_leader_fires_each_due_tick_once_and_a_follower_nothing(
    timed: App, clock: FakeClock
) -> None:
    await timed.schedules.acreate(
        "every-10s", "report", "*/10 * * * * *", kwargs={"month": "may"},
        options={"queue": "reports", "priority": "high", "result_ttl": 5},
    )  # fmt: skip
    leader, follower = Scheduler(timed, lease=30), Scheduler(timed, lease=30)
    assert await leader.lead() == 7.5  # renewed every quarter of the lease
    assert await follower.lead() == 30.0  # tries again when the leader's lease ends
    assert leader.leading and not follower.leading
    clock.advance(25)
    await follower.fire_due()
    assert await tick_jobs(timed) == []
    assert await leader.fire_due() == POLL  # the next tick is later than the poll
    clock.advance(4.5)
    assert await leader.fire_due() == 0.5  # the next tick is sooner
    jobs = await tick_jobs(timed)
    assert ids(jobs) == [f"schedule:every-10s:{int(MINUTE) + s}" for s in (40, 50)]
    job = jobs[0]
    assert (job.task, job.kwargs, job.queue, job.priority) == ("report", {"month": "may"},
                                                              "reports", 2)  # fmt: skip
    assert job.metadata == {"schedule": "every-10s", "tick": MINUTE + 40}
    assert job.result_ttl == TICK_RETENTION  # its id guards the tick for that long at least
    schedule = await timed.schedules.aget("every-10s")
    assert schedule.last_tick == MINUTE + 50
    assert schedule.recent_jobs == ids(jobs)[::-1]
    assert schedule.next_tick(clock()) == MINUTE + 60
    assert [s.next_tick(clock()) for s in await timed.schedules.alist()] == [MINUTE + 60]
    assert ids(await timed.schedules.ajobs("every-10s")) == ids(jobs)[::-1]


async def test_two_leaders_at_once_enqueue_each_tick_once(timed: App, clock: FakeClock) -> None:
    await timed.schedules.acreate("every-second", "report", "* * * * * *", catch_up=60)
    stale, successor = Scheduler(timed, lease=5), Scheduler(timed, lease=5)
    await stale.lead()
    clock.advance(20)  # the stale leader's lease ran out (by the backend's clock) ...
    await successor.lead()
    assert stale.leading and successor.leading  # ... but it has not noticed yet
    await asyncio.gather(stale.fire_due(), successor.fire_due(), stale.fire_due())
    assert ids(await tick_jobs(timed)) == [
        f"schedule:every-second:{int(MINUTE) + 31 + s}" for s in range(20)
    ]
    await stale.lead()
    assert not stale.leading


async def test_missed_ticks_are_skipped_unless_within_catch_up(
    timed: App, clock: FakeClock
) -> None:
    await timed.schedules.acreate("skip", "report", "* * * * *")
    await timed.schedules.acreate("catch-up", "report", "* * * * *", catch_up="5m")
    scheduler = Scheduler(timed, lease=10)
    await scheduler.lead()
    clock.advance(600)  # ten minutes without a scheduler
    await scheduler.fire_due()
    minutes = [f"schedule:catch-up:{int(MINUTE) + 60 * m}" for m in range(6, 11)]
    assert ids(await tick_jobs(timed)) == minutes  # five minutes back; "skip" fired none
    clock.advance(30)
    await scheduler.lead()
    await scheduler.fire_due()  # a tick on time fires whatever the policy
    assert ids(await tick_jobs(timed)) == [
        *minutes,
        f"schedule:catch-up:{int(MINUTE) + 660}",
        f"schedule:skip:{int(MINUTE) + 660}",
    ]


async def test_a_paused_schedule_fires_nothing_not_even_later(timed: App, clock: FakeClock) -> None:
    await timed.schedules.acreate("every-10s", "report", "*/10 * * * * *", catch_up="5m")
    paused = await timed.schedules.apause("every-10s")
    assert paused.paused and paused.next_tick(clock()) is None
    scheduler = Scheduler(timed, lease=10)
    await scheduler.lead()
    clock.advance(100)
    await scheduler.fire_due()
    await timed.schedules.aresume("every-10s")
    await scheduler.fire_due()
    assert await tick_jobs(timed) == []  # the ticks while paused are skipped
    clock.advance(10)
    await scheduler.fire_due()
    assert ids(await tick_jobs(timed)) == [f"schedule:every-10s:{int(MINUTE) + 140}"]


async def test_jitter_delays_each_job_within_its_bound(timed: App, clock: FakeClock) -> None:
    await timed.schedules.acreate("spread", "report", "* * * * * *", jitter="30s")
    scheduler = Scheduler(timed, lease=10)
    await scheduler.lead()
    clock.advance(5)
    await scheduler.fire_due()
    jobs = await tick_jobs(timed)
    assert len(jobs) == 5
    for job in jobs:
        tick = job.metadata["tick"]
        assert tick <= job.run_at <= tick + 30
    assert {job.state for job in jobs if job.run_at > clock()} <= {JobState.SCHEDULED}


async def test_schedules_at_run_time(timed: App, clock: FakeClock) -> None:
    made = await timed.schedules.acreate("nightly", "report", "30 2 * * *", tz="Europe/Paris")
    assert (made.source, made.created_at, made.last_tick) == ("api", clock(), None)
    with pytest.raises(ScheduleError, match="exists"):
        await timed.schedules.acreate("nightly", "report", "@daily")
    changed = await timed.schedules.aupdate("nightly", cron="@hourly", options={"queue": "q"})
    assert (changed.cron, changed.tz, changed.options) == (
        "@hourly",
        "Europe/Paris",
        {"queue": "q"},
    )
    assert changed.next_tick(clock()) == MINUTE + 3600
    assert [s.name for s in await timed.schedules.alist()] == ["nightly"]
    await timed.schedules.adelete("nightly")
    with pytest.raises(ScheduleNotFoundError):
        await timed.schedules.aget("nightly")
    with pytest.raises(ScheduleNotFoundError):
        await timed.schedules.adelete("nightly")
    with pytest.raises(ScheduleNotFoundError):
        await timed.schedules.aupdate("nightly", paused=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "minute 61"),
        ({"tz": "Nowhere/City"}, "time zone"),
        ({"options": {"delay": 5}}, "delay"),
        ({"options": {"priority": "urgent"}}, "priority"),
        ({"options": {"retry": "sometimes"}}, "retry strategy"),
        ({"kwargs": {"year": 2024}}, "do not fit"),
        ({"catch_up": "-1"}, "duration"),
        ({"name": "no spaces"}, "schedule name"),
    ],
)
async def test_invalid_schedules_are_refused(
    timed: App, fields: dict[str, object], message: str
) -> None:
    given: dict[str, object] = {"name": "s", "task": "report", "cron": "@daily", **fields}
    with pytest.raises(ScheduleError, match=message):
        await timed.schedules.acreate(**given)  # type: ignore[arg-type]
    assert await timed.schedules.alist() == []


async def test_schedules_declared_in_code_are_stored_by_a_starting_scheduler(
    timed: App,
) -> None:
    every_quarter = timed.periodic(
        "*/15 * * * *", name="digest", tz="Europe/Paris", queue="reports", kwargs={"month": "x"}
    )

    @every_quarter
    def digest(month: str) -> str:
        return month

    timed.periodic("@hourly", name="hourly-report")(timed.tasks["report"])
    with pytest.raises(ScheduleError, match="twice"):
        timed.periodic("@daily", name="hourly-report")(timed.tasks["report"])

    def refused(day: int) -> int:
        return day

    with pytest.raises(ScheduleError, match="schedule name"):
        timed.periodic("@daily")(refused)  # a local function's name is no schedule name
    assert sorted(timed.tasks) == sorted(["report", digest.name])
    await Scheduler(timed).lead()
    stored = {s.name: s for s in await timed.schedules.alist()}
    assert set(stored) == {"digest", "hourly-report"}
    assert (stored["digest"].source, stored["digest"].task) == ("code", digest.name)
    assert (stored["digest"].options["queue"], stored["digest"].tz) == ("reports", "Europe/Paris")
    # Paused at run time, it stays paused when a scheduler starts again.
    await timed.schedules.apause("hourly-report")
    await Scheduler(timed).lead()
    assert (await timed.schedules.aget("hourly-report")).paused


async def running_job(backend: Backend, clock: FakeClock) -> str:
    """A job whose worker's lease has expired."""
    (job,) = await backend.enqueue([Job(task="report", max_retries=3)])
    await backend.claim(["default"], "gone", 1, 1.0)
    clock.advance(2)
    return job.id


async def test_the_leader_runs_the_upkeep_and_workers_only_without_one(
    timed: App, clock: FakeClock
) -> None:
    backend = await timed.backend()
    worker, scheduler = Worker(timed), Scheduler(timed, lease=60)
    await scheduler.lead()
    rescued_by_leader = await running_job(backend, clock)
    await worker._upkeep(backend)  # a scheduler leads: the worker leaves it the upkeep
    assert (await timed.aget(rescued_by_leader)).state == JobState.RUNNING
    await scheduler.upkeep()
    assert (await timed.aget(rescued_by_leader)).state == JobState.RETRYING

    await backend.release_lease(LEADER, scheduler.id)
    rescued_by_worker = await running_job(backend, clock)
    await worker._upkeep(backend)
    assert (await timed.aget(rescued_by_worker)).state == JobState.RETRYING


async def test_a_worker_with_a_scheduler_runs_the_jobs_of_its_schedules() -> None:
    app = App(settings=fast_settings(f"memory://{uuid.uuid4().hex}"))
    app.task(name="report")(report)
    await app.schedules.acreate("every-second", "report", "* * * * * *")
    worker = Worker(app, scheduler=True)
    running = asyncio.create_task(worker.run())

    async def two_ran() -> bool:
        return sum(job.state == JobState.SUCCEEDED for job in await tick_jobs(app)) >= 2

    await wait_until(two_ran, "two ticks' jobs ran")
    worker.stop()
    await running
    jobs = await tick_jobs(app)
    assert len(jobs) >= 2
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    assert await (await app.backend()).get_lease(LEADER) is None  # released on stop
    await app.aclose()
