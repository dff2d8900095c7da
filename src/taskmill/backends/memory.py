"""In-process backend for tests and demos: `memory://NAME` shares one store per name per process."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from taskmill.backends.base import Backend, Clock
from taskmill.backends.rules import (
    PRUNABLE_STATES,
    THROUGHPUT_WINDOW,
    WORKER_TTL,
    Heartbeat,
    Lease,
    Listing,
    Outcome,
    QueueInfo,
    WorkerInfo,
    fold_counts,
    rescue,
)
from taskmill.job import FINISHED_STATES, WAITING_STATES, Job, JobState, decode
from taskmill.schedule import Schedule, recorded


class _Store:
    """The shared state; every access holds `lock`, so loops in several threads may share it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.seq: dict[str, int] = {}
        self.counter = itertools.count()
        # Per queue, a heap of (-priority, seq, id) of waiting jobs; entries of jobs that
        # stopped waiting are skipped when popped.
        self.ready: dict[str, list[tuple[int, int, str]]] = {}
        self.paused: set[str] = set()
        #: Queues that were paused, resumed or configured: listed even when they hold no job.
        self.configured: set[str] = set()
        self.settings: dict[str, dict[str, Any]] = {}
        self.expiring: set[str] = set()
        self.workers: dict[str, WorkerInfo] = {}
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, frozenset[str]]] = []
        #: Schedule definitions, and their state (last_tick, recent_jobs), by name.
        self.schedules: dict[str, Schedule] = {}
        self.leases: dict[str, Lease] = {}

    def push(self, job: Job) -> None:
        if job.expires_at is not None:
            self.expiring.add(job.id)
        heapq.heappush(
            self.ready.setdefault(job.queue, []), (-job.priority, self.seq[job.id], job.id)
        )

    def drop(self, job_id: str) -> None:
        del self.jobs[job_id]
        del self.seq[job_id]
        self.expiring.discard(job_id)

    def notify(self, queue: str) -> None:
        for loop, event, queues in self.waiters:
            if queue in queues:
                loop.call_soon_threadsafe(event.set)


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _copy(job: Job) -> Job:
    return dataclasses.replace(job, errors=list(job.errors), metadata=dict(job.metadata))


class MemoryBackend(Backend):
    def __init__(self, url: str = "memory://", clock: Clock = time.time) -> None:
        super().__init__(clock)
        name = urlsplit(url).netloc + urlsplit(url).path
        with _stores_lock:
            self._store = _stores.setdefault(name, _Store())

    @property
    def _lock(self) -> threading.Lock:
        return self._store.lock

    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        store, out = self._store, []
        with self._lock:
            for job in jobs:
                existing = store.jobs.get(job.id)
                if existing is not None:
                    out.append(_copy(existing))
                    continue
                # The store keeps a copy, as the others keep a row: the caller's object
                # changing later must not change the record.
                job = _copy(job)
                store.jobs[job.id] = job
                store.seq[job.id] = next(store.counter)
                store.push(job)
                store.notify(job.queue)
                out.append(_copy(job))
        return out

    async def _get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._store.jobs.get(job_id)
            return _copy(job) if job else None

    async def _list_jobs(self, listing: Listing) -> tuple[list[Job], int | None]:
        state, queue, task, limit, before = listing
        store = self._store
        with self._lock:
            matching = [
                job
                for job in store.jobs.values()
                if (state is None or job.state == state)
                and (queue is None or job.queue == queue)
                and (task is None or job.task == task)
                and (before is None or store.seq[job.id] < before)
            ]
            matching.sort(key=lambda j: store.seq[j.id], reverse=True)
            page = [_copy(j) for j in matching[:limit]]
            more = len(matching) > limit
            return page, (store.seq[page[-1].id] if more and page else None)

    async def _cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._store.jobs.get(job_id)
            if job is None:
                return None
            if job.state in WAITING_STATES:
                job.state = JobState.CANCELLED
                job.finished_at = self.clock()
            elif job.state == JobState.RUNNING:
                job.cancel_requested = True
            return _copy(job)

    async def _delete(self, job_id: str) -> bool:
        with self._lock:
            job = self._store.jobs.get(job_id)
            if job is None or job.state == JobState.RUNNING:
                return False
            self._store.drop(job_id)
            return True

    async def _claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, now: float
    ) -> list[Job]:
        store, taken = self._store, list[Job]()
        with self._lock:
            for queue in queues:
                if len(taken) >= limit:
                    break
                if queue in store.paused:
                    continue
                room = limit - len(taken)
                cap = store.settings.get(queue, {}).get("concurrency")
                if cap is not None:
                    # A scan of every job, for limited queues only: this backend is for
                    # tests and one process, where the jobs are few.
                    running = sum(
                        j.state is JobState.RUNNING and j.queue == queue
                        for j in store.jobs.values()
                    )
                    room = min(room, cap - running)
                heap, later, end = store.ready.get(queue, []), [], len(taken) + room
                while heap and len(taken) < end:
                    entry = heapq.heappop(heap)
                    job = store.jobs.get(entry[2])
                    if job is None or job.state not in WAITING_STATES or job.queue != queue:
                        continue
                    if job.expires_at is not None and job.expires_at <= now:
                        job.state, job.finished_at = JobState.EXPIRED, now
                        continue
                    if job.run_at > now:
                        later.append(entry)
                        continue
                    job.state = JobState.RUNNING
                    job.attempts += 1
                    job.token = secrets.token_hex(8)
                    job.worker = worker_id
                    job.started_at = now
                    job.lease_until = now + lease
                    job.cancel_requested = False
                    taken.append(_copy(job))
                for entry in later:
                    heapq.heappush(heap, entry)
            self._expire(queues, now)
        return taken

    def _expire(self, queues: Sequence[str], now: float) -> None:
        """Expire waiting jobs of `queues` past expires_at that the claim did not reach."""
        store = self._store
        for job_id in list(store.expiring):
            job = store.jobs[job_id]
            if job.state not in WAITING_STATES:
                store.expiring.discard(job_id)
            elif job.queue in queues and job.expires_at is not None and job.expires_at <= now:
                job.state, job.finished_at = JobState.EXPIRED, now
                store.expiring.discard(job_id)

    async def _wait(self, queues: list[str], timeout: float) -> None:
        store, loop, event = self._store, asyncio.get_running_loop(), asyncio.Event()
        names = frozenset(queues)
        with self._lock:
            now = self.clock()
            due = [
                job.run_at
                for job in store.jobs.values()
                if job.queue in names
                and job.state in WAITING_STATES
                and job.queue not in store.paused
            ]
            if any(run_at <= now for run_at in due):
                return
            upcoming = min(due, default=now + timeout) - now
            waiter = (loop, event, names)
            store.waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), min(timeout, max(upcoming, 0.0)))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                store.waiters.remove(waiter)

    def _held(self, held: Mapping[str, str]) -> Iterator[tuple[str, Job | None]]:
        for job_id, token in held.items():
            job = self._store.jobs.get(job_id)
            ok = job is not None and job.state == JobState.RUNNING and job.token == token
            yield job_id, job if ok else None

    async def _heartbeat(self, beat: Heartbeat) -> set[str]:
        stop = set()
        with self._lock:
            self._store.workers[beat.worker.id] = beat.worker
            for job_id, job in self._held(beat.held):
                if job is None or job.cancel_requested:
                    stop.add(job_id)
                if job is not None:
                    job.lease_until = beat.lease_until
                    if job_id in beat.progress:
                        job.progress = beat.progress[job_id]
        return stop

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        store, applied = self._store, []
        with self._lock:
            for outcome in outcomes:
                job = store.jobs.get(outcome.job_id)
                if job is None or job.state != JobState.RUNNING or job.token != outcome.token:
                    applied.append(False)
                    continue
                applied.append(True)
                job.token = job.lease_until = None
                job.state = outcome.state
                if outcome.error is not None:
                    job.errors.append(outcome.error)
                if outcome.progress is not None:
                    job.progress = outcome.progress
                if outcome.state == JobState.SUCCEEDED and outcome.result is not None:
                    job.result = decode(outcome.result)
                if outcome.state in FINISHED_STATES:
                    job.finished_at = now
                    continue
                if outcome.state == JobState.PENDING:
                    job.attempts -= 1
                    if job.cancel_requested:
                        job.state, job.finished_at = JobState.CANCELLED, now
                        continue
                    if job.run_at > now:
                        job.state = JobState.SCHEDULED
                else:
                    job.run_at = outcome.run_at if outcome.run_at is not None else now
                store.push(job)
                store.notify(job.queue)
        return applied

    async def _maintain(self, now: float) -> int:
        store, rescued = self._store, 0
        with self._lock:
            for job_id, job in list(store.jobs.items()):
                if job.state == JobState.RUNNING and (job.lease_until or 0) < now:
                    rescued += 1
                    fate = rescue(job, now)
                    job.errors.append(fate.error)
                    job.token = job.lease_until = None
                    job.state, job.finished_at = fate.state, fate.finished_at
                    if fate.run_at is not None:
                        job.run_at = fate.run_at
                        store.push(job)
                        store.notify(job.queue)
                elif (
                    job.state in PRUNABLE_STATES and (job.finished_at or now) + job.result_ttl < now
                ):
                    store.drop(job_id)
            for worker_id, info in list(store.workers.items()):
                if info.last_seen + WORKER_TTL < now:
                    del store.workers[worker_id]
        return rescued

    async def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._store.workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        now = self.clock()
        with self._lock:
            return sorted(
                (
                    dataclasses.replace(w)
                    for w in self._store.workers.values()
                    if w.last_seen + WORKER_TTL >= now
                ),
                key=lambda w: w.id,
            )

    async def set_paused(self, queue: str, paused: bool) -> None:
        with self._lock:
            self._store.configured.add(queue)
            if paused:
                self._store.paused.add(queue)
            else:
                self._store.paused.discard(queue)
                self._store.notify(queue)

    async def list_queues(self) -> list[QueueInfo]:
        now = self.clock()
        with self._lock:
            store = self._store
            infos = {
                name: QueueInfo(
                    name, name in store.paused, settings=dict(store.settings.get(name, {}))
                )
                for name in store.configured
            }
            for job in self._store.jobs.values():
                due = job.run_at <= now
                recent = (job.finished_at or 0.0) > now - THROUGHPUT_WINDOW
                fold_counts(
                    infos, job.queue, job.state.value, job.priority, 1,
                    job.created_at if due else None, due, recent,
                )  # fmt: skip
        return [infos[name] for name in sorted(infos)]

    async def configure_queue(self, queue: str, settings: Mapping[str, Any]) -> None:
        with self._lock:
            self._store.configured.add(queue)
            self._store.settings[queue] = dict(settings)

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(settings) for name, settings in self._store.settings.items()}

    async def delete_queue(self, queue: str) -> bool:
        with self._lock:
            store = self._store
            known = queue in store.configured
            store.configured.discard(queue)
            store.settings.pop(queue, None)
            if queue in store.paused:
                store.paused.discard(queue)
                store.notify(queue)
            return known

    def _matching(
        self, state: JobState, ids: Sequence[str] | None, queue: str | None, task: str | None
    ) -> list[Job]:
        wanted = set(ids) if ids is not None else None
        return [
            job
            for job in self._store.jobs.values()
            if job.state == state
            and (wanted is None or job.id in wanted)
            and (queue is None or job.queue == queue)
            and (task is None or job.task == task)
        ]

    async def _requeue(
        self, ids: list[str] | None, queue: str | None, task: str | None, now: float
    ) -> int:
        with self._lock:
            jobs = self._matching(JobState.DEAD, ids, queue, task)
            for job in jobs:
                job.state, job.attempts, job.run_at, job.finished_at = (
                    JobState.PENDING,
                    0,
                    now,
                    None,
                )
                self._store.push(job)
                self._store.notify(job.queue)
        return len(jobs)

    async def _purge(self, state: JobState, queue: str | None, task: str | None) -> int:
        with self._lock:
            jobs = self._matching(state, None, queue, task)
            for job in jobs:
                self._store.drop(job.id)
        return len(jobs)

    # -- schedules ------------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule) -> None:
        with self._lock:
            old = self._store.schedules.get(schedule.name)
            state = (None, []) if old is None else (old.last_tick, old.recent_jobs)
            self._store.schedules[schedule.name] = Schedule.from_stored(
                copy.deepcopy(schedule.definition()), *state
            )

    async def get_schedule(self, name: str) -> Schedule | None:
        with self._lock:
            found = self._store.schedules.get(name)
            return None if found is None else _copy_schedule(found)

    async def list_schedules(self) -> list[Schedule]:
        with self._lock:
            store = self._store.schedules
            return [_copy_schedule(store[name]) for name in sorted(store)]

    async def delete_schedule(self, name: str) -> bool:
        with self._lock:
            return self._store.schedules.pop(name, None) is not None

    async def record_tick(self, name: str, tick: float, job_id: str) -> bool:
        with self._lock:
            found = self._store.schedules.get(name)
            if found is None or (found.last_tick is not None and found.last_tick >= tick):
                return False
            found.last_tick, found.recent_jobs = tick, recorded(found.recent_jobs, job_id)
            return True

    # -- leases -----------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease:
        now = self.clock()
        with self._lock:
            lease = self._store.leases.get(name)
            if lease is None or lease.expires_at <= now or lease.holder == holder:
                lease = self._store.leases[name] = Lease(name, holder, now + ttl)
            return dataclasses.replace(lease)

    async def release_lease(self, name: str, holder: str) -> None:
        with self._lock:
            lease = self._store.leases.get(name)
            if lease is not None and lease.holder == holder:
                del self._store.leases[name]

    async def get_lease(self, name: str) -> Lease | None:
        now = self.clock()
        with self._lock:
            lease = self._store.leases.get(name)
            return None if lease is None or lease.expires_at <= now else dataclasses.replace(lease)


def _copy_schedule(schedule: Schedule) -> Schedule:
    return Schedule.from_stored(
        copy.deepcopy(schedule.definition()), schedule.last_tick, schedule.recent_jobs
    )
