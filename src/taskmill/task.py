"""Tasks and jobs as their producers see them: a registered function (Task), the same with
options fixed (BoundTask), the options its jobs take (JobOptions), and a reference to an
enqueued job (JobHandle)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from taskmill.backends import Clock
from taskmill.errors import InvalidArgumentsError
from taskmill.job import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_RESULT_TTL,
    Job,
    JobState,
    new_id,
)
from taskmill.retry import RetryPolicy, retry_policy

if TYPE_CHECKING:
    from taskmill.app import App

P = ParamSpec("P")
R = TypeVar("R")
Executor = Literal["auto", "thread", "process"]


@dataclass(frozen=True, slots=True)
class JobOptions:
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
    def of(cls, opts: Mapping[str, Any]) -> JobOptions:
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
            scheduled_at=scheduled_at,
            expires_at=expires_at,
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


def task_name(fn: Callable[..., Any]) -> str:
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
        self._job_options = JobOptions.of(self.defaults)
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


class PeriodicDecorator(Protocol):
    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class TaskDecorator(Protocol):
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
