"""The job record, its states and priorities, and the payload codec. No I/O, no backend."""

from __future__ import annotations

import functools
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from taskmill.errors import JobError, PayloadError
from taskmill.retry import DEFAULT_RETRY, STRATEGIES, RetryPolicy

DEFAULT_QUEUE = "default"
#: Largest encoded payload (args + kwargs) accepted at enqueue, in bytes.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: How long a finished job (and its result) is kept, in seconds.
DEFAULT_RESULT_TTL = 24 * 3600.0
#: Retries after the first attempt.
DEFAULT_MAX_RETRIES = 3

# What a job may hold, checked at the door (App.make_job, which the API, the CLI and the
# schedules go through); the README's table of limits lists the same bounds.
#: Deepest nesting of arrays and objects in an argument or in metadata: orjson writes at
#: most 254 levels, and a listing wraps each job in a few more.
MAX_DEPTH = 64
#: Longest job id and task name, in characters.
MAX_ID = 255
MAX_TASK_NAME = 200
#: Largest encoded metadata, in bytes (it is read with every claim).
MAX_METADATA = 64 * 1024
#: Longest duration (delay, ttl, timeout, retry delays, result_ttl), in seconds: ten years.
MAX_DURATION = 10 * 365 * 86400.0
#: Absolute times (scheduled_at, expires_at) are UNIX seconds in [0, LATEST_TIME): 1970 to
#: the start of 9999, the range a datetime can show again.
LATEST_TIME = 253370764800.0
#: Most retries a job may have: the bound the REST API always had, so that no queue's stored
#: retry default becomes one its submissions are refused for.
MAX_RETRIES = 10_000
#: Queue names are a plain alphabet (they name keys, metric labels and URL paths).
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
#: The alphabet of ids and task names as near as OpenAPI's regex can say it (it has no
#: "printable"): check_name() decides.
NAME_PATTERN = r"^[^\x00-\x1f\x7f/]+$"

_QUEUE_NAME = re.compile(QUEUE_PATTERN)


class JobState(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


#: States in which a job waits for a worker (once its run_at has come).
WAITING_STATES = frozenset({JobState.PENDING, JobState.SCHEDULED, JobState.RETRYING})
FINISHED_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED, JobState.EXPIRED}
)


class Priority(IntEnum):
    """Named priorities. Any integer in [PRIORITY_MIN, PRIORITY_MAX] is valid; higher runs first."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


PRIORITY_MIN = 0
PRIORITY_MAX = 100
DEFAULT_PRIORITY = int(Priority.MEDIUM)


def parse_priority(value: int | str | Priority) -> int:
    if isinstance(value, str):
        if value.lstrip("-").isdigit():
            value = int(value)
        else:
            try:
                return int(Priority[value.upper()])
            except KeyError:
                names = ", ".join(p.name.lower() for p in Priority)
                raise JobError(f"unknown priority {value!r}; use {names} or an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobError(f"priority must be a name or an integer, not {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise JobError(f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {value}")
    return int(value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string such as "250ms", "30", "5m", "2h"."""
    if isinstance(value, bool):
        raise JobError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise JobError(f"invalid duration {value!r}; use seconds or e.g. 250ms, 5m, 2h")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not 0 <= seconds <= MAX_DURATION:  # NaN fails this too
        raise JobError(f"duration must be from 0 to {MAX_DURATION:.0f}s (ten years), got {value!r}")
    return seconds


def parse_option_duration(name: str, value: float | int | str) -> float:
    """parse_duration, with the option's name in the error."""
    try:
        return parse_duration(value)
    except JobError as exc:
        raise JobError(f"{name}: {exc}") from None


def check_timeout(value: float | int | str) -> float:
    seconds = parse_option_duration("timeout", value)
    if seconds <= 0:
        raise JobError(f"timeout: must be > 0 seconds (leave it out for none), got {value!r}")
    return seconds


def check_max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise JobError(f"max_retries: must be an integer from 0 to {MAX_RETRIES}, got {value!r}")
    return value


def check_retry(strategy: Any, jitter: Any) -> None:
    """The retry options that are not durations: a strategy's name, a jitter fraction."""
    if strategy is not None and (not isinstance(strategy, str) or strategy not in STRATEGIES):
        names = ", ".join(STRATEGIES)
        raise JobError(f"retry: the retry strategy must be one of {names}, got {strategy!r:.140}")
    if jitter is not None and (
        isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1
    ):
        raise JobError(f"jitter: must be a fraction from 0 to 1, got {jitter!r:.140}")


def check_time(name: str, seconds: float) -> float:
    """An absolute time in UNIX seconds, within [0, LATEST_TIME)."""
    if not 0 <= seconds < LATEST_TIME:  # NaN fails this too
        raise JobError(f"{name}: must be a time from 1970 to 9999, got {seconds!r}")
    return seconds


def parse_time(name: str, value: datetime | float | int) -> float:
    """UNIX seconds from an aware datetime or a number, within [0, LATEST_TIME)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise JobError(f"{name}: datetimes must be timezone-aware")
        return check_time(name, value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobError(f"{name}: expected a datetime or UNIX seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int past float's range
        raise JobError(f"{name}: must be a time from 1970 to 9999, got {value!r}") from None
    return check_time(name, seconds)


def check_queue_name(name: str) -> str:
    # "." and "..": a URL path (/api/v1/queues/..) cannot name them.
    if not isinstance(name, str) or not _QUEUE_NAME.match(name) or name in (".", ".."):
        raise JobError(
            f"invalid queue name {name!r:.140}: 1-128 of letters, digits, _ . : - (not . or ..)"
        )
    return name


def check_name(field: str, value: Any, limit: int) -> str:
    """An id or a task name: 1 to `limit` printable characters (str.isprintable: no control,
    format, surrogate or unassigned characters, no space but U+0020) and no slash; ids are
    URL path segments, so neither "." nor ".." either."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= limit
        or not value.isprintable()
        or "/" in value
        or value in (".", "..")
    ):
        raise JobError(
            f"{field}: must be 1-{limit} printable characters, no slash; got {value!r:.140}"
        )
    return value


def check_id(value: Any) -> str:
    return check_name("id", value, MAX_ID)


def check_task_name(value: Any) -> str:
    return check_name("task", value, MAX_TASK_NAME)


_PLAIN = frozenset({str, int, bool, type(None)})


def _suspect(data: bytes) -> bool:
    """Whether encoded JSON may hold what check_json refuses: orjson writes a number that is
    not finite as null, and nesting deeper than MAX_DEPTH takes more brackets than that.
    Two scans at C speed spare most values the walk (enqueue is the hot path)."""
    return b"null" in data or data.count(b"[") + data.count(b"{") > MAX_DEPTH


def check_json(field: str, value: Any) -> None:
    """Refuse what JSON would not carry back as given: numbers that are not finite (NaN,
    Infinity, and those that overflow to it such as 1e999, which orjson writes as null),
    and nesting deeper than MAX_DEPTH (stored, it could not be listed)."""
    try:
        if not _suspect(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)):
            return
    except TypeError:
        pass  # not JSON at all (encode says so), or nested past orjson's limit: walk
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) in _PLAIN:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JobError(f"{field}: numbers must be finite, not {item!r}")
        elif isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                raise JobError(f"{field}: nested deeper than {MAX_DEPTH} arrays and objects")
            values = item.values() if isinstance(item, dict) else item
            stack.extend((v, depth + 1) for v in values)


def check_metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise JobError("metadata: must be an object")
    check_json("metadata", value)
    size = len(encode(value))
    if size > MAX_METADATA:
        raise JobError(f"metadata: {size} bytes encoded, over the limit of {MAX_METADATA}")
    return value


#: The random halves of ids to come, as hex: os.urandom costs a system call, so ids draw
#: theirs in blocks. A forked child empties the block, or it would give its parent's ids.
_random_hex: list[str] = []
os.register_at_fork(after_in_child=_random_hex.clear)
#: The millisecond of the last id made, and its hex.
_stamp = (0, "")


def new_id() -> str:
    """32 hex digits: milliseconds since the epoch, then 80 random bits.

    Time-ordered, so that the ids of new jobs land together at the end of an index rather
    than on a random page each (a batch of inserts then writes a few pages, not thousands).
    """
    global _stamp
    try:
        tail = _random_hex.pop()  # atomic: threads never share a value
    except IndexError:
        block = os.urandom(10 * 256).hex()
        _random_hex.extend([block[i : i + 20] for i in range(0, len(block), 20)])
        tail = _random_hex.pop()
    ms, stamp = time.time_ns() // 1_000_000, _stamp
    if ms != stamp[0]:  # a millisecond's hex is written once for all its ids
        stamp = _stamp = (ms, f"{ms:012x}")  # one object: threads read both halves alike
    return stamp[1] + tail


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise PayloadError(f"value is not JSON-serializable: {exc}") from None


def decode(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None


def encode_payload(args: list[Any], kwargs: dict[str, Any], limit: int) -> bytes:
    """The stored form of a job's arguments; raises PayloadError past `limit` bytes, or
    for what check_json refuses."""
    try:
        data = encode({"args": args, "kwargs": kwargs})
    except PayloadError:
        _check_arguments(args, kwargs)  # the clearer reason, if it is one of these
        raise
    if _suspect(data):
        _check_arguments(args, kwargs)
    if len(data) > limit:
        raise PayloadError(f"payload is {len(data)} bytes, over the limit of {limit} bytes")
    return _own_size(data)


def _check_arguments(args: list[Any], kwargs: dict[str, Any]) -> None:
    try:
        check_json("args", args)
        check_json("kwargs", kwargs)
    except JobError as exc:
        raise PayloadError(str(exc)) from None


def _own_size(data: bytes) -> bytes:
    """A copy of its own size: orjson's bytes keep the whole buffer they were written in
    (4 KiB at least), which a job holds until stored; 20,000 prepared jobs would take 80 MB."""
    return b"".join((data, b""))


def decode_payload(data: bytes | str) -> tuple[list[Any], dict[str, Any]]:
    value = decode(data)
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("args", []), list)
        or not isinstance(value.get("kwargs", {}), dict)
    ):
        raise PayloadError("payload must be an object with 'args' (list) and 'kwargs' (object)")
    return value.get("args", []), value.get("kwargs", {})


@dataclass(slots=True)
class AttemptError:
    """Why one attempt failed."""

    attempt: int
    error: str
    traceback: str | None = None
    worker: str | None = None
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "error": self.error,
            "traceback": self.traceback,
            "worker": self.worker,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptError:
        return cls(
            attempt=data["attempt"],
            error=data["error"],
            traceback=data.get("traceback"),
            worker=data.get("worker"),
            at=data.get("at", 0.0),
        )


@dataclass(slots=True)
class Job:
    """One job's whole record. Times are UNIX seconds; `payload` is the encoded arguments.

    `token` changes at every claim: only the worker holding the current token may finish
    the attempt, so a worker whose lease expired cannot overwrite the job afterwards.
    """

    task: str
    payload: bytes = b'{"args":[],"kwargs":{}}'
    id: str = field(default_factory=new_id)
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    state: JobState = JobState.PENDING
    max_retries: int = DEFAULT_MAX_RETRIES
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: float | None = None
    result_ttl: float = DEFAULT_RESULT_TTL
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    run_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    errors: list[AttemptError] = field(default_factory=list)
    worker: str | None = None
    token: str | None = None
    lease_until: float | None = None
    result: Any = None
    progress: float | None = None
    cancel_requested: bool = False

    @property
    def args(self) -> list[Any]:
        return decode_payload(self.payload)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return decode_payload(self.payload)[1]

    @property
    def error(self) -> str | None:
        """The last attempt's error, if any."""
        return self.errors[-1].error if self.errors else None

    def spec(self) -> dict[str, Any]:
        """The options fixed at enqueue, as one JSON-ready object (backends store it whole).
        Defaults are left out: most jobs store `{}`, which keeps records small."""
        spec: dict[str, Any] = {}
        if self.retry != DEFAULT_RETRY:
            spec["retry"] = self.retry.to_dict()
        if self.timeout is not None:
            spec["timeout"] = self.timeout
        if self.result_ttl != DEFAULT_RESULT_TTL:
            spec["result_ttl"] = self.result_ttl
        if self.metadata:
            spec["metadata"] = self.metadata
        return spec

    def apply_spec(self, spec: dict[str, Any]) -> None:
        self.retry = RetryPolicy.from_dict(spec["retry"]) if "retry" in spec else DEFAULT_RETRY
        self.timeout = spec.get("timeout")
        self.result_ttl = spec.get("result_ttl", DEFAULT_RESULT_TTL)
        self.metadata = spec.get("metadata", {})

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, arguments decoded (for APIs and the CLI)."""
        try:
            args, kwargs = decode_payload(self.payload)
        except PayloadError:
            args, kwargs = [], {}
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "state": self.state.value,
            "priority": self.priority,
            "args": args,
            "kwargs": kwargs,
            "max_retries": self.max_retries,
            "retry": self.retry.to_dict(),
            "timeout": self.timeout,
            "result_ttl": self.result_ttl,
            "expires_at": self.expires_at,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "run_at": self.run_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "errors": [e.to_dict() for e in self.errors],
            "worker": self.worker,
            "result": self.result,
            "progress": self.progress,
            "cancel_requested": self.cancel_requested,
        }


def encode_spec(job: Job) -> bytes:
    """Job.spec() encoded, as backends store it; the jobs of a task share the bytes."""
    if job.metadata:
        return _own_size(encode(job.spec()))
    return _shared_spec(job.retry, job.timeout, job.result_ttl)


@functools.lru_cache(maxsize=1024)
def _shared_spec(retry: RetryPolicy, timeout: float | None, result_ttl: float) -> bytes:
    spec = Job(task="", retry=retry, timeout=timeout, result_ttl=result_ttl).spec()
    return _own_size(encode(spec))


@functools.lru_cache(maxsize=1024)
def decode_spec(spec: bytes | str) -> tuple[RetryPolicy, float | None, float, dict[str, Any]]:
    """The stored options, decoded once per distinct value (claim decodes every job it
    takes, and a task's jobs mostly share them); the metadata dict is shared: copy it."""
    job = Job(task="")
    job.apply_spec(decode(spec))
    return job.retry, job.timeout, job.result_ttl, job.metadata
