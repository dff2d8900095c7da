"""The scheduler: fires the stored schedules' ticks while it leads, and runs the backend's upkeep.

Any number of schedulers may run (for availability): they contend for one leader lease
in the backend, and only the leader works. Its loops, each one small `Loop` of the same
start/stop shape:

- leadership: takes or renews the lease every lease/4; a follower tries again when the
  leader's lease expires, so a dead leader is replaced within one lease;
- ticks: enqueues the job of every due tick of every schedule;
- upkeep: the backend's maintain(): rescues expired job leases and prunes finished jobs
  past their result_ttl. (Delayed jobs need no loop: every backend's claim promotes those
  that came due.) Workers run it themselves only while no scheduler leads.

Exactly once per tick, guarded twice. The lease saves the work; the tick decides it:
the job of a tick has the id `schedule:<name>:<tick>`, and enqueue is idempotent by id, so
two leaders at once (a paused one waking after its lease passed to another) store one job.
The job is enqueued first and the tick recorded after (record_tick, which only moves
forward), so a leader dying between the two leaves the tick due and its successor's
enqueue of it finds the job already there. A tick is fired only while later than the
schedule's recorded last tick, and its job is kept at least TICK_RETENTION after it ends
whatever its result_ttl: a second enqueue of a tick would need a leader to stall that long
between reading the schedule and enqueueing, since the first recorded the tick before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from taskmill.backends import Backend
from taskmill.errors import ScheduleError, TaskmillError
from taskmill.schedule import LEADER, Schedule, tick_job_id

if TYPE_CHECKING:
    from taskmill.app import App

log = logging.getLogger("taskmill.scheduler")

#: Finished tick jobs are kept at least this long (seconds), so their ids guard the tick.
TICK_RETENTION = 3600.0
#: Most ticks of one schedule fired in one step (a long catch-up fires the newest).
MAX_TICKS = 1000
#: Longest the ticks loop sleeps, so that new and changed schedules are seen.
POLL = 1.0
#: Pause after a loop's step failed (the backend unreachable, say).
RETRY = 1.0


class Loop:
    """A background loop with the shape every one of the scheduler's has: `start()`,
    `stop()`, and `wake()` to run the step now. `step` returns the seconds until its next
    run; a step that raises is logged and tried again after RETRY."""

    def __init__(self, name: str, step: Callable[[], Awaitable[float]]) -> None:
        self.name = name
        self.step = step
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"taskmill-{self.name}")

    def wake(self) -> None:
        self._woken.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._woken.clear()
            try:
                delay = await self.step()
            except Exception:
                log.exception("scheduler %s loop failed; will retry", self.name)
                delay = RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(delay, 0.0))


class Scheduler:
    """Fires the schedules of the app's backend while it holds the leader lease, and runs
    the backend's upkeep; see the module docstring.

    lease: seconds the leadership lasts unless renewed [settings.scheduler_lease]. The
    hosts' clocks must agree to well within it (the lease's expiry is a timestamp).
    """

    def __init__(self, app: App, *, lease: float | None = None) -> None:
        self.app = app
        self.lease = lease if lease is not None else app.settings.scheduler_lease
        if self.lease <= 0:
            raise ScheduleError("the scheduler lease must be > 0")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Leading until this time.monotonic(): the lease's length counted from before the
        # call that last renewed it, less one renewal period, so a leader that cannot
        # renew stops before another can take over.
        self._leading_until = 0.0
        self._stopping: asyncio.Event | None = None
        self._loops: dict[str, Loop] = {}
        self._declared_stored = False

    @property
    def leading(self) -> bool:
        return time.monotonic() < self._leading_until

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def run(self, *, install_signals: bool = False) -> None:
        """Run until stop() (or SIGTERM/SIGINT with install_signals)."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        backend = await self.app.backend()
        self._loops = {
            "leadership": Loop("leadership", self.lead),
            "ticks": Loop("ticks", self.fire_due),
            "upkeep": Loop("upkeep", self.upkeep),
        }
        for each in self._loops.values():
            each.start()
        log.info("scheduler %s started (lease %ss)", self.id, self.lease)
        try:
            await self._stopping.wait()
        finally:
            for each in self._loops.values():
                await each.stop()
            if self.leading:  # a successor need not wait for the lease to expire
                self._leading_until = 0.0
                with contextlib.suppress(Exception):
                    await backend.release_lease(LEADER, self.id)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("scheduler %s stopped", self.id)

    # One step of each loop; each returns the seconds until its next.

    async def lead(self) -> float:
        """Take or renew the leader lease."""
        backend = await self.app.backend()
        if not self._declared_stored:  # here, so that a failure is retried like a step's
            await self.app.schedules.astore_declared()
            self._declared_stored = True
        started = time.monotonic()
        lease = await backend.acquire_lease(LEADER, self.id, self.lease)
        renew = self.lease / 4
        if lease.holder == self.id:
            if not self.leading:
                log.info("scheduler %s leads", self.id)
                for name in ("ticks", "upkeep"):
                    if name in self._loops:
                        self._loops[name].wake()
            self._leading_until = started + self.lease - renew
            return renew
        if self.leading:
            log.warning("scheduler %s lost the lead to %s", self.id, lease.holder)
        self._leading_until = 0.0
        # Try again as the leader's lease expires: if it died, that is when to take over.
        return min(max(lease.expires_at - backend.clock(), 0.0), self.lease)

    async def fire_due(self) -> float:
        """Enqueue the jobs of the due ticks, if leading."""
        backend = await self.app.backend()
        if not self.leading:
            return POLL  # woken when it comes to lead
        now = backend.clock()
        grace = self.lease + POLL  # a takeover's delay: ticks no later than it are not missed
        upcoming = now + POLL
        for schedule in await backend.list_schedules():
            for tick in schedule.due_ticks(now, grace, MAX_TICKS):
                if not self.leading:
                    return 0.0
                await self._fire(backend, schedule, tick)
            following = schedule.next_tick(now)
            if following is not None:
                upcoming = min(upcoming, following)
        return upcoming - backend.clock()

    async def _fire(self, backend: Backend, schedule: Schedule, tick: float) -> None:
        options: dict[str, Any] = {**schedule.options, "id": tick_job_id(schedule.name, tick)}
        options["metadata"] = {**options.get("metadata", {}), "schedule": schedule.name}
        options["metadata"]["tick"] = tick
        if schedule.jitter:
            options["scheduled_at"] = tick + random.uniform(0.0, schedule.jitter)
        try:
            job = self.app.make_job(
                schedule.task, schedule.args, schedule.kwargs, strict=False, **options
            )
        except TaskmillError as exc:  # tried again at the next step, until the tick is old
            log.error("schedule %s, tick %s: cannot make its job: %s", schedule.name, tick, exc)
            return
        job.result_ttl = max(job.result_ttl, TICK_RETENTION)
        (stored,) = await backend.enqueue([job])
        await backend.record_tick(schedule.name, tick, stored.id)
        log.info("schedule %s fired tick %s: job %s", schedule.name, tick, stored.id)

    async def upkeep(self) -> float:
        """The backend's maintain(), if leading."""
        if self.leading:
            await (await self.app.backend()).maintain()
        return self.app.settings.maintain_interval
