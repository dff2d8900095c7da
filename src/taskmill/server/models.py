"""The API's request and response bodies: validated on the way in, documented in OpenAPI.

Responses are built as plain dicts by the `*_out` functions (FastAPI then skips a second
validation pass); the models below describe them for /openapi.json, and the schemathesis
test checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)

from taskmill.backends import QueueInfo, WorkerInfo
from taskmill.errors import JobError
from taskmill.job import (
    LATEST_TIME,
    MAX_DURATION,
    MAX_ID,
    MAX_RETRIES,
    MAX_TASK_NAME,
    NAME_PATTERN,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_PATTERN,
    Job,
    JobState,
    check_id,
    check_json,
    check_max_retries,
    check_metadata,
    check_queue_name,
    check_task_name,
    check_timeout,
    parse_option_duration,
    parse_time,
)

#: Jobs per batch request.
MAX_BATCH = 1000

T = TypeVar("T")
V = TypeVar("V")


def _rule(check: Callable[[T], V]) -> AfterValidator:
    """taskmill's own check of a field (taskmill.job), run by pydantic: the API refuses what
    the Python API and the CLI refuse, in the same words, as a 422 naming the field. The
    field takes the value the check returns (seconds from "5m")."""

    def validate(value: T) -> V:
        try:
            return check(value)
        except JobError as exc:  # pydantic reports ValueError as a 422; other errors escape
            raise ValueError(str(exc)) from None

    return AfterValidator(validate)


def _duration(value: float | str, info: ValidationInfo) -> float:
    """parse_option_duration, named after the field (delay, ttl, catch_up, ...)."""
    try:
        return parse_option_duration(info.field_name or "duration", value)
    except JobError as exc:
        raise ValueError(str(exc)) from None


def _json(field: str) -> AfterValidator:
    def check(value: T) -> T:
        check_json(field, value)
        return value

    return _rule(check)


def _in_range(value: datetime) -> datetime:
    parse_time("scheduled_at", value)
    return value


When = Annotated[AwareDatetime, _rule(_in_range)]


# The checks are taskmill.job's (_rule); WithJsonSchema only documents them for OpenAPI, so
# that a refusal comes in the check's own words, not in pydantic's.
_DURATION_TEXT = r"^ *[0-9]{1,12}(\.[0-9]{1,9})? *(ms|s|m|h|d)? *$"
Duration = Annotated[
    float | str,
    AfterValidator(_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
            {"type": "string", "pattern": _DURATION_TEXT},
        ],
        "description": 'Seconds, or a string such as "250ms", "30s", "5m", "2h", "1d".',
    }),
]  # fmt: skip
Timeout = Annotated[
    float | str,
    _rule(check_timeout),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
            {"type": "string", "pattern": _DURATION_TEXT},
        ],
        "description": 'Seconds (> 0), or a string such as "250ms", "30s", "5m", "2h".',
    }),
]  # fmt: skip
QueueName = Annotated[
    str,
    _rule(check_queue_name),
    WithJsonSchema({"type": "string", "pattern": QUEUE_PATTERN, "description": "Not . or .."}),
]


def _name_schema(limit: int) -> WithJsonSchema:
    return WithJsonSchema({
        "type": "string", "minLength": 1, "maxLength": limit, "pattern": NAME_PATTERN,
        "description": "Printable characters, no '/' (and not . or ..).",
    })  # fmt: skip


TaskName = Annotated[str, _rule(check_task_name), _name_schema(MAX_TASK_NAME)]
JobId = Annotated[str, _rule(check_id), _name_schema(MAX_ID)]
#: Ids and task names that look jobs up: the alphabet, not the whole check (a job stored
#: before it is still found; one no check allows is simply not).
IdFilter = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NAME_PATTERN)]
TaskFilter = Annotated[str, Field(min_length=1, max_length=255, pattern=NAME_PATTERN)]
Retries = Annotated[
    int,
    _rule(check_max_retries),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_RETRIES}),
]
Payload = Annotated[dict[str, Any], _json("payload")]
Args = Annotated[list[Any], _json("args")]
Metadata = Annotated[dict[str, Any], _rule(check_metadata)]
PriorityName = Literal["low", "medium", "high", "critical"]
Strategy = Literal["exponential", "linear", "fixed"]
Status = Literal[
    "pending", "scheduled", "running", "succeeded", "retrying", "dead", "cancelled", "expired"
]  # fmt: skip


class _Strict(BaseModel):
    # An unknown field is a mistake worth a 422, not something to ignore silently.
    model_config = ConfigDict(extra="forbid")


class JobIn(_Strict):
    type: TaskName = Field(description="The task's name: printable characters, no '/'.")
    payload: Payload = Field(default_factory=dict, description="Keyword arguments.")
    args: Args = Field(default_factory=list, description="Positional arguments.")
    queue: QueueName | None = None
    priority: Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)] | PriorityName | None = None
    max_retries: Retries | None = None
    retry_strategy: Strategy | None = None
    retry_delay: Duration | None = None
    max_retry_delay: Duration | None = None
    timeout: Timeout | None = None
    scheduled_at: When | None = Field(
        default=None, description="When to run it (RFC 3339 with an offset)."
    )
    delay: Duration | None = Field(default=None, description="Run no sooner than this.")
    ttl: Duration | None = Field(default=None, description="Expire unrun after this.")
    result_ttl: Duration | None = Field(default=None, description="Keep it this long once done.")
    id: JobId | None = Field(
        default=None, description="The job's id; submitting an id again returns that job."
    )
    metadata: Metadata | None = None

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
    max_retries: Retries | None = None
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
    ids: list[IdFilter] | None = Field(default=None, max_length=MAX_BATCH)
    queue: QueueName | None = None
    type: TaskFilter | None = None
    all: bool = Field(default=False, description="Requeue every dead job.")


class PurgeIn(_Strict):
    queue: QueueName | None = None
    type: TaskFilter | None = None


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
    if seconds is None or not 0 <= seconds < LATEST_TIME:
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
