"""The application object: the task registry, and jobs enqueued and read from sync or async
code. Tasks and job handles are in taskmill.task; how a sync call reaches the backend, in
taskmill.sync."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from taskmill.backends import Backend, Clock, connect, connect_blocking
from taskmill.errors import (
    JobError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    UnknownTaskError,
)
from taskmill.job import (
    Job,
    JobState,
    check_id,
    check_max_retries,
    check_metadata,
    check_queue_name,
    check_retry,
    check_task_name,
    check_timeout,
    encode_payload,
    parse_option_duration,
    parse_priority,
    parse_time,
)
from taskmill.schedule import Schedules
from taskmill.settings import Settings
from taskmill.sync import SyncAdapter
from taskmill.task import (
    BoundTask,
    Executor,
    JobHandle,
    JobOptions,
    PeriodicDecorator,
    Task,
    TaskDecorator,
    task_name,
)

__all__ = ["BATCH", "OPTION_NAMES", "App", "BoundTask", "JobHandle", "Task", "settled_result"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Every option a task sets as its default and a job may override.
OPTION_NAMES = frozenset(
    {
        "queue", "priority", "max_retries", "retry", "retry_delay", "max_retry_delay", "jitter",
        "timeout", "result_ttl", "delay", "scheduled_at", "ttl", "expires_at", "id", "metadata",
    }
)  # fmt: skip
#: Jobs per backend round trip in enqueue_many.
BATCH = 1000


class App:
    """Owns the task registry and the backend. `App()` reads TASKMILL_URL (default SQLite).

    strict: refuse to enqueue a task name this app does not know (a producer that only
    knows names, such as the CLI without --app, sets it False).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock = time.time,
        strict: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env(url=url)
        self.clock = clock
        self.strict = strict
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._backends: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Future[Backend]
        ] = weakref.WeakKeyDictionary()
        self._unopened: Backend | None = None
        self._sync = SyncAdapter(
            self.backend,
            self.aclose,
            lambda: connect_blocking(self.settings.url, clock=self.clock),
        )
        #: Schedules at run time (stored in the backend) and those declared with periodic().
        self.schedules = Schedules(self)

    # -- registry -------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, /, *, name: str | None = None, executor: Executor = "auto", **options: Any
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        executor: Executor = "auto",
        **options: Any,
    ) -> Task[Any, Any] | TaskDecorator:
        """Register a sync or async function as a task; options are the jobs' defaults.

        executor: "auto" runs async functions on the event loop and sync ones in a thread
        pool; "process" runs them in a process pool where a timeout or cancel kills them.
        """

        defaults = self._build_options(options)  # fail at definition, not at first enqueue

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            registered = check_task_name(name or task_name(fn))
            task: Task[Any, Any] = Task(self, fn, registered, executor, defaults)
            if task.name in self.tasks:
                raise JobError(f"task {task.name!r} is registered twice")
            self.tasks[task.name] = task
            return task

        return register if fn is None else register(fn)

    def periodic(
        self,
        cron: str,
        /,
        *,
        name: str | None = None,
        tz: str = "UTC",
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        catch_up: float | str = 0.0,
        jitter: float | str = 0.0,
        **options: Any,
    ) -> PeriodicDecorator:
        """Enqueue a task at every tick of `cron` (5 fields, or 6 with seconds first, or
        @hourly, @daily, ...) in the time zone `tz`; see taskmill.cron.

        Decorates a function (registered as a task) or a task. name defaults to the task's;
        options are the jobs' (queue, priority, max_retries, timeout, ...). The schedule is
        stored by each scheduler when it starts; `taskmill schedules` manages it after.
        catch_up: ticks missed while no scheduler ran are fired if at most this old.
        jitter: each job runs a random 0 to `jitter` seconds after its tick.
        """

        def declare(fn: Callable[..., Any]) -> Task[Any, Any]:
            task = fn if isinstance(fn, Task) else self.task(fn)
            try:
                self.schedules.declare(
                    self.schedules.build(
                        name or task.name, task.name, cron, tz=tz, args=args, kwargs=kwargs,
                        catch_up=catch_up, jitter=jitter, source="code", options=options,
                    )
                )  # fmt: skip
            except BaseException:
                if task is not fn:  # registered here: a refused declaration leaves no task
                    del self.tasks[task.name]
                raise
            return task

        return declare

    # -- backend per event loop --------------------------------------------------------

    async def backend(self) -> Backend:
        """The backend for the running event loop, opened on first use."""
        loop = asyncio.get_running_loop()
        future = self._backends.get(loop)
        if future is None:
            future = loop.create_future()
            self._backends[loop] = future
            backend = connect(self.settings.url, clock=self.clock)
            try:
                await backend.open()
            except BaseException as exc:
                del self._backends[loop]
                future.set_exception(exc)
                future.exception()  # mark retrieved: the caller sees exc raised below
                raise
            future.set_result(backend)
        if future.done():  # the common case: no shield, no suspension
            return future.result()
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        """Close the running loop's backend."""
        future = self._backends.pop(asyncio.get_running_loop(), None)
        if future is not None and future.done() and not future.exception():
            await future.result().close()

    def unopened_backend(self) -> Backend:
        """A backend of this app's kind that is never opened: for the hooks that need none
        of its own connections (Backend.enqueue_on, migrate)."""
        if self._unopened is None:
            self._unopened = connect(self.settings.url, clock=self.clock)
        return self._unopened

    def connect(self) -> None:
        """Connect the sync API now (say at start-up), so that a backend that is down fails
        here and the first enqueue does not pay for connecting."""
        self._sync.connect()

    def close(self) -> None:
        """Close the backends used by the sync API and stop its thread."""
        self._sync.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of this app's async API from sync code."""
        return self._sync.run(coro)

    # -- building jobs -----------------------------------------------------------------

    def _build_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options validated and normalized (durations in seconds, priority as int)."""
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise JobError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        out = dict(options)
        if "queue" in out:
            check_queue_name(out["queue"])
        if "priority" in out:
            out["priority"] = parse_priority(out["priority"])
        if out.get("timeout") is not None:
            out["timeout"] = check_timeout(out["timeout"])
        for key in ("delay", "ttl", "result_ttl", "retry_delay", "max_retry_delay"):
            if out.get(key) is not None:
                out[key] = parse_option_duration(key, out[key])
        for key in ("scheduled_at", "expires_at"):
            if out.get(key) is not None:
                out[key] = parse_time(key, out[key])
        if out.get("max_retries") is not None:
            check_max_retries(out["max_retries"])
        check_retry(out.get("retry"), out.get("jitter"))
        if "metadata" in out:
            check_metadata(out["metadata"])
        if "id" in out:
            check_id(out["id"])
        return out

    def make_job(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        strict: bool | None = None,
        **options: Any,
    ) -> Job:
        """A validated job record, not stored yet; raises a JobError subclass on bad input.

        strict: refuse a task this app does not know [the app's `strict`]."""
        known = self.tasks.get(task) if isinstance(task, str) else None
        if known is None:  # a registered name was checked when it was registered
            check_task_name(task)
            if self.strict if strict is None else strict:
                raise UnknownTaskError(task, list(self.tasks))
        args, kwargs = list(args), dict(kwargs or {})
        if known is None:
            opts = JobOptions.of(self._build_options(options))
        else:
            opts = (
                JobOptions.of(self._build_options({**known.defaults, **options}))
                if options
                else known._job_options
            )
            known.check_arguments(args, kwargs)
        payload = encode_payload(args, kwargs, self.settings.max_payload)
        return opts.job(task, payload, self.clock)

    # -- async API ----------------------------------------------------------------------

    async def aenqueue(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: object = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """Enqueue one job. connection: see aenqueue_many."""
        (handle,) = await self.aenqueue_many(
            [self.make_job(task, args, kwargs, **options)], connection=connection
        )
        return handle

    async def aenqueue_many(
        self,
        jobs: Iterable[Job | Mapping[str, Any]],
        *,
        connection: object = None,
    ) -> list[JobHandle[Any]]:
        """Enqueue many jobs, one backend round trip per batch of BATCH.

        Each item is a Job (from `task.prepare(...)` or `make_job`) or a mapping with
        "task", optional "args", "kwargs" and any job option. All are validated first: one
        bad item raises before anything is stored.

        connection: a psycopg AsyncConnection to the app's PostgreSQL database. The jobs
        are stored on it, inside its current transaction: they exist (and wake workers)
        only if that transaction commits (Backend.enqueue_on)."""
        records = [item if isinstance(item, Job) else self._job_from_mapping(item) for item in jobs]
        if connection is not None:
            unopened, stored = self.unopened_backend(), []
            for i in range(0, len(records), BATCH):
                stored += await unopened.enqueue_on(connection, records[i : i + BATCH])
            return [JobHandle(self, job) for job in stored]
        backend = await self.backend()

        async def store(batch: list[Job]) -> list[JobHandle[Any]]:
            return [JobHandle(self, job) for job in await backend.enqueue(batch)]

        # Batches go out together: while the backend stores one, the next is being encoded,
        # and the handles of one are made while it stores the next.
        batches = await asyncio.gather(
            *(store(records[i : i + BATCH]) for i in range(0, len(records), BATCH))
        )
        return [handle for batch in batches for handle in batch]

    def _job_from_mapping(self, item: Mapping[str, Any]) -> Job:
        if not isinstance(item, Mapping) or "task" not in item:
            raise JobError("each job must be a Job or a mapping with a 'task' key")
        options = {k: v for k, v in item.items() if k not in ("task", "args", "kwargs")}
        return self.make_job(item["task"], item.get("args", ()), item.get("kwargs"), **options)

    async def aget(self, job_id: str) -> Job:
        return _found(job_id, await (await self.backend()).get(job_id))

    async def acancel(self, job_id: str) -> Job:
        return _found(job_id, await (await self.backend()).cancel(job_id))

    async def aretry(self, job_id: str) -> Job:
        """Run a dead job again from a first attempt (its past errors are kept)."""
        backend = await self.backend()
        job = await self.aget(job_id)
        if job.state is not JobState.DEAD or not await backend.requeue(ids=[job_id]):
            message = f"job {job_id} is {job.state.value}: only dead jobs are retried"
            raise JobStateError(message, job.state.value)
        return await self.aget(job_id)

    async def adelete(self, job_id: str) -> None:
        """Remove a job that is not running (cancel a running one first)."""
        if not await (await self.backend()).delete(job_id):
            job = await self.aget(job_id)  # raises if there is none
            raise JobStateError(f"job {job_id} is running: cancel it first", job.state.value)

    async def aresult(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's result once it succeeded; raises JobFailedError if it ended otherwise,
        JobTimeoutError if it is not finished within `timeout` seconds."""
        job = await (await self.backend()).wait_finished(job_id, timeout)
        return settled_result(job_id, job, timeout)

    # -- sync API -----------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: object = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """Enqueue one job. connection: see enqueue_many."""
        job = self.make_job(task, args, kwargs, **options)
        if connection is not None:
            (handle,) = self.enqueue_many([job], connection=connection)
            return handle
        (stored,) = self._sync.call(lambda backend: backend.enqueue([job]))
        return JobHandle(self, stored)

    def enqueue_many(
        self,
        jobs: Iterable[Job | Mapping[str, Any]],
        *,
        connection: object = None,
    ) -> list[JobHandle[Any]]:
        """aenqueue_many from sync code. connection: a psycopg (sync) Connection to the
        app's PostgreSQL database; the jobs are stored on it, in the caller's thread, inside
        its current transaction: they exist only if that transaction commits."""
        if connection is None:
            return self.run(self.aenqueue_many(jobs))
        records = [item if isinstance(item, Job) else self._job_from_mapping(item) for item in jobs]
        unopened, stored = self.unopened_backend(), []
        for i in range(0, len(records), BATCH):
            stored += unopened.enqueue_on_sync(connection, records[i : i + BATCH])
        return [JobHandle(self, job) for job in stored]

    def get(self, job_id: str) -> Job:
        return _found(job_id, self._sync.call(lambda backend: backend.get(job_id)))

    def cancel(self, job_id: str) -> Job:
        return _found(job_id, self._sync.call(lambda backend: backend.cancel(job_id)))

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        return self.run(self.aresult(job_id, timeout))


def settled_result(job_id: str, job: Job | None, timeout: float | None) -> Any:
    """The result of a job waited for up to `timeout` seconds, given its last record; raises
    as App.aresult documents."""
    job = _found(job_id, job)
    if job.state == JobState.SUCCEEDED:
        return job.result
    if not job.state.finished:
        raise JobTimeoutError(f"job {job_id} is still {job.state.value} after {timeout}s")
    raise JobFailedError(job.id, job.state.value, job.error)


def _found(job_id: str, job: Job | None) -> Job:
    if job is None:
        raise JobNotFoundError(f"no job {job_id!r}")
    return job
