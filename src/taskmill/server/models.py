"""The API's request and response bodies: validated on the way in, documented in OpenAPI.

Responses are built as plain dicts by the `*_out` functions (FastAPI then skips a second
validation pass); the models below describe them for /openapi.json, and the schemathesis
test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from taskmill.backends import QueueInfo, WorkerInfo
from taskmill.errors import JobError
from taskmill.job import PRIORITY_MAX, PRIORITY_MIN, Job, JobState, parse_duration

#: Longest duration accepted (ten years): stored times must stay representable.
MAX_SECONDS = 10 * 365 * 86400.0
#: Jobs per batch request.
MAX_BATCH = 1000
#: Timestamps accepted for scheduled_at: the range a datetime can show again.
_LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


def _seconds(value: float | str) -> float:
    try:
        seconds = parse_duration(value)
    except JobError as exc:  # pydantic reports ValueError as a 422; other errors escape
        raise ValueError(str(exc)) from None
    if seconds > MAX_SECONDS:
        raise ValueError(f"at most {MAX_SECONDS:.0f} seconds (ten years)")
    return seconds


def _in_range(value: datetime) -> datetime:
    if not 0 <= value.timestamp() < _LATEST:
        raise ValueError("must be between 1970 and 9999")
    return value


Duration = Annotated[
    Annotated[float, Field(ge=0, le=MAX_SECONDS)]
    | Annotated[str, Field(pattern=r"^ *[0-9]{1,12}(\.[0-9]{1,9})? *(ms|s|m|h|d)? *$")],
    AfterValidator(_seconds),
    Field(description='Seconds, or a string such as "250ms", "30s", "5m", "2h", "1d".'),
]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
PriorityName = Literal["low", "medium", "high", "critical"]
Strategy = Literal["exponential", "linear", "fixed"]
Status = Literal[
    "pending", "scheduled", "running", "succeeded", "retrying", "dead", "cancelled", "expired"
]  # fmt: skip


class _Strict(BaseModel):
    # An unknown field is a mistake worth a 422, not something to ignore silently.
    model_config = ConfigDict(extra="forbid")


class JobIn(_Strict):
    type: str = Field(min_length=1, max_length=255, description="The task's name.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    queue: QueueName | None = None
    priority: Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)] | PriorityName | None = None
    max_retries: Annotated[int, Field(ge=0, le=10_000)] | None = None
    retry_strategy: Strategy | None = None
    retry_delay: Duration | None = None
    max_retry_delay: Duration | None = None
    timeout: Duration | None = None
    scheduled_at: Annotated[AwareDatetime, AfterValidator(_in_range)] | None = Field(
        default=None, description="When to run it (RFC 3339 with an offset)."
    )
    delay: Duration | None = Field(default=None, description="Run no sooner than this.")
    ttl: Duration | None = Field(default=None, description="Expire unrun after this.")
    result_ttl: Duration | None = Field(default=None, description="Keep it this long once done.")
    id: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="The job's id; submitting an id again returns that job."
    )
    metadata: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        """The job options given, as App.make_job takes them."""
        given = self.model_dump(exclude={"type", "payload", "args"}, exclude_none=True)
        if "retry_strategy" in given:
            given["retry"] = given.pop("retry_strategy")
        return given


class BatchIn(_Strict):
    jobs: list[JobIn] = Field(min_length=1, max_length=MAX_BATCH)


class RetryOut(BaseModel):
    strategy: Strategy
    delay: float
    max_delay: float
    jitter: float


class AttemptOut(BaseModel):
    attempt: int
    error: str
    traceback: str | None
    worker: str | None
    at: datetime | None


class JobOut(BaseModel):
    id: str
    type: str
    queue: str
    status: Status
    priority: int
    args: list[Any]
    payload: dict[str, Any]
    max_retries: int
    retry: RetryOut
    timeout: float | None
    result_ttl: float
    expires_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    errors: list[AttemptOut]
    worker: str | None
    result: Any
    progress: float | None
    cancel_requested: bool


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


class QueueSettingsIn(_Strict):
    weight: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Workers listening to several queues pick this one by weight."
    )
    concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None,
        description="The most jobs of this queue running at once, across every worker.",
    )
    max_retries: Annotated[int, Field(ge=0, le=10_000)] | None = None
    retry_strategy: Strategy | None = None
    retry_delay: Duration | None = None
    max_retry_delay: Duration | None = None
    paused: bool | None = None

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude={"paused"}, exclude_none=True)


class QueueIn(QueueSettingsIn):
    name: QueueName


class QueueOut(BaseModel):
    name: str
    paused: bool
    weight: int | None
    concurrency: int | None
    max_retries: int | None
    retry_strategy: Strategy | None
    retry_delay: float | None
    max_retry_delay: float | None
    counts: dict[str, int]
    oldest_pending_age: float | None
    ready_by_priority: dict[str, int] = Field(description="Jobs due now, per priority.")
    throughput_per_minute: int = Field(description="Jobs that ended in the last minute.")


class QueueStatsOut(BaseModel):
    name: str
    paused: bool
    pending: int
    scheduled: int
    running: int
    succeeded: int
    failed: int = Field(description="Jobs whose last attempt failed, waiting for a retry.")
    dead: int
    cancelled: int
    expired: int
    workers: int = Field(description="Live workers that take jobs from this queue.")
    throughput_per_minute: int = Field(description="Jobs that ended in the last minute.")
    oldest_pending_age: float | None = Field(description="Seconds the oldest due job waited.")
    ready_by_priority: dict[str, int]


class StatsOut(BaseModel):
    queues: int
    workers: int
    counts: dict[str, int]
    throughput_per_minute: int
    oldest_pending_age: float | None


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    tasks: list[str]
    started_at: datetime | None
    last_heartbeat: datetime | None


class RequeueIn(_Strict):
    ids: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        default=None, max_length=MAX_BATCH
    )
    queue: QueueName | None = None
    type: str | None = None
    all: bool = Field(default=False, description="Requeue every dead job.")


class PurgeIn(_Strict):
    queue: QueueName | None = None
    type: str | None = None


class Count(BaseModel):
    count: int


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str


# -- records as response bodies ---------------------------------------------------------------


def when(seconds: float | None) -> datetime | None:
    """A stored UNIX time as a UTC datetime (orjson writes it as RFC 3339)."""
    if seconds is None or not 0 <= seconds < _LATEST:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def job_out(job: Job) -> dict[str, Any]:
    record = job.to_dict()
    return {
        "id": job.id,
        "type": job.task,
        "queue": job.queue,
        "status": job.state.value,
        "priority": job.priority,
        "args": record["args"],
        "payload": record["kwargs"],
        "max_retries": job.max_retries,
        "retry": record["retry"],
        "timeout": job.timeout,
        "result_ttl": job.result_ttl,
        "expires_at": when(job.expires_at),
        "metadata": job.metadata,
        "created_at": when(job.created_at),
        "scheduled_at": when(job.run_at),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
        "attempts": job.attempts,
        "errors": [{**e.to_dict(), "at": when(e.at)} for e in job.errors],
        "worker": job.worker,
        "result": job.result,
        "progress": job.progress,
        "cancel_requested": job.cancel_requested,
    }


def _age(oldest: float | None, now: float) -> float | None:
    return None if oldest is None else max(now - oldest, 0.0)


def queue_out(info: QueueInfo, now: float) -> dict[str, Any]:
    settings = info.settings
    return {
        "name": info.name,
        "paused": info.paused,
        **{name: settings.get(name) for name in _SETTINGS},
        "counts": info.counts,
        "oldest_pending_age": _age(info.oldest_pending, now),
        "ready_by_priority": _by_priority(info),
        "throughput_per_minute": info.finished_recently,
    }


def _by_priority(info: QueueInfo) -> dict[str, int]:
    return {str(p): n for p, n in sorted(info.ready_by_priority.items())}


_SETTINGS = (
    "weight", "concurrency", "max_retries", "retry_strategy", "retry_delay", "max_retry_delay"
)  # fmt: skip


def queue_stats_out(info: QueueInfo, workers: list[WorkerInfo], now: float) -> dict[str, Any]:
    counts = info.counts
    return {
        "name": info.name,
        "paused": info.paused,
        **{state: counts[state] for state in ("pending", "scheduled", "running", "succeeded")},
        "failed": counts[JobState.RETRYING.value],
        **{state: counts[state] for state in ("dead", "cancelled", "expired")},
        "workers": sum(info.name in w.queues for w in workers),
        "throughput_per_minute": info.finished_recently,
        "oldest_pending_age": _age(info.oldest_pending, now),
        "ready_by_priority": _by_priority(info),
    }


def stats_out(infos: list[QueueInfo], workers: list[WorkerInfo], now: float) -> dict[str, Any]:
    oldest = [i.oldest_pending for i in infos if i.oldest_pending is not None]
    return {
        "queues": len(infos),
        "workers": len(workers),
        "counts": {s.value: sum(i.counts[s.value] for i in infos) for s in JobState},
        "throughput_per_minute": sum(i.finished_recently for i in infos),
        "oldest_pending_age": _age(min(oldest, default=None), now),
    }


def worker_out(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "queues": info.queues,
        "concurrency": info.concurrency,
        "running": info.running,
        "tasks": info.tasks,
        "started_at": when(info.started_at),
        "last_heartbeat": when(info.last_seen),
    }
