"""The rules every backend keeps, written once: the records that cross the backend
interface, the constants of the data model's lifecycle, and plain functions that decide
what every backend must decide the same way. No I/O.

`Backend`'s public methods (base.py) apply the rules that need no storage (job
preparation, outcome validation, argument checks) before calling a backend's storage
step; a storage step calls the functions here for what it must decide alike: the rescue
of an expired lease, the claim order, the folding of queue counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from taskmill.errors import BackendError, ConfigError
from taskmill.job import WAITING_STATES, AttemptError, Job, JobState, decode, decode_spec

log = logging.getLogger("taskmill")
_Row = TypeVar("_Row")
_Read = TypeVar("_Read")

#: A worker not seen for this long is no longer listed as live.
WORKER_TTL = 60.0
#: QueueInfo.finished_recently counts the jobs that ended within this many seconds.
THROUGHPUT_WINDOW = 60.0
#: The error recorded on an attempt whose worker stopped renewing its lease.
LEASE_EXPIRED = "lease expired: the worker holding the job stopped (killed or lost)"
#: How often `wait` rereads the clock while a job is scheduled (an injected clock may jump).
CLOCK_CHECK = 0.25
#: How an attempt may end (Outcome.state); RUNNING and the waiting states are no outcome.
OUTCOME_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED, JobState.PENDING}
)
#: Finished jobs that maintain() deletes once their result_ttl has passed; DEAD jobs stay
#: in the dead-letter queue until requeued or purged.
PRUNABLE_STATES = frozenset({JobState.SUCCEEDED, JobState.CANCELLED, JobState.EXPIRED})


class Listing(NamedTuple):
    """A page of list_jobs as a storage step gets it: jobs matching every filter that is
    not None, at most `limit` (> 0) of them, listed below the position `before`."""

    state: JobState | None
    queue: str | None
    task: str | None
    limit: int
    before: int | None


class Heartbeat(NamedTuple):
    """A heartbeat as a storage step gets it: the worker as seen now (last_seen set), the
    jobs it holds (id -> token) with the progress reported, and the leases' new end."""

    worker: WorkerInfo
    held: Mapping[str, str]
    progress: Mapping[str, float]
    lease_until: float


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, as decided by the worker that held it.

    state is SUCCEEDED (with result), RETRYING (with error and run_at), DEAD (with error),
    CANCELLED, or PENDING: the attempt is handed back unrun (graceful shutdown), so it
    does not count and the job keeps its place in the queue.
    """

    job_id: str
    token: str
    state: JobState
    #: The handler's return value, JSON-encoded (job.encode) by the worker, which must
    #: know it can be stored before it reports success.
    result: bytes | None = None
    error: AttemptError | None = None
    run_at: float | None = None
    #: The last progress the handler reported, when a heartbeat may not have carried it.
    progress: float | None = None


@dataclass(slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    tasks: list[str]
    started_at: float
    last_seen: float = 0.0
    running: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "tasks": self.tasks,
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "running": self.running,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(slots=True)
class QueueInfo:
    name: str
    paused: bool = False
    #: Jobs per state; every JobState is a key.
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in JobState})
    #: created_at of the oldest job waiting to run now, if any.
    oldest_pending: float | None = None
    #: Waiting jobs due now, per priority; only priorities that have some are keys.
    ready_by_priority: dict[int, int] = field(default_factory=dict)
    #: Jobs that succeeded or went dead within the last THROUGHPUT_WINDOW seconds.
    finished_recently: int = 0
    #: What configure_queue stored. Claims read its "concurrency": at most that many of the
    #: queue's jobs run at once, across every worker; the rest is kept for the app.
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "counts": self.counts,
            "oldest_pending": self.oldest_pending,
            "ready_by_priority": self.ready_by_priority,
            "finished_recently": self.finished_recently,
            "settings": self.settings,
        }


@dataclass(slots=True)
class Lease:
    """Who holds a named lease, and until when (backend clock)."""

    name: str
    holder: str
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "holder": self.holder, "expires_at": self.expires_at}


def prepare(jobs: Sequence[Job], now: float) -> None:
    """Make jobs records, in place: created now, due at run_at (now when not given), and
    SCHEDULED until then, else PENDING. The jobs given become the records rather than
    copies of them: a copy costs as much as a good part of the write, and the caller gets
    the stored records back anyway."""
    for job in jobs:
        job.created_at, job.run_at = now, job.run_at or now
        job.state = JobState.SCHEDULED if job.run_at > now else JobState.PENDING


def check_outcomes(outcomes: Sequence[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.state not in OUTCOME_STATES:
            raise BackendError(f"an attempt cannot end as {outcome.state.value}")


def matchable(*values: str | None) -> bool:
    """Whether ids or filters can match a stored job: none of them holds NUL. No record
    holds one (job validation refuses them, and PostgreSQL's text cannot store one), so a
    value with NUL matches nothing, and is answered as such instead of reaching a store
    that would fail on it as if it were down."""
    return not any(value is not None and "\x00" in value for value in values)


def parse_cursor(cursor: str | None) -> int | None:
    """A list_jobs cursor: the listing position (a non-negative integer) to continue below."""
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise ConfigError(f"invalid cursor {cursor!r}")
    return int(cursor)


@dataclass(slots=True, frozen=True)
class Rescue:
    """What becomes of a RUNNING job whose lease expired (see rescue())."""

    state: JobState
    error: AttemptError
    #: When the job runs again, if it is retried.
    run_at: float | None = None
    #: When it ended, if it did.
    finished_at: float | None = None


def rescue(job: Job, now: float) -> Rescue:
    """The rescue decision for a RUNNING job whose lease expired: the attempt fails with
    LEASE_EXPIRED, and the job is CANCELLED if that was requested, DEAD once past
    max_retries, else RETRYING after its backoff."""
    error = AttemptError(job.attempts, LEASE_EXPIRED, None, job.worker or None, now)
    if job.cancel_requested:
        return Rescue(JobState.CANCELLED, error, finished_at=now)
    if job.attempts > job.max_retries:
        return Rescue(JobState.DEAD, error, finished_at=now)
    return Rescue(JobState.RETRYING, error, run_at=now + job.retry.backoff(job.attempts))


def in_claim_order(order: Sequence[str], claimed: Sequence[tuple[Job, int]]) -> list[Job]:
    """Claimed jobs, each with its enqueue sequence, in the order claims return them: the
    queues in the order asked, then highest priority first, then first enqueued first."""
    rank = {queue: i for i, queue in enumerate(order)}
    ordered = sorted(claimed, key=lambda pair: (rank[pair[0].queue], -pair[0].priority, pair[1]))
    return [job for job, _ in ordered]


def fold_counts(
    infos: dict[str, QueueInfo],
    queue: str,
    state: str,
    priority: int,
    count: int,
    oldest_due: float | None,
    due: int,
    recent: int,
) -> None:
    """Add one group of a queue's jobs (one state and priority) to its QueueInfo: `count`
    jobs, of which `due` are due now (created_at of the oldest: `oldest_due`) and `recent`
    finished within THROUGHPUT_WINDOW. Only waiting jobs count as due, only succeeded and
    dead ones as recently finished."""
    info = infos.get(queue)
    if info is None:
        info = infos[queue] = QueueInfo(queue)
    info.counts[state] += count
    if JobState(state) in WAITING_STATES:
        if oldest_due is not None:
            info.oldest_pending = min(info.oldest_pending or oldest_due, oldest_due)
        if due:
            info.ready_by_priority[priority] = info.ready_by_priority.get(priority, 0) + due
    elif state in (JobState.SUCCEEDED, JobState.DEAD):
        info.finished_recently += recent


#: How the error of a quarantined record starts (see corrupt()).
CORRUPT = "corrupt record: "


def corrupt(reason: str, now: float, attempt: int = 0) -> AttemptError:
    """The error recorded on a job whose stored record cannot be used (undecodable, of the
    wrong shape, half gone): the job is quarantined in the dead-letter queue with it,
    never retried and never left in the way of its queue's other jobs."""
    return AttemptError(attempt, CORRUPT + reason, None, None, now)


#: How much of a reason, or of an unreadable stored value, a quarantine error quotes.
QUOTE = 200


def sift(
    rows: Iterable[_Row], read: Callable[[_Row], _Read]
) -> tuple[list[_Read], list[tuple[_Row, str]]]:
    """Rows read as records, and apart those that cannot be, each with why. Any error of
    `read` is the record's: a stored value of the wrong type or shape fails in many ways,
    and none of them may stop the reading of the other rows."""
    good, bad = [], []
    for row in rows:
        try:
            good.append(read(row))
        except Exception as exc:  # any error: see the docstring
            bad.append((row, why(exc)))
    return good, bad


def why(exc: Exception) -> str:
    """Why a record cannot be read, as a quarantine's reason."""
    return f"{type(exc).__name__}: {exc}"[:QUOTE]


def skipped(job_id: object, reason: str) -> None:
    """Log a record a read leaves out because it cannot be read (listings show the rest;
    a claim or upkeep that meets it quarantines it)."""
    log.warning("job %r left out: its record cannot be read (%s)", _name(job_id), reason)


def lost(queue: str, ids: Iterable[bytes | str]) -> None:
    """Log index entries dropped because the record they point to is gone."""
    for job_id in ids:
        log.warning("queue %r: index entry %r dropped: its record is gone", queue, _name(job_id))


def _name(job_id: object) -> object:
    """An id as logs show it: Redis replies hold bytes."""
    return job_id.decode(errors="replace") if isinstance(job_id, bytes) else job_id


@dataclass(slots=True, frozen=True)
class Quarantine:
    """How a record that cannot be used is stored in the dead-letter queue: DEAD, with
    `errors` (those that can still be read, then corrupt()) and `spec` (the stored one if
    it can be read, else the defaults' b"{}": the error quotes what it was), so that the
    record reads back and lists like any dead job. Requeue leaves it dead."""

    job_id: str
    error: AttemptError
    errors: list[dict[str, Any]]
    spec: bytes | None


def quarantine(
    job_id: str, reason: str, now: float, attempt: int, *, spec: Any, errors: Any
) -> Quarantine:
    """The quarantine of a record that `reason` says cannot be used, given its stored spec
    and errors (None where it has none); logs it."""
    notes = [reason]
    kept: list[dict[str, Any]] = []
    if errors is not None:
        try:
            kept = [AttemptError.from_dict(e).to_dict() for e in decode(errors)]
        except Exception:  # any error: the column cannot be read
            notes.append(f"errors were {_quote(errors)}")
    new_spec = None
    try:
        decode_spec(b"{}" if spec is None else spec)
    except Exception:  # any error: the column cannot be read
        new_spec = b"{}"
        notes.append(f"spec was {_quote(spec)}")
    error = corrupt("; ".join(notes), now, attempt)
    log.error("job %r quarantined in the dead-letter queue: %s", job_id, error.error)
    return Quarantine(job_id, error, [*kept, error.to_dict()], new_spec)


def _quote(value: Any) -> str:
    return repr(value)[:QUOTE]
