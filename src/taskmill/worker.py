"""The worker: claim batches, run handlers, heartbeat leases, record outcomes, drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import random
import signal
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from taskmill import logs
from taskmill.app import App, Task
from taskmill.backends import Backend, Outcome, WorkerInfo
from taskmill.errors import (
    InvalidArgumentsError,
    JobCancelledError,
    PayloadError,
    PermanentError,
    UnknownTaskError,
)
from taskmill.job import AttemptError, Job, JobState, check_queue_name, decode_payload, encode
from taskmill.pool import ChildError, ProcessPool, ThreadPool
from taskmill.recorder import Recorder, describe
from taskmill.schedule import LEADER
from taskmill.scheduler import Scheduler

if TYPE_CHECKING:
    from taskmill.metrics import JobMetrics

log = logging.getLogger("taskmill.worker")

#: Failures that no retry can mend: the job goes to the dead-letter queue at once.
PERMANENT = (PermanentError, PayloadError, InvalidArgumentsError)

StopReason = Literal["cancel", "shutdown"]
T = TypeVar("T")


@dataclass(slots=True)
class JobContext:
    """What a running handler can learn and say about its job (see `current_job()`)."""

    job: Job
    worker: Worker
    #: Set once the job is to stop; a sync handler sees it through check_cancelled().
    cancelled: bool = False
    stop_reason: StopReason | None = None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def progress(self, fraction: float) -> None:
        """Report progress in [0, 1]; stored at the next heartbeat."""
        self.worker._progress[self.job.id] = min(max(float(fraction), 0.0), 1.0)

    def check_cancelled(self) -> None:
        """For sync handlers: raise JobCancelledError once the job's cancellation was asked."""
        if self.cancelled:
            raise JobCancelledError(f"job {self.job.id} was cancelled")


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("taskmill_job")


def current_job() -> JobContext:
    """The running job's context; call it from inside a handler."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("current_job() is only available inside a running task") from None


def parse_queues(spec: str) -> dict[str, int]:
    """ "a,b" or "a:3,b:1" (name:weight) -> {name: weight}, in the order given."""
    queues: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, weight = part.partition(":")
        if weight and not weight.isdigit():
            raise ValueError(f"queue weight must be a positive integer: {part!r}")
        queues[check_queue_name(name)] = int(weight or 1)
    if not queues or min(queues.values()) < 1:
        raise ValueError("give at least one queue, weights >= 1")
    return queues


class Worker:
    """Runs the app's tasks from `queues`, up to `concurrency` at once.

    queues: names, or names with weights. A claim looks at the queues in an order drawn by
    weight each time, so a heavy queue is preferred and a light one never starves;
    strict=True always takes them in the order given instead.

    prefetch: jobs claimed ahead of free slots (default: as many as concurrency), so that
    the next batch is being claimed while this one runs. They are leased like running
    jobs, and handed back at once when the worker stops.

    metrics: where to count the attempts run (see taskmill.metrics); None counts nothing.

    scheduler: also run a Scheduler in this process (it leads if no other scheduler does).
    The backend's upkeep (rescuing expired leases, pruning) is the leading scheduler's
    work; a worker does it only while no scheduler leads, so a deployment without one works.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] | Mapping[str, int] = ("default",),
        *,
        concurrency: int = 10,
        strict: bool = False,
        processes: int | None = None,
        burst: bool = False,
        prefetch: int | None = None,
        metrics: JobMetrics | None = None,
        scheduler: bool = False,
    ) -> None:
        if concurrency < 1 or (prefetch is not None and prefetch < 0):
            raise ValueError("concurrency must be >= 1 and prefetch >= 0")
        self.app = app
        self.settings = app.settings
        self.weights = dict(queues) if isinstance(queues, Mapping) else dict.fromkeys(queues, 1)
        #: The weights given; a weight stored with the queue (through the API) overrides them.
        self._given_weights = dict(self.weights)
        for name in self.weights:
            check_queue_name(name)
        self.concurrency = concurrency
        self.capacity = concurrency + (concurrency if prefetch is None else prefetch)
        self.strict = strict
        self.burst = burst
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._processes = processes or os.cpu_count() or 1
        self._pool: ProcessPool | None = None
        self._threads = ThreadPool(concurrency, "taskmill-job")
        self._running: dict[str, tuple[asyncio.Task[None], JobContext]] = {}
        self._ready: dict[str, Job] = {}  # claimed, waiting for a free slot
        self._held: dict[str, str] = {}  # job id -> token, until the outcome is recorded
        self._progress: dict[str, float] = {}
        self._recorder = Recorder(self.id, app.clock, self._held)
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_waiter: asyncio.Future[Any] | None = None
        # The task waiting in _unless_stopped, for stop() to cancel.
        self._waiting: asyncio.Task[Any] | None = None
        self.scheduler = Scheduler(app) if scheduler else None
        self.info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self.weights),
            concurrency=concurrency,
            tasks=sorted(app.tasks),
            started_at=app.clock(),
        )
        self.metrics = metrics
        if metrics is not None:
            metrics.running_gauge(lambda: len(self._running))

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; running jobs get the grace period, then are handed back."""
        if self._stopping.is_set():
            return  # a second cancel could cut short the hand-back of the first
        self._stopping.set()
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self, *, install_signals: bool = False) -> None:
        """Work until stop() (or SIGTERM/SIGINT with install_signals), or until idle in burst."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        logs.bind(worker=self.id)  # every task started from here on logs it
        backend = await self.app.backend()
        await backend.heartbeat(self.info, {}, self.settings.lease, {})
        heartbeat = asyncio.create_task(
            self._every(self.settings.heartbeat, self._heartbeat, backend)
        )
        upkeep = asyncio.create_task(
            self._every(self.settings.maintain_interval, self._upkeep, backend)
        )
        flusher = asyncio.create_task(self._recorder.run(backend))
        scheduling = None if self.scheduler is None else asyncio.create_task(self.scheduler.run())
        log.info(
            "worker %s started: queues %s, concurrency %d", self.id, self.weights, self.concurrency
        )
        try:
            await self._fetch_loop(backend)
        finally:
            await self._drain()  # heartbeats go on meanwhile: the leases stay ours
            # Let the flusher finish its write: cancelling it midway could record a batch
            # twice, and the second time it would look like lost leases.
            self._recorder.close()
            await asyncio.wait([flusher], timeout=self.settings.lease)
            if not flusher.done():
                flusher.cancel()
                log.error("could not record outcomes; those jobs will be rescued and rerun")
            waiters = [heartbeat, upkeep, *filter(None, [self._stop_waiter])]
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._stop_waiter = None
            if self.scheduler is not None and scheduling is not None:
                self.scheduler.stop()
                await asyncio.gather(scheduling, return_exceptions=True)
            with contextlib.suppress(Exception):
                await backend.unregister_worker(self.id)
            self._threads.shutdown(wait=False)
            if self._pool is not None:
                self._pool.close()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker %s stopped", self.id)

    def _order(self) -> list[str]:
        if self.strict or len(self.weights) == 1:
            return list(self.weights)
        names, weights, order = list(self.weights), list(self.weights.values()), []
        while names:
            i = random.choices(range(len(names)), weights)[0]
            order.append(names.pop(i))
            weights.pop(i)
        return order

    async def _until_stopping(self, first: Awaitable[T], *others: Awaitable[Any]) -> T | None:
        """Await the first of the awaitables to finish, unless stop() comes first; the
        result of `first` if it was that one."""
        if self._stop_waiter is None:  # one for the worker's life, not one per call
            self._stop_waiter = asyncio.ensure_future(self._stopping.wait())
        futures = [asyncio.ensure_future(a) for a in (first, *others)]
        await asyncio.wait([*futures, self._stop_waiter], return_when=asyncio.FIRST_COMPLETED)
        pending = [future for future in futures if not future.done()]
        for future in pending:
            future.cancel()
        if pending:  # else no need to give the loop a turn
            await asyncio.gather(*pending, return_exceptions=True)
        lead = futures[0]
        return lead.result() if lead.done() and not lead.cancelled() else None

    async def _unless_stopped(self, wait: Awaitable[T]) -> T | None:
        """Await `wait` in this very task, which stop() cancels: None if it did. Without a
        task and asyncio.wait around it, a job that ends an idle wait starts two loop turns
        sooner."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting = task
        try:
            return await wait
        except asyncio.CancelledError:
            if self._stopping.is_set() and task.uncancel() == 0:
                return None
            raise
        finally:
            self._waiting = None

    async def _fetch_loop(self, backend: Backend) -> None:
        failures = 0
        # Claim in batches of at least this many while busy: a claim per freed slot would
        # cost a round trip per job.
        batch = max(1, self.capacity // 4)
        # The last wait returned at once (a job was due), yet the claim after it took none:
        # the due jobs are held back by their queue's concurrency limit (or another worker
        # took them). Asking wait() again would return at once again: sleep instead.
        held_back, loop = False, asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._start_ready()
            want = self.capacity - len(self._running) - len(self._ready)
            if want < batch and self._running:
                self._slot_free.clear()
                await self._until_stopping(self._slot_free.wait())
                continue
            try:
                jobs = await backend.claim(self._order(), self.id, want, self.settings.lease)
                waited = not jobs
                if waited:
                    if self.burst and not self._running and not self._ready:
                        return
                    since = loop.time()
                    jobs = await self._idle(backend, want, held_back)
                    poll = self.settings.poll_interval
                    held_back = not jobs and not held_back and loop.time() - since < poll / 10
                else:
                    held_back = False
                failures = 0
            except Exception:
                failures += 1
                log.exception("claim failed; retrying")
                await self._until_stopping(asyncio.sleep(min(0.1 * 2**failures, 5.0)))
                continue
            for job in jobs:
                assert job.token is not None
                self._held[job.id] = job.token
                self._ready[job.id] = job
            if waited and jobs:
                # Someone waits for these: start them before the next claim goes out.
                self._start_ready()
                await asyncio.sleep(0)

    async def _idle(self, backend: Backend, want: int, held_back: bool) -> list[Job]:
        """Nothing was due: wait for a job and claim it as it comes (or sleep, when due jobs
        are held back), until stop() or a freed slot."""
        if self._stopping.is_set():
            return []
        poll = self.settings.poll_interval
        idle = (
            asyncio.sleep(poll, list[Job]())
            if held_back
            else backend.wait_and_claim(self._order(), self.id, want, self.settings.lease, poll)
        )
        # A freed slot matters too when a claimed job waits for it, or, in burst mode, when
        # the finishing job may be the last; or a job that ends may free a place under its
        # queue's limit.
        self._slot_free.clear()
        if self.burst or self._ready or held_back:
            return await self._until_stopping(idle, self._slot_free.wait()) or []
        return await self._unless_stopped(idle) or []

    async def _drain(self) -> None:
        """Hand back jobs not started; let running ones finish within the grace period, then
        hand back the rest."""
        for job in self._ready.values():
            assert job.token is not None
            self._recorder.add(Outcome(job.id, job.token, JobState.PENDING), job.attempts)
        self._ready.clear()
        if not self._running:
            return
        tasks = [task for task, _ in self._running.values()]
        _, late = await asyncio.wait(tasks, timeout=self.settings.grace)
        for task, ctx in list(self._running.values()):
            if task in late:
                self._interrupt(ctx, "shutdown")
        if late:
            await asyncio.wait(late)

    # -- running one job ----------------------------------------------------------------

    def _start_ready(self) -> None:
        while self._ready and len(self._running) < self.concurrency:
            job_id = next(iter(self._ready))  # claim order: priority first
            job = self._ready.pop(job_id)
            ctx = JobContext(job, self)
            task = asyncio.create_task(self._run(job, ctx), name=f"taskmill-job-{job_id}")
            self._running[job_id] = (task, ctx)

    def _interrupt(self, ctx: JobContext, reason: StopReason) -> None:
        entry = self._running.get(ctx.job.id)
        if entry is not None and ctx.stop_reason is None:
            ctx.stop_reason = reason
            ctx.cancelled = True
            entry[0].cancel()

    async def _run(self, job: Job, ctx: JobContext) -> None:
        # Both context variables are this task's own: set here, seen by the handler.
        _current.set(ctx)
        logs.bind(job_id=job.id, task=job.task, queue=job.queue, attempt=job.attempts)
        if self.metrics is not None:
            self.metrics.job_started(job)
        began = time.perf_counter()
        try:
            outcome = await self._execute(job, ctx)
        finally:
            del self._running[job.id]
            self._slot_free.set()
        if self.metrics is not None:
            self.metrics.job_ended(job, outcome.state, time.perf_counter() - began)
        outcome.progress = self._progress.pop(job.id, None)
        self._recorder.add(outcome, job.attempts)

    async def _execute(self, job: Job, ctx: JobContext) -> Outcome:
        assert job.token is not None
        task = self.app.tasks.get(job.task)
        # Armed when the handler starts (_invoke), not now: a job waiting for a thread or a
        # child process is not charged for the wait.
        timer = asyncio.timeout(None)
        try:
            if task is None:
                raise UnknownTaskError(job.task, list(self.app.tasks))
            args, kwargs = decode_payload(job.payload)
            task.check_arguments(args, kwargs)
            async with timer:
                result = await self._invoke(task, args, kwargs, functools.partial(_arm, timer, job))
            stored = encode(result)  # a result that cannot be stored fails here, clearly
            return Outcome(job.id, job.token, JobState.SUCCEEDED, result=stored)
        except asyncio.CancelledError as exc:
            if ctx.stop_reason == "shutdown":
                return Outcome(job.id, job.token, JobState.PENDING)
            if ctx.stop_reason == "cancel":
                return self._cancelled(job)
            task_now = asyncio.current_task()
            if task_now is not None and task_now.cancelling():
                raise  # cancelled by someone else than the worker: theirs to handle
            # The handler raised it itself (or a sync one, concurrent.futures'): a failure
            # like any other, not a cancellation nobody asked for.
            return self._failure(job, describe(exc), traceback.format_exc(), False)
        except TimeoutError as exc:
            if timer.expired():
                return self._failure(job, f"timed out after {job.timeout}s", None, False)
            return self._failure(job, describe(exc), traceback.format_exc(), False)
        except ChildError as exc:
            return self._failure(job, str(exc), exc.child_traceback or None, False)
        except JobCancelledError:
            return self._cancelled(job)
        except Exception as exc:
            return self._failure(
                job, describe(exc), traceback.format_exc(), isinstance(exc, PERMANENT)
            )
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt or another BaseException raised by the handler
            # (a real Ctrl-C or SIGTERM reaches stop(), not a handler): it fails this
            # attempt only. Let through, it would leave the job running forever, or stop
            # the whole worker without grace. os._exit stays a crash, which leases cover.
            return self._failure(job, describe(exc), traceback.format_exc(), False)

    async def _invoke(
        self,
        task: Task[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
        started: Callable[[], None],
    ) -> Any:
        """Run the handler; `started` is called as it starts."""
        if task.executor == "process":
            if self._pool is None:
                self._pool = ProcessPool(self._processes)
            return await self._pool.run(task.fn, args, kwargs, started)
        if task.is_async:
            started()
            return await task.fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()

        def call() -> Any:
            # The loop may be closed by now (a call left queued at shutdown).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(started)
            return context.run(task.fn, *args, **kwargs)

        future = self._threads.submit(call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # Timed out, cancelled or stopped: a call still running keeps its thread until
            # it returns, and the pool replaces that thread meanwhile.
            self._threads.abandon(future)
            raise

    def _cancelled(self, job: Job) -> Outcome:
        assert job.token is not None
        error = AttemptError(
            job.attempts, "cancelled while running", None, self.id, self.app.clock()
        )
        return Outcome(job.id, job.token, JobState.CANCELLED, error=error)

    def _failure(self, job: Job, message: str, tb: str | None, permanent: bool) -> Outcome:
        assert job.token is not None
        now = self.app.clock()
        error = AttemptError(job.attempts, message, tb, self.id, now)
        log.warning("job %s (%s) attempt %d failed: %s", job.id, job.task, job.attempts, message)
        if permanent or job.attempts > job.max_retries:
            return Outcome(job.id, job.token, JobState.DEAD, error=error)
        run_at = now + job.retry.backoff(job.attempts)
        return Outcome(job.id, job.token, JobState.RETRYING, error=error, run_at=run_at)

    # -- background loops ---------------------------------------------------------------

    async def _every(
        self, interval: float, step: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step(*args)
            except Exception:
                log.exception("%s failed; will retry", getattr(step, "__name__", step))

    async def _upkeep(self, backend: Backend) -> None:
        """The backend's upkeep, unless a scheduler leads (it does it then); and the
        queues' stored weights."""
        if await backend.get_lease(LEADER) is None:
            await backend.maintain()
        stored = await backend.queue_settings()
        self.weights = {
            name: stored.get(name, {}).get("weight", given)
            for name, given in self._given_weights.items()
        }

    async def _heartbeat(self, backend: Backend) -> None:
        self.info.running = len(self._running)
        progress = dict(self._progress)
        stop = await backend.heartbeat(self.info, dict(self._held), self.settings.lease, progress)
        for job_id in stop:
            entry = self._running.get(job_id)
            if entry is not None:
                self._interrupt(entry[1], "cancel")
            elif job_id in self._ready:
                job = self._ready.pop(job_id)
                self._recorder.add(self._cancelled(job), job.attempts)


def _arm(timer: asyncio.Timeout, job: Job) -> None:
    """Start the job's timeout, if it has one, from now."""
    # Suppressed: the handler of a job cancelled as its thread took the call may start
    # after the timer's block has ended.
    if job.timeout is not None:
        with contextlib.suppress(RuntimeError):
            timer.reschedule(asyncio.get_running_loop().time() + job.timeout)
