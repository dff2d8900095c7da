"""Routes of queues, workers, statistics, health and metrics."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from taskmill.backends import Backend, QueueInfo
from taskmill.job import QUEUE_PATTERN, WAITING_STATES, JobState
from taskmill.server.errors import JSON, ApiError, responses
from taskmill.server.models import (
    Health,
    QueueIn,
    QueueOut,
    QueueSettingsIn,
    QueueStatsOut,
    StatsOut,
    WorkerOut,
    queue_out,
    queue_stats_out,
    stats_out,
    worker_out,
)
from taskmill.server.shared import Server, server_of

router = APIRouter()
QueueParam = Annotated[str, Path(pattern=QUEUE_PATTERN)]
_QUEUES = "/api/v1/queues"


async def _find(backend: Backend, name: str) -> QueueInfo:
    info = next((i for i in await backend.list_queues() if i.name == name), None)
    if info is None:
        raise ApiError(404, f"no queue {name!r}: it holds no jobs and was never configured")
    return info


async def _configure(server: Server, name: str, body: QueueSettingsIn) -> QueueInfo:
    backend = await server.backend()
    await backend.configure_queue(name, body.settings())
    if body.paused is not None:
        await backend.set_paused(name, body.paused)
    server.forget_settings()
    return await _find(backend, name)


@router.get(_QUEUES, response_model=list[QueueOut], responses=responses(), tags=["queues"])
async def list_queues(request: Request) -> Response:
    """Queues that hold jobs or were configured, with their settings and counts."""
    infos = await (await server_of(request).backend()).list_queues()
    now = time.time()
    return JSON([queue_out(info, now) for info in infos])


@router.post(
    _QUEUES, status_code=201, response_model=QueueOut, responses=responses(409), tags=["queues"]
)
async def create_queue(body: QueueIn, request: Request) -> Response:
    """Configure a new queue (409 if it exists: change one with PUT)."""
    server = server_of(request)
    backend = await server.backend()
    if any(info.name == body.name for info in await backend.list_queues()):
        raise ApiError(409, f"queue {body.name!r} exists; PUT changes it")
    info = await _configure(server, body.name, body)
    return JSON(queue_out(info, time.time()), status_code=201)


@router.get(_QUEUES + "/{name}", response_model=QueueOut, responses=responses(404), tags=["queues"])
async def get_queue(name: QueueParam, request: Request) -> Response:
    info = await _find(await server_of(request).backend(), name)
    return JSON(queue_out(info, time.time()))


@router.put(_QUEUES + "/{name}", response_model=QueueOut, responses=responses(), tags=["queues"])
async def put_queue(name: QueueParam, body: QueueSettingsIn, request: Request) -> Response:
    """Set a queue's settings, replacing those it had (creates it if needed)."""
    info = await _configure(server_of(request), name, body)
    return JSON(queue_out(info, time.time()))


@router.delete(_QUEUES + "/{name}", status_code=204, responses=responses(404, 409), tags=["queues"])
async def delete_queue(name: QueueParam, request: Request) -> Response:
    """Forget a queue and its finished jobs; refused while jobs wait or run in it."""
    server = server_of(request)
    backend = await server.backend()
    info = await _find(backend, name)
    busy = sum(info.counts[s.value] for s in (*WAITING_STATES, JobState.RUNNING))
    if busy:
        raise ApiError(409, f"queue {name!r} still has {busy} waiting or running job(s)",
                       {"jobs": busy})  # fmt: skip
    for state in JobState:
        if state.finished:
            await backend.purge(state=state, queue=name)
    await backend.delete_queue(name)
    server.forget_settings()
    return Response(status_code=204)


async def _pause(request: Request, name: str, paused: bool) -> Response:
    backend = await server_of(request).backend()
    await backend.set_paused(name, paused)
    return JSON(queue_out(await _find(backend, name), time.time()))


@router.post(
    _QUEUES + "/{name}/pause", response_model=QueueOut, responses=responses(), tags=["queues"]
)
async def pause_queue(name: QueueParam, request: Request) -> Response:
    """Stop handing out the queue's jobs (new ones are still accepted)."""
    return await _pause(request, name, True)


@router.post(
    _QUEUES + "/{name}/resume", response_model=QueueOut, responses=responses(), tags=["queues"]
)
async def resume_queue(name: QueueParam, request: Request) -> Response:
    return await _pause(request, name, False)


@router.get(
    _QUEUES + "/{name}/stats",
    response_model=QueueStatsOut,
    responses=responses(404),
    tags=["queues"],
)
async def queue_stats(name: QueueParam, request: Request) -> Response:
    """Jobs per state, live workers, jobs ended in the last minute, oldest due job's age."""
    backend = await server_of(request).backend()
    info = await _find(backend, name)
    return JSON(queue_stats_out(info, await backend.list_workers(), time.time()))


@router.get(
    "/api/v1/workers", response_model=list[WorkerOut], responses=responses(), tags=["workers"]
)
async def list_workers(request: Request) -> Response:
    """Workers seen within the last minute."""
    workers = await (await server_of(request).backend()).list_workers()
    return JSON([worker_out(w) for w in workers])


@router.get("/api/v1/stats", response_model=StatsOut, responses=responses(), tags=["stats"])
async def stats(request: Request) -> Response:
    """Totals over every queue."""
    backend = await server_of(request).backend()
    infos, workers = await backend.list_queues(), await backend.list_workers()
    return JSON(stats_out(infos, workers, time.time()))


@router.get("/health", response_model=Health, tags=["health"], openapi_extra={"security": []})
async def health() -> Response:
    """The server is up (it does not look at the backend)."""
    return JSON({"status": "ok"})


@router.get(
    "/ready",
    response_model=Health,
    responses=responses(503),
    tags=["health"],
    openapi_extra={"security": []},
)
async def ready(request: Request) -> Response:
    """The backend answers."""
    await (await server_of(request).backend()).get("readiness-probe")
    return JSON({"status": "ok"})
