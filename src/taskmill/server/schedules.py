"""Routes of schedules: create, list, get, update, delete, pause, resume, and their jobs."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from taskmill.errors import ScheduleNotFoundError
from taskmill.schedule import NAME, Schedule
from taskmill.server.errors import JSON, ApiError, responses
from taskmill.server.models import Args, Duration, JobList, Payload, TaskName, job_out
from taskmill.server.shared import Server, server_of

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])

Name = Annotated[str, Path(pattern=NAME)]


class ScheduleChange(BaseModel):
    """The fields of a schedule to change; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    type: TaskName | None = Field(default=None, description="Task.")
    cron: str | None = Field(
        default=None,
        max_length=200,
        description="5 fields, or 6 with seconds first; or @hourly, @daily, ...",
    )
    tz: str | None = Field(default=None, max_length=64, description="IANA time zone.")
    args: Args | None = None
    payload: Payload | None = Field(default=None, description="Keyword arguments.")
    options: dict[str, Any] | None = Field(
        default=None, description="Job options: queue, priority, max_retries, timeout, ..."
    )
    catch_up: Duration | None = Field(
        default=None, description="Missed ticks at most this old fire late; 0 skips them."
    )
    jitter: Duration | None = Field(default=None, description="Random delay of each tick's job.")
    paused: bool | None = None

    def fields(self) -> dict[str, Any]:
        """As Schedules.build / aupdate take them."""
        given = self.model_dump(exclude_unset=True, exclude_none=True)
        renamed = {"type": "task", "payload": "kwargs"}
        return {renamed.get(key, key): value for key, value in given.items()}


class ScheduleIn(ScheduleChange):
    name: str = Field(pattern=NAME)
    type: TaskName = Field(description="Task.")
    cron: str = Field(max_length=200)


class ScheduleOut(BaseModel):
    name: str
    type: str
    cron: str
    tz: str
    args: list[Any]
    payload: dict[str, Any]
    options: dict[str, Any]
    catch_up: float
    jitter: float
    paused: bool
    source: str = Field(description="code (app.periodic) or api.")
    created_at: float
    last_tick: float | None
    next_tick: float | None
    recent_jobs: list[str] = Field(description="Ids of the jobs of its latest ticks.")


def schedule_out(schedule: Schedule, now: float) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "type": schedule.task,
        "cron": schedule.cron,
        "tz": schedule.tz,
        "args": schedule.args,
        "payload": schedule.kwargs,
        "options": schedule.options,
        "catch_up": schedule.catch_up,
        "jitter": schedule.jitter,
        "paused": schedule.paused,
        "source": schedule.source,
        "created_at": schedule.created_at,
        "last_tick": schedule.last_tick,
        "next_tick": None if schedule.paused else schedule.next_tick(now),
        "recent_jobs": schedule.recent_jobs,
    }


def _out(schedule: Schedule, status: int = 200) -> Response:
    return JSON(schedule_out(schedule, time.time()), status_code=status)


async def _strict(server: Server, task: str) -> bool | None:
    """Whether to refuse `task` if the app does not know it: as for a job submitted here,
    a task a worker knows is taken [else the app's `strict`]."""
    if task not in server.app.tasks and task in await server.worker_tasks(fresh=True):
        return False
    return None


@router.get("", response_model=list[ScheduleOut], responses=responses())
async def list_schedules(request: Request) -> Response:
    now = time.time()
    schedules = await server_of(request).app.schedules.alist()
    return JSON([schedule_out(schedule, now) for schedule in schedules])


@router.post("", status_code=201, response_model=ScheduleOut, responses=responses(409))
async def create_schedule(body: ScheduleIn, request: Request) -> Response:
    """Store a new schedule (409 if the name is taken: PUT changes one)."""
    server = server_of(request)
    schedules = server.app.schedules
    fields = body.fields()
    name, task, cron = fields.pop("name"), fields.pop("task"), fields.pop("cron")
    try:
        await schedules.aget(name)
    except ScheduleNotFoundError:
        strict = await _strict(server, task)
        return _out(await schedules.acreate(name, task, cron, strict=strict, **fields), 201)
    raise ApiError(409, f"schedule {name!r} exists; PUT changes it")


@router.get("/{name}", response_model=ScheduleOut, responses=responses(404))
async def get_schedule(name: Name, request: Request) -> Response:
    return _out(await server_of(request).app.schedules.aget(name))


@router.put("/{name}", response_model=ScheduleOut, responses=responses(404))
async def update_schedule(name: Name, body: ScheduleChange, request: Request) -> Response:
    """Change the fields given; the schedule's ticks so far are kept."""
    server, fields = server_of(request), body.fields()
    if "task" in fields:
        fields["strict"] = await _strict(server, fields["task"])
    return _out(await server.app.schedules.aupdate(name, **fields))


@router.delete("/{name}", status_code=204, responses=responses(404))
async def delete_schedule(name: Name, request: Request) -> Response:
    await server_of(request).app.schedules.adelete(name)
    return Response(status_code=204)


@router.post("/{name}/pause", response_model=ScheduleOut, responses=responses(404))
async def pause_schedule(name: Name, request: Request) -> Response:
    """Stop firing: the ticks while paused are skipped."""
    return _out(await server_of(request).app.schedules.apause(name))


@router.post("/{name}/resume", response_model=ScheduleOut, responses=responses(404))
async def resume_schedule(name: Name, request: Request) -> Response:
    return _out(await server_of(request).app.schedules.aresume(name))


@router.get("/{name}/jobs", response_model=JobList, responses=responses(404))
async def schedule_jobs(name: Name, request: Request) -> Response:
    """The jobs of its latest ticks that are still stored, newest first."""
    jobs = await server_of(request).app.schedules.ajobs(name)
    return JSON({"jobs": [job_out(job) for job in jobs]})
