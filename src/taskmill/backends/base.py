"""The backend interface: the boundary of the data model, and the rules every backend keeps.

Every method that changes a job is ONE atomic step on the server (a transaction, a Lua
script): a crash between two calls leaves every job in a state the interface allows.
Methods take batches where the hot path needs them (enqueue, claim, heartbeat, finish),
so that a worker pays one round trip per batch, not per job.

A rule that is the same for every backend is written once, in rules.py: the public
methods of `Backend` apply those that need no storage (job preparation, argument checks,
outcome validation) and call the backend's storage step (`_enqueue`, `_claim`,
`_finish`, ...), which calls rules.py for what it must decide alike (the rescue of an
expired lease, the claim order, the folding of queue counts).

Instances are used from one event loop; `App` keeps one per loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any

from taskmill.backends.rules import (
    Heartbeat,
    Lease,
    Listing,
    Outcome,
    QueueInfo,
    WorkerInfo,
    check_outcomes,
    matchable,
    parse_cursor,
    prepare,
)
from taskmill.errors import ConfigError
from taskmill.job import Job, JobState
from taskmill.schedule import Schedule

Clock = Callable[[], float]


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """Raise CancelledError if the task was cancelled during the block but nothing raised.

    Some drivers swallow a cancellation that lands while they read a reply (redis-py 8.1's
    cluster client; psycopg's pool), and return normally: the caller's task would then run
    on, "cancelling" forever (a worker's upkeep loop never stopped, so the worker never
    exited). Backends wrap such calls in this."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    yield
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


class Backend(ABC):
    """Where jobs live. See the module docstring for the rules every method keeps."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, create the schema if needed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the instance is not used afterwards."""

    # -- producers ------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        """Store jobs (one round trip per call) and return their records, in order.

        The jobs given are prepared in place (prepare()). A job whose id already exists is
        not stored again: the existing record is returned in its place, so ids make enqueue
        idempotent."""
        if not jobs:
            return []
        now = self.clock()
        prepare(jobs, now)
        return await self._enqueue(jobs, now)

    @abstractmethod
    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        """Storage step of enqueue: jobs already prepared, at least one."""

    async def get(self, job_id: str) -> Job | None:
        """The job's record, or None (also, logged, for a record that cannot be read)."""
        return await self._get(job_id) if matchable(job_id) else None

    @abstractmethod
    async def _get(self, job_id: str) -> Job | None:
        """Storage step of get: an id that may be stored (rules.matchable())."""

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs matching every filter given, newest first, and the cursor of the next page.
        A record that cannot be read is left out of the page and logged (rules.skipped()):
        a listing never fails on one; the claim or upkeep that meets it quarantines it."""
        before = parse_cursor(cursor)
        if limit <= 0 or not matchable(queue, task):
            return [], None
        jobs, after = await self._list_jobs(Listing(state, queue, task, limit, before))
        return jobs, None if after is None else str(after)

    @abstractmethod
    async def _list_jobs(self, listing: Listing) -> tuple[list[Job], int | None]:
        """Storage step of list_jobs: the listing's jobs, newest first, and the position of
        the last one if more may follow, else None."""

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a waiting one becomes CANCELLED now; a running one gets
        cancel_requested, which its worker learns at its next heartbeat; a finished one is
        left as it is. Returns the record afterwards, or None if there is no such job."""
        return await self._cancel(job_id) if matchable(job_id) else None

    @abstractmethod
    async def _cancel(self, job_id: str) -> Job | None:
        """Storage step of cancel: an id that may be stored (rules.matchable())."""

    async def delete(self, job_id: str) -> bool:
        """Remove a job that is not running. True if it was removed."""
        return await self._delete(job_id) if matchable(job_id) else False

    @abstractmethod
    async def _delete(self, job_id: str) -> bool:
        """Storage step of delete: an id that may be stored (rules.matchable())."""

    # -- workers --------------------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        """Take up to `limit` due jobs for a worker, atomically.

        First, waiting jobs of these queues whose expires_at has passed become EXPIRED.
        Then due jobs (waiting, run_at <= now) of queues that are not paused are taken, the
        queues in the order given (all due jobs of the first before any of the second),
        within a queue highest priority first and in enqueue order among equals
        (in_claim_order()), and never more of a queue at once than its "concurrency"
        setting allows. Each taken job becomes RUNNING with attempts + 1, a new token,
        worker = worker_id, started_at = now, lease_until = now + lease,
        cancel_requested = False.

        A record taken that cannot be read (undecodable, of the wrong shape, fields
        missing) is not returned: it is quarantined in the dead-letter queue
        (rules.quarantine()), and the claim returns the others. An index entry whose record
        is gone is dropped and logged (rules.lost()).
        """
        order = list(dict.fromkeys(queues))
        if limit <= 0 or not order:
            return []
        return await self._claim(order, worker_id, limit, lease, self.clock())

    @abstractmethod
    async def _claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, now: float
    ) -> list[Job]:
        """Storage step of claim: `queues` without repeats, at least one; `limit` > 0."""

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return once a job may be claimable in one of `queues`, or after `timeout` seconds.

        A paused queue's jobs are not claimable. Returning early without a job is allowed;
        sleeping the whole timeout while a job waits is not (within the backend's
        notification delay)."""
        await self._wait(list(dict.fromkeys(queues)), timeout)

    @abstractmethod
    async def _wait(self, queues: list[str], timeout: float) -> None:
        """Storage step of wait: `queues` without repeats."""

    async def wait_and_claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float, timeout: float
    ) -> list[Job]:
        """wait(), then claim(): what an idle worker does. Returns the jobs claimed, or []
        when none was due within `timeout` (or another worker took it)."""
        order = list(dict.fromkeys(queues))
        return await self._wait_and_claim(order, worker_id, limit, lease, timeout)

    async def _wait_and_claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, timeout: float
    ) -> list[Job]:
        """Storage step of wait_and_claim: `queues` without repeats. A backend that can
        claim as it wakes, with no round trip between, does so instead."""
        await self._wait(queues, timeout)
        return await self.claim_to_the_end(self.claim(queues, worker_id, limit, lease))

    async def claim_to_the_end(self, claim: Coroutine[Any, Any, list[Job]]) -> list[Job]:
        """Await a claim that a cancellation must not cut short: the jobs it took would be
        held by nobody until their leases expired. Cancelled, it runs to its end, hands
        back what it took, and the cancellation goes on."""
        running = asyncio.ensure_future(claim)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.hand_back(await running)
            raise

    async def hand_back(self, jobs: Sequence[Job]) -> None:
        """Give claimed jobs back unrun (as finish() with PENDING outcomes)."""
        if jobs:
            await self.finish([Outcome(j.id, j.token or "", JobState.PENDING) for j in jobs])

    async def heartbeat(
        self,
        worker: WorkerInfo,
        held: Mapping[str, str],
        lease: float,
        progress: Mapping[str, float],
    ) -> set[str]:
        """Mark the worker alive (last_seen = now) and renew its leases, in one step.

        `held` maps job id -> token. Each job still RUNNING with that token gets
        lease_until = now + lease and, if given, its progress. Returns the ids the worker
        must stop running: those whose cancellation was requested, and those it no longer
        holds (token changed, job gone)."""
        now = self.clock()
        seen = dataclasses.replace(worker, last_seen=now)
        return await self._heartbeat(Heartbeat(seen, held, progress, now + lease))

    @abstractmethod
    async def _heartbeat(self, beat: Heartbeat) -> set[str]:
        """Storage step of heartbeat."""

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record how attempts ended, in one round trip; each outcome is applied only if its
        job is still RUNNING with its token. Returns, per outcome, whether it was applied.
        An outcome whose state is not in OUTCOME_STATES is refused (BackendError), and then
        none of the call's outcomes is applied.

        SUCCEEDED sets result and finished_at. RETRYING appends the error and sets run_at
        (now when not given). DEAD appends the error and sets finished_at. CANCELLED sets
        finished_at (appending the error if one is given). PENDING hands the job back:
        attempts - 1, original run_at kept (SCHEDULED again if that is still ahead); but a
        job whose cancellation was requested becomes CANCELLED instead. Every one clears
        token and lease_until, and stores progress if given.
        """
        if not outcomes:
            return []
        check_outcomes(outcomes)
        return await self._finish(outcomes, self.clock())

    @abstractmethod
    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Storage step of finish: outcomes already checked, at least one."""

    async def maintain(self) -> int:
        """Periodic upkeep, safe to run from many processes at once. Returns jobs rescued.

        Rescues RUNNING jobs whose lease expired, as rescue() decides; one whose record
        cannot be read is quarantined instead (and counts as rescued). Deletes jobs in
        PRUNABLE_STATES finished more than result_ttl ago, and workers not seen for
        WORKER_TTL.
        """
        return await self._maintain(self.clock())

    @abstractmethod
    async def _maintain(self, now: float) -> int:
        """Storage step of maintain."""

    @abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """Remove a stopping worker from the live list."""

    @abstractmethod
    async def list_workers(self) -> list[WorkerInfo]:
        """Workers seen within WORKER_TTL."""

    # -- queues and the dead-letter queue ------------------------------------------------

    @abstractmethod
    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (jobs are accepted, none handed out) or resume a queue."""

    @abstractmethod
    async def list_queues(self) -> list[QueueInfo]:
        """Every queue that holds jobs, was paused or resumed, or was configured (and not
        deleted since), with its counts per state, due jobs per priority, jobs finished
        recently and stored settings, sorted by name."""

    @abstractmethod
    async def configure_queue(self, queue: str, settings: Mapping[str, Any]) -> None:
        """Store a queue's settings (a JSON-ready mapping, replacing the last), in one step.
        The queue is listed from then on, and its paused flag is left as it is."""

    @abstractmethod
    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        """The stored settings of every configured queue, by name: a cheap read (no
        counting), for producers and workers that look often."""

    @abstractmethod
    async def delete_queue(self, queue: str) -> bool:
        """Forget a queue's settings and paused flag (its jobs are not touched: a queue
        that still holds jobs stays listed). True if it had settings or a flag."""

    async def requeue(
        self, *, ids: Sequence[str] | None = None, queue: str | None = None, task: str | None = None
    ) -> int:
        """Move DEAD jobs matching every filter given (all when none is) back to PENDING,
        with attempts reset to 0 and run_at = now; their past errors are kept. Returns how
        many moved. A job quarantined as corrupt (rules.Quarantine) stays dead."""
        if ids is not None:
            ids = [job_id for job_id in ids if matchable(job_id)]
        if (ids is not None and not ids) or not matchable(queue, task):
            return 0
        return await self._requeue(
            None if ids is None else list(dict.fromkeys(ids)), queue, task, self.clock()
        )

    @abstractmethod
    async def _requeue(
        self, ids: list[str] | None, queue: str | None, task: str | None, now: float
    ) -> int:
        """Storage step of requeue: `ids` without repeats, and not empty when given."""

    async def purge(
        self,
        *,
        state: JobState = JobState.DEAD,
        queue: str | None = None,
        task: str | None = None,
    ) -> int:
        """Delete finished jobs in `state` matching the filters. Returns how many (0 for a
        state that is not finished: only finished jobs are purged)."""
        if not state.finished or not matchable(queue, task):
            return 0
        return await self._purge(state, queue, task)

    @abstractmethod
    async def _purge(self, state: JobState, queue: str | None, task: str | None) -> int:
        """Storage step of purge: `state` is a finished one."""

    # -- schedules ------------------------------------------------------------------------

    @abstractmethod
    async def put_schedule(self, schedule: Schedule) -> None:
        """Create a schedule, or replace the definition of the one of that name: every field
        of `schedule.definition()`. The state (last_tick, recent_jobs) of an existing one is
        kept, that of a new one starts empty: only record_tick writes it."""

    @abstractmethod
    async def get_schedule(self, name: str) -> Schedule | None:
        """The schedule, its state included, or None."""

    @abstractmethod
    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, its state included, sorted by name."""

    @abstractmethod
    async def delete_schedule(self, name: str) -> bool:
        """Remove a schedule and its state. True if it existed."""

    @abstractmethod
    async def record_tick(self, name: str, tick: float, job_id: str) -> bool:
        """Record that the job `job_id` was enqueued for `tick`, in one atomic step: if the
        schedule exists and its last_tick is None or earlier than `tick`, last_tick = tick
        and job_id goes first in recent_jobs (schedule.recorded()). True if it changed;
        last_tick never moves back."""

    # -- leases (the scheduler's leadership) ------------------------------------------------

    @abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease:
        """Take or renew the lease `name` for `holder`, in one atomic step: if nobody holds
        it, its expires_at has passed (<= now), or `holder` holds it, it becomes
        (holder, now + ttl). Returns the lease as it is afterwards, held by `holder` if it
        was taken, else by the current holder."""

    @abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if `holder` holds it (so another may take it at once)."""

    @abstractmethod
    async def get_lease(self, name: str) -> Lease | None:
        """The lease if someone holds it and it has not expired, else None."""

    # -- helpers shared by every backend ------------------------------------------------

    async def wait_finished(self, job_id: str, timeout: float | None) -> Job | None:
        """Wait until the job is finished (or gone); returns its last record.

        Polls with a growing interval; a backend with notifications may do better."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = 0.005
        while True:
            job = await self.get(job_id)
            if job is None or job.state.finished:
                return job
            if deadline is not None and loop.time() >= deadline:
                return job
            pause = interval if deadline is None else min(interval, deadline - loop.time())
            await asyncio.sleep(max(pause, 0))
            interval = min(interval * 2, 0.1)

    # -- hooks: what only some backends can do ------------------------------------------
    # (The app and the command line reach these through any backend and import none.)

    async def enqueue_on(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        """enqueue() on the caller's own connection to the backend's database (its driver's
        async connection), inside the caller's current transaction: the jobs exist, and
        wake workers, only if it commits. Needs no open(): none of the backend's own
        connections is used."""
        if not jobs:
            return []
        prepare(jobs, self.clock())
        return await self._enqueue_on(connection, jobs)

    async def _enqueue_on(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        """Storage step of enqueue_on: jobs already prepared, at least one."""
        raise ConfigError(self._NOT_ON_A_CONNECTION)

    def enqueue_on_sync(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        """enqueue_on() on the driver's sync connection, in the calling thread."""
        if not jobs:
            return []
        prepare(jobs, self.clock())
        return self._enqueue_on_sync(connection, jobs)

    def _enqueue_on_sync(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        """Storage step of enqueue_on_sync: jobs already prepared, at least one."""
        raise ConfigError(self._NOT_ON_A_CONNECTION)

    _NOT_ON_A_CONNECTION = (
        "connection= takes a PostgreSQL connection, and only the PostgreSQL backend enqueues "
        "on one: this app's workers would never see jobs written there"
    )

    async def migrate(self) -> tuple[list[str], int]:
        """Apply the schema migrations the store lacks, without open() (a deploy step, or a
        role allowed to change the schema): the names of those applied, and the schema
        version now."""
        raise ConfigError(
            "migrate is for postgresql:// URLs: SQLite applies its migrations when opened, "
            "memory:// and Redis have no schema"
        )
