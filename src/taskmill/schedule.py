"""Schedules: the record (a cron expression, the job it enqueues, and what it last fired),
and `Schedules`, the app's create/read/update/delete of them (`app.schedules`).

The record is pure: no I/O. Backends store the definition (`definition()`) and keep the
state (`last_tick`, `recent_jobs`) apart, which only the scheduler writes (`record_tick`), so
an update from a person never rolls back what the scheduler recorded. `Schedules` reaches
the backend through the app it is given, so this module imports no backend and no app.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from taskmill.cron import Cron
from taskmill.errors import JobError, ScheduleError, ScheduleNotFoundError, TaskmillError
from taskmill.job import Job, parse_option_duration

if TYPE_CHECKING:
    from taskmill.app import App

#: The name of the lease the schedulers contend for: its holder leads.
LEADER = "scheduler"
#: Job ids a schedule keeps in `recent_jobs`, newest first.
RECENT_JOBS = 20
#: Options a schedule may set on its jobs; the id and run time come from the tick.
JOB_OPTIONS = frozenset(
    {"queue", "priority", "max_retries", "retry", "retry_delay", "max_retry_delay", "jitter",
     "timeout", "result_ttl", "ttl", "metadata"}
)  # fmt: skip
#: The fields of the state, as opposed to the definition.
STATE_FIELDS = ("last_tick", "recent_jobs")

#: The alphabet of schedule names (they are URL path segments and parts of job ids).
NAME = r"^[A-Za-z0-9_.:-]{1,200}$"
_NAME = re.compile(NAME)

Source = Literal["code", "api"]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScheduleError(f"invalid schedule name {name!r}: 1-200 of letters, digits, _ . : -")
    return name


def tick_job_id(name: str, tick: float) -> str:
    """The id of the job a schedule enqueues for a tick: the same in every scheduler, so
    enqueueing a tick twice (two leaders at once) stores one job."""
    return f"schedule:{name}:{int(tick)}"


@dataclass(slots=True)
class Schedule:
    """A recurring job: `task` with `args` and `kwargs`, enqueued at every tick of `cron`
    in the time zone `tz`, with the job options in `options` (queue, priority, ...)."""

    name: str
    task: str
    cron: str
    tz: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: Ticks missed by more than a takeover's delay (the scheduler lease) are fired when they
    #: are at most this many seconds old, each once; older ones are skipped. 0: skip them.
    catch_up: float = 0.0
    #: Each tick's job runs a random 0 to `jitter` seconds after the tick, to spread load.
    jitter: float = 0.0
    paused: bool = False
    #: "code" for schedules declared with `app.periodic` (stored again by each scheduler
    #: start), "api" for those made at run time.
    source: Source = "api"
    #: When it was first stored; the first tick is the first after it.
    created_at: float = 0.0
    #: When it was last resumed: ticks before it are not fired.
    resumed_at: float = 0.0
    #: The latest tick fired (UNIX seconds), written by the scheduler only.
    last_tick: float | None = None
    #: Ids of the jobs of the latest ticks, newest first (at most RECENT_JOBS).
    recent_jobs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_name(self.name)
        # The task's name is checked by Schedules.build (make_job): a stored record made
        # before that check is still read.
        if not isinstance(self.task, str) or not self.task:
            raise ScheduleError("a schedule needs a task name")
        if not isinstance(self.cron, str) or not isinstance(self.tz, str):
            raise ScheduleError("cron and tz must be strings")
        Cron(self.cron, self.tz)  # refuses a bad expression or zone here, not at the tick
        try:
            # Durations as a job's: numbers of seconds here, finite and at most ten years.
            for label, value in (("catch_up", self.catch_up), ("jitter", self.jitter)):
                if isinstance(value, str):
                    raise JobError(f"{label}: must be a number of seconds, got {value!r}")
                parse_option_duration(label, value)
        except JobError as exc:
            raise ScheduleError(f"schedule {self.name!r}: {exc}") from None
        unknown = set(self.options) - JOB_OPTIONS
        if unknown:
            raise ScheduleError(
                f"option(s) {', '.join(sorted(unknown))} cannot be set on a schedule's jobs"
            )
        if self.source not in ("code", "api"):
            raise ScheduleError(f"source must be 'code' or 'api', not {self.source!r}")

    def parsed(self) -> Cron:
        return Cron(self.cron, self.tz)

    def next_tick(self, now: float) -> float | None:
        """When it fires next, as seen at `now`; None while paused."""
        if self.paused:
            return None
        return self.parsed().next_after(max(now, self.last_tick or 0.0))

    def due_ticks(self, now: float, grace: float, limit: int) -> list[float]:
        """The ticks to fire at `now`, oldest first: those after the last one fired (or after
        creation), at most max(catch_up, grace) seconds old, the newest `limit` of them."""
        if self.paused:
            return []
        start = max(self.last_tick or 0.0, self.created_at, self.resumed_at)
        oldest = now - max(self.catch_up, grace)
        return self.parsed().ticks(max(start, oldest), now, limit)

    def definition(self) -> dict[str, Any]:
        """What a person sets: every field but the state."""
        return {
            "name": self.name,
            "task": self.task,
            "cron": self.cron,
            "tz": self.tz,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "catch_up": self.catch_up,
            "jitter": self.jitter,
            "paused": self.paused,
            "source": self.source,
            "created_at": self.created_at,
            "resumed_at": self.resumed_at,
        }

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """The definition and the state; with `now`, also next_tick as seen then."""
        out = {**self.definition(), "last_tick": self.last_tick, "recent_jobs": self.recent_jobs}
        if now is not None:
            out["next_tick"] = self.next_tick(now)
        return out

    @classmethod
    def from_stored(
        cls,
        definition: Mapping[str, Any],
        last_tick: float | None = None,
        recent_jobs: Sequence[str] = (),
    ) -> Schedule:
        """A record from a stored definition and state (definition keys not known to this
        version are ignored, so an older scheduler can read a newer one's records)."""
        fields = {k: v for k, v in definition.items() if k in _DEFINITION_FIELDS}
        return cls(**fields, last_tick=last_tick, recent_jobs=list(recent_jobs))


_DEFINITION_FIELDS = frozenset(Schedule.__dataclass_fields__) - set(STATE_FIELDS)


def recorded(recent: Sequence[str], job_id: str) -> list[str]:
    """`recent` with job_id put first, at most RECENT_JOBS long (for backends)."""
    return [job_id, *(i for i in recent if i != job_id)][:RECENT_JOBS]


class Schedules:
    """The app's schedules, stored in its backend: `app.schedules.create(...)`, `list()`,
    `get(name)`, `update(name, ...)`, `pause`, `resume`, `delete`, and `jobs(name)`, the
    jobs of its latest ticks. Each has an awaitable twin: `acreate`, `alist`, ...
    """

    def __init__(self, app: App) -> None:
        self.app = app
        #: Declared in code with `app.periodic`: each scheduler stores them when it starts.
        self.declared: dict[str, Schedule] = {}

    def build(
        self,
        name: str,
        task: str,
        cron: str,
        *,
        tz: str = "UTC",
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        catch_up: float | str = 0.0,
        jitter: float | str = 0.0,
        paused: bool = False,
        source: Source = "api",
        options: Mapping[str, Any] | None = None,
        strict: bool | None = None,
    ) -> Schedule:
        """A validated schedule, not stored: options as for a job (queue, priority, ...).

        strict: refuse a task the app does not know, as enqueue does [the app's `strict`];
        a cron expression that never fires is refused always."""
        if name in (".", ".."):  # a record may have one; the API could not reach a new one
            raise ScheduleError(f"invalid schedule name {name!r}: a URL path cannot name it")
        try:
            opts = self.app._build_options(options or {})
            now = self.app.clock()
            schedule = Schedule(
                name, task, cron, tz, list(args), dict(kwargs or {}), opts,
                catch_up=parse_option_duration("catch_up", catch_up),
                jitter=parse_option_duration("jitter", jitter),
                paused=paused, source=source, created_at=now,
            )  # fmt: skip
            schedule.parsed().check_fires(now)
            # A job as its ticks will make it: a task the app knows (if it knows its tasks),
            # arguments that fit it, a payload that is not too large, valid options.
            self.app.make_job(task, schedule.args, schedule.kwargs, strict=strict, **opts)
        except ScheduleError:
            raise
        except TaskmillError as exc:
            raise ScheduleError(f"schedule {name!r}: {exc}") from None
        return schedule

    def declare(self, schedule: Schedule) -> None:
        if schedule.name in self.declared:
            raise ScheduleError(f"schedule {schedule.name!r} is declared twice")
        self.declared[schedule.name] = schedule

    async def astore_declared(self) -> None:
        """Store the schedules declared in code; one paused at run time stays paused."""
        backend = await self.app.backend()
        for schedule in self.declared.values():
            stored = await backend.get_schedule(schedule.name)
            if stored is not None:
                schedule.paused, schedule.created_at = stored.paused, stored.created_at
                schedule.resumed_at = stored.resumed_at
            await backend.put_schedule(schedule)

    async def acreate(self, name: str, task: str, cron: str, **fields: Any) -> Schedule:
        """Store a new schedule (see `build` for the fields); refuses a name in use."""
        schedule = self.build(name, task, cron, **fields)
        backend = await self.app.backend()
        if await backend.get_schedule(name) is not None:
            raise ScheduleError(f"schedule {name!r} exists: update it, or delete it first")
        await backend.put_schedule(schedule)
        return schedule

    async def aget(self, name: str) -> Schedule:
        found = await (await self.app.backend()).get_schedule(name)
        if found is None:
            raise ScheduleNotFoundError(f"no schedule {name!r}")
        return found

    async def alist(self) -> list[Schedule]:
        return await (await self.app.backend()).list_schedules()

    async def aupdate(self, name: str, **changes: Any) -> Schedule:
        """Change fields of a stored schedule (any of `build`'s); its state is kept."""
        current = await self.aget(name)
        fields = current.definition()
        del fields["name"], fields["created_at"], fields["resumed_at"]
        if "task" not in changes:  # a task unknown here can still be paused or changed
            fields["strict"] = False
        fields.update(changes)
        schedule = self.build(name, fields.pop("task"), fields.pop("cron"), **fields)
        schedule.created_at, schedule.resumed_at = current.created_at, current.resumed_at
        if current.paused and not schedule.paused:  # the ticks while paused are skipped
            schedule.resumed_at = self.app.clock()
        await (await self.app.backend()).put_schedule(schedule)
        return await self.aget(name)

    async def apause(self, name: str) -> Schedule:
        return await self.aupdate(name, paused=True)

    async def aresume(self, name: str) -> Schedule:
        return await self.aupdate(name, paused=False)

    async def adelete(self, name: str) -> None:
        if not await (await self.app.backend()).delete_schedule(name):
            raise ScheduleNotFoundError(f"no schedule {name!r}")

    async def ajobs(self, name: str) -> list[Job]:
        """The jobs of its latest ticks that are still stored, newest first."""
        schedule = await self.aget(name)
        backend = await self.app.backend()
        jobs = [await backend.get(job_id) for job_id in schedule.recent_jobs]
        return [job for job in jobs if job is not None]

    # The same from sync code.

    def create(self, name: str, task: str, cron: str, **fields: Any) -> Schedule:
        return self.app.run(self.acreate(name, task, cron, **fields))

    def get(self, name: str) -> Schedule:
        return self.app.run(self.aget(name))

    def list(self) -> list[Schedule]:
        return self.app.run(self.alist())

    def update(self, name: str, **changes: Any) -> Schedule:
        return self.app.run(self.aupdate(name, **changes))

    def pause(self, name: str) -> Schedule:
        return self.app.run(self.apause(name))

    def resume(self, name: str) -> Schedule:
        return self.app.run(self.aresume(name))

    def delete(self, name: str) -> None:
        self.app.run(self.adelete(name))

    def jobs(self, name: str) -> builtins.list[Job]:  # `list` is the method above, here
        return self.app.run(self.ajobs(name))
