"""The application object: task registry, enqueue from sync or async code, job handles."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)
from urllib.parse import urlsplit

from taskmill.backends import Backend, connect, connect_blocking
from taskmill.backends.base import Clock
from taskmill.errors import (
    BackendError,
    ConfigError,
    InvalidArgumentsError,
    JobError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    UnknownTaskError,
)
from taskmill.job import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_RESULT_TTL,
    Job,
    JobState,
    check_queue_name,
    encode_payload,
    new_id,
    parse_duration,
    parse_priority,
)
from taskmill.retry import RetryPolicy, retry_policy
from taskmill.schedule import Schedules
from taskmill.settings import Settings

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

    from taskmill.backends.postgres import ThreadEnqueuer

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Executor = Literal["auto", "thread", "process"]

#: Every option a task sets as its default and a job may override.
OPTION_NAMES = frozenset(
    {
        "queue", "priority", "max_retries", "retry", "retry_delay", "max_retry_delay", "jitter",
        "timeout", "result_ttl", "delay", "scheduled_at", "ttl", "expires_at", "id", "metadata",
    }
)  # fmt: skip
#: Jobs per backend round trip in enqueue_many.
BATCH = 1000
POSTGRES = ("postgresql", "postgres")


def _timestamp(value: datetime | float | int) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise JobError("datetimes must be timezone-aware")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobError(f"expected a datetime or UNIX seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class _JobOptions:
    """Job options as a job takes them: defaults filled in, the retry policy built, absolute
    times parsed. A task resolves its defaults once, so that each of its jobs costs only
    its arguments (bulk enqueues build tens of thousands)."""

    queue: str
    priority: int
    max_retries: int
    retry: RetryPolicy
    timeout: float | None
    result_ttl: float
    metadata: dict[str, Any] | None
    id: str | None
    scheduled_at: float | None
    expires_at: float | None
    #: Relative to each job's making; None when an absolute time above takes precedence.
    delay: float | None
    ttl: float | None

    @classmethod
    def of(cls, opts: Mapping[str, Any]) -> _JobOptions:
        """From options built by App._build_options."""
        scheduled_at, expires_at = opts.get("scheduled_at"), opts.get("expires_at")
        return cls(
            queue=opts.get("queue", DEFAULT_QUEUE),
            priority=opts.get("priority", DEFAULT_PRIORITY),
            max_retries=opts.get("max_retries", DEFAULT_MAX_RETRIES),
            retry=retry_policy(
                opts.get("retry", "exponential"),
                opts.get("retry_delay", 1.0),
                opts.get("max_retry_delay", 3600.0),
                opts.get("jitter", 0.1),
            ),
            timeout=opts.get("timeout"),
            result_ttl=opts.get("result_ttl", DEFAULT_RESULT_TTL),
            metadata=opts.get("metadata") or None,
            id=opts.get("id") or None,
            scheduled_at=None if scheduled_at is None else _timestamp(scheduled_at),
            expires_at=None if expires_at is None else _timestamp(expires_at),
            delay=(opts.get("delay") or None) if scheduled_at is None else None,
            ttl=opts.get("ttl") if expires_at is None else None,
        )

    def job(self, task: str, payload: bytes, clock: Clock) -> Job:
        run_at, expires_at = self.scheduled_at, self.expires_at
        if self.delay is not None or self.ttl is not None:
            now = clock()
            if self.delay is not None:
                run_at = now + self.delay
            if self.ttl is not None:
                expires_at = now + self.ttl
        # Positional, in Job's field order: half the cost of keywords, and bulk enqueues
        # build tens of thousands. A run_at of 0 is "when stored" to every backend: a job
        # with no time of its own runs from its enqueue rather than from when it was built.
        return Job(
            task, payload, self.id or new_id(), self.queue, self.priority, JobState.PENDING,
            self.max_retries, self.retry, self.timeout, self.result_ttl, expires_at,
            {} if self.metadata is None else dict(self.metadata), 0.0, run_at or 0.0,
        )  # fmt: skip


class _Portal:
    """An event loop in a daemon thread, so sync callers can use the async backends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="taskmill-portal", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("taskmill's sync API was called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


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
        self._portal: _Portal | None = None
        self._blocker: Backend | None = None
        self._blocker_known = False
        self._enqueuer: ThreadEnqueuer | None = None
        self._sync_lock = threading.Lock()
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
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        executor: Executor = "auto",
        **options: Any,
    ) -> Task[Any, Any] | _TaskDecorator:
        """Register a sync or async function as a task; options are the jobs' defaults.

        executor: "auto" runs async functions on the event loop and sync ones in a thread
        pool; "process" runs them in a process pool where a timeout or cancel kills them.
        """

        defaults = self._build_options(options)  # fail at definition, not at first enqueue

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(self, fn, name or _task_name(fn), executor, defaults)
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
    ) -> _PeriodicDecorator:
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

    def connect(self) -> None:
        """Connect the sync API now (say at start-up), so that a backend that is down fails
        here and the first enqueue does not pay for connecting."""
        self._blocking_backend()
        self.run(self.backend())  # enqueue_many and result() use it
        self._thread_enqueuer()

    def close(self) -> None:
        """Close the backend used by the sync API and stop its thread."""
        with self._sync_lock:
            portal, self._portal = self._portal, None
            blocker, self._blocker, self._blocker_known = self._blocker, None, False
            enqueuer, self._enqueuer = self._enqueuer, None
        if blocker is not None:
            _drive(blocker.close())
        if enqueuer is not None:
            enqueuer.close()
        if portal is not None:
            asyncio.run_coroutine_threadsafe(self.aclose(), portal.loop).result()
            portal.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of this app's async API from sync code."""
        with self._sync_lock:
            if self._portal is None:
                self._portal = _Portal()
                # Closed at exit while its loop still runs: left to the garbage collector,
                # a backend's connections would be closed with no loop to do it on.
                atexit.register(_close_at_exit, weakref.ref(self))
            portal = self._portal
        return portal.run(coro)

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
        for key in ("timeout", "delay", "ttl", "result_ttl", "retry_delay", "max_retry_delay"):
            if out.get(key) is not None:
                out[key] = parse_duration(out[key])
        retries = out.get("max_retries")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                    or retries < 0):  # fmt: skip
            raise JobError(f"max_retries must be an integer >= 0, got {retries!r}")
        if "metadata" in out and not isinstance(out["metadata"], dict):
            raise JobError("metadata must be an object")
        if "id" in out and (not isinstance(out["id"], str) or not 0 < len(out["id"]) <= 255):
            raise JobError("id must be a string of 1-255 characters")
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
        if not isinstance(task, str) or not task:
            raise JobError("task name must be a non-empty string")
        known = self.tasks.get(task)
        if known is None and (self.strict if strict is None else strict):
            raise UnknownTaskError(task, list(self.tasks))
        args, kwargs = list(args), dict(kwargs or {})
        if known is None:
            opts = _JobOptions.of(self._build_options(options))
        else:
            opts = (
                _JobOptions.of(self._build_options({**known.defaults, **options}))
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
        connection: AsyncConnection[Any] | None = None,
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
        connection: AsyncConnection[Any] | None = None,
    ) -> list[JobHandle[Any]]:
        """Enqueue many jobs, one backend round trip per batch of BATCH.

        Each item is a Job (from `task.prepare(...)` or `make_job`) or a mapping with
        "task", optional "args", "kwargs" and any job option. All are validated first: one
        bad item raises before anything is stored.

        connection: a psycopg AsyncConnection to the app's PostgreSQL database. The jobs
        are stored on it, inside its current transaction: they exist (and wake workers)
        only if that transaction commits."""
        records = [item if isinstance(item, Job) else self._job_from_mapping(item) for item in jobs]
        if connection is not None:
            self._check_postgres()
            from taskmill.backends.postgres_sql import enqueue_on

            stored: list[Job] = []
            with _caller_errors():
                for i in range(0, len(records), BATCH):
                    stored += await enqueue_on(connection, records[i : i + BATCH], self.clock())
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

    def _check_postgres(self) -> None:
        """Jobs enqueued on a caller's connection go to PostgreSQL: so must the app's."""
        if urlsplit(self.settings.url).scheme not in POSTGRES:
            raise ConfigError(
                "connection= enqueues on a PostgreSQL connection, but this app's backend is "
                f"{urlsplit(self.settings.url).scheme}://, where its workers would never see "
                "the jobs"
            )

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

    def _blocking_backend(self) -> Backend | None:
        if not self._blocker_known:
            with self._sync_lock:
                if not self._blocker_known:
                    blocker = connect_blocking(self.settings.url, clock=self.clock)
                    if blocker is not None:
                        _drive(blocker.open())
                    self._blocker, self._blocker_known = blocker, True
        return self._blocker

    def _thread_enqueuer(self) -> ThreadEnqueuer | None:
        """On PostgreSQL, what stores the sync API's single jobs in the calling thread."""
        if self._enqueuer is None and urlsplit(self.settings.url).scheme in POSTGRES:
            self.run(self.backend())  # the schema first
            from taskmill.backends.postgres import ThreadEnqueuer

            with self._sync_lock:
                if self._enqueuer is None:
                    self._enqueuer = ThreadEnqueuer(self.settings.url)
        return self._enqueuer

    def _sync(self, call: Callable[[Backend], Coroutine[Any, Any, T]]) -> T:
        """Run one backend call from sync code: in this thread when the backend can block
        (see backends.connect_blocking), else on the app's event loop thread."""
        blocker = self._blocking_backend()
        if blocker is not None:
            return _drive(call(blocker))

        async def on_loop() -> T:
            return await call(await self.backend())

        return self.run(on_loop())

    def enqueue(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: Connection[Any] | None = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """Enqueue one job. connection: see enqueue_many."""
        job = self.make_job(task, args, kwargs, **options)
        if connection is not None:
            (handle,) = self.enqueue_many([job], connection=connection)
            return handle
        enqueuer = self._thread_enqueuer()
        if enqueuer is not None:
            (stored,) = enqueuer.enqueue([job], self.clock())
        else:
            (stored,) = self._sync(lambda backend: backend.enqueue([job]))
        return JobHandle(self, stored)

    def enqueue_many(
        self,
        jobs: Iterable[Job | Mapping[str, Any]],
        *,
        connection: Connection[Any] | None = None,
    ) -> list[JobHandle[Any]]:
        """aenqueue_many from sync code. connection: a psycopg (sync) Connection to the
        app's PostgreSQL database; the jobs are stored on it, in the caller's thread, inside
        its current transaction: they exist only if that transaction commits."""
        if connection is None:
            return self.run(self.aenqueue_many(jobs))
        records = [item if isinstance(item, Job) else self._job_from_mapping(item) for item in jobs]
        self._check_postgres()
        from taskmill.backends.postgres_sql import enqueue_on_sync

        stored: list[Job] = []
        with _caller_errors():
            for i in range(0, len(records), BATCH):
                stored += enqueue_on_sync(connection, records[i : i + BATCH], self.clock())
        return [JobHandle(self, job) for job in stored]

    def get(self, job_id: str) -> Job:
        return _found(job_id, self._sync(lambda backend: backend.get(job_id)))

    def cancel(self, job_id: str) -> Job:
        return _found(job_id, self._sync(lambda backend: backend.cancel(job_id)))

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


def _close_at_exit(app: weakref.ref[App]) -> None:
    alive = app()
    if alive is not None:
        alive.close()


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run to its end, in this thread, a coroutine that never suspends (a blocking
    backend's: its I/O blocks instead)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a blocking backend's coroutine suspended")


@contextlib.contextmanager
def _caller_errors() -> Iterator[None]:
    """The driver's errors on a caller's connection, as BackendError."""
    import psycopg  # only enqueues on a caller's (psycopg) connection come here

    try:
        yield
    except psycopg.Error as exc:
        hint = "; run `taskmill migrate`" if isinstance(exc, psycopg.errors.UndefinedTable) else ""
        raise BackendError(f"enqueue on the given connection failed: {exc}{hint}") from exc


def _task_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}" if fn.__module__ != "__main__" else fn.__name__


class Task(Generic[P, R]):
    """A registered function. Calling it runs it here; `enqueue` sends it to a worker."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        executor: Executor,
        defaults: Mapping[str, Any],
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.executor = executor
        self.defaults = dict(defaults)
        # The defaults as its jobs take them, worked out once (a bad retry policy fails here).
        self._job_options = _JobOptions.of(self.defaults)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        params = self.signature.parameters.values()
        plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        required = sum(p.default is inspect.Parameter.empty for p in params)
        #: (required, total) positional parameters, when every parameter is a plain one.
        self._arity = (required, len(params)) if plain else None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R] | R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        # Most calls are positional into plain parameters: count them, skip bind() (hot path).
        if not kwargs and self._arity and self._arity[0] <= len(args) <= self._arity[1]:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentsError(f"arguments do not fit task {self.name!r}: {exc}") from None

    def options(self, **options: Any) -> BoundTask[P, R]:
        """This task with per-job options: `task.options(delay=5, priority="high").enqueue(...)`."""
        return BoundTask(self, self.app._build_options(options))

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """The job record for `enqueue_many`, validated but not stored."""
        return self.app.make_job(self.name, args, kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        return self.app.enqueue(self.name, args, kwargs)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        return await self.app.aenqueue(self.name, args, kwargs)


class BoundTask(Generic[P, R]):
    """A task with options fixed for the jobs it enqueues."""

    def __init__(self, task: Task[P, R], options: dict[str, Any]) -> None:
        self.task = task
        self.opts = options

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return self.task.app.make_job(self.task.name, args, kwargs, **self.opts)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        return self.task.app.enqueue(self.task.name, args, kwargs, **self.opts)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        return await self.task.app.aenqueue(self.task.name, args, kwargs, **self.opts)


class _PeriodicDecorator(Protocol):
    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class JobHandle(Generic[R]):
    """A reference to an enqueued job. Sync methods block; `a*` methods are awaitable."""

    def __init__(self, app: App, job: Job) -> None:
        self.app = app
        self.id = job.id
        #: The record as last read.
        self.job = job

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.job.task} {self.job.state.value}>"

    async def arefresh(self) -> Job:
        self.job = await self.app.aget(self.id)
        return self.job

    def refresh(self) -> Job:
        self.job = self.app.get(self.id)
        return self.job

    @property
    def status(self) -> JobState:
        """The job's current state, read from the backend."""
        return self.refresh().state

    async def astatus(self) -> JobState:
        return (await self.arefresh()).state

    async def aresult(self, timeout: float | None = None) -> R:
        result: R = await self.app.aresult(self.id, timeout)
        return result

    def result(self, timeout: float | None = None) -> R:
        return self.app.run(self.aresult(timeout))

    async def acancel(self) -> Job:
        self.job = await self.app.acancel(self.id)
        return self.job

    def cancel(self) -> Job:
        self.job = self.app.cancel(self.id)
        return self.job
