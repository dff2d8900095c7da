"""Routes of jobs and of the dead-letter queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from taskmill.job import MAX_ID, NAME_PATTERN, JobState
from taskmill.server.errors import JSON, ApiError, responses
from taskmill.server.models import (
    BatchIn,
    Count,
    JobIn,
    JobList,
    JobOut,
    JobPage,
    PurgeIn,
    QueueName,
    RequeueIn,
    Status,
    job_out,
)
from taskmill.server.shared import server_of

router = APIRouter(prefix="/api/v1")

JobId = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=NAME_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the last page.")]
TypeFilter = Annotated[
    str | None, Query(max_length=255, pattern=NAME_PATTERN, description="Only jobs of this task.")
]
QueueFilter = Annotated[QueueName | None, Query()]


@router.post("/jobs", status_code=201, response_model=JobOut, responses=responses(), tags=["jobs"])
async def create_job(body: JobIn, request: Request) -> Response:
    """Submit a job. Submitting an `id` that exists returns that job, unchanged."""
    server = server_of(request)
    job = await server.build(body)
    (stored,) = await (await server.backend()).enqueue([job])
    server.metrics.job_enqueued([stored])
    return JSON(job_out(stored), status_code=201)


@router.post(
    "/jobs/batch", status_code=201, response_model=JobList, responses=responses(), tags=["jobs"]
)
async def create_jobs(body: BatchIn, request: Request) -> Response:
    """Submit up to 1000 jobs at once: all are checked before any is stored."""
    server = server_of(request)
    jobs = [await server.build(item) for item in body.jobs]
    stored = await (await server.backend()).enqueue(jobs)
    server.metrics.job_enqueued(stored)
    return JSON({"jobs": [job_out(job) for job in stored]}, status_code=201)


@router.get("/jobs", response_model=JobPage, responses=responses(), tags=["jobs"])
async def list_jobs(
    request: Request,
    status: Annotated[Status | None, Query()] = None,
    queue: QueueFilter = None,
    type: TypeFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Jobs, newest first, a page at a time: pass `next_cursor` back as `cursor`."""
    state = None if status is None else JobState(status)
    return await _page(request, state, queue, type, limit, cursor)


async def _page(
    request: Request,
    state: JobState | None,
    queue: str | None,
    task: str | None,
    limit: int,
    cursor: str | None,
) -> Response:
    backend = await server_of(request).backend()
    jobs, next_cursor = await backend.list_jobs(
        state=state, queue=queue, task=task, limit=limit, cursor=cursor
    )
    return JSON({"jobs": [job_out(job) for job in jobs], "next_cursor": next_cursor})


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(404), tags=["jobs"])
async def get_job(job_id: JobId, request: Request) -> Response:
    """The whole record: attempts and their errors, result, progress, times, worker."""
    return JSON(job_out(await server_of(request).app.aget(job_id)))


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(404), tags=["jobs"]
)
async def cancel_job(job_id: JobId, request: Request) -> Response:
    """A waiting job is cancelled now; a running one stops at its worker's next heartbeat
    (`cancel_requested`); a finished one is left as it is."""
    return JSON(job_out(await server_of(request).app.acancel(job_id)))


@router.post(
    "/jobs/{job_id}/retry", response_model=JobOut, responses=responses(404, 409), tags=["jobs"]
)
async def retry_job(job_id: JobId, request: Request) -> Response:
    """Run a dead job again from a first attempt (its past errors are kept)."""
    return JSON(job_out(await server_of(request).app.aretry(job_id)))


@router.delete("/jobs/{job_id}", status_code=204, responses=responses(404, 409), tags=["jobs"])
async def delete_job(job_id: JobId, request: Request) -> Response:
    """Remove a job that is not running (cancel a running one first)."""
    await server_of(request).app.adelete(job_id)
    return Response(status_code=204)


# -- the dead-letter queue ---------------------------------------------------------------------


@router.get("/dlq", response_model=JobPage, responses=responses(), tags=["dead-letter queue"])
async def list_dead(
    request: Request,
    queue: QueueFilter = None,
    type: TypeFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Dead jobs (failed for good), newest first."""
    return await _page(request, JobState.DEAD, queue, type, limit, cursor)


@router.post(
    "/dlq/requeue", response_model=Count, responses=responses(), tags=["dead-letter queue"]
)
async def requeue_dead(body: RequeueIn, request: Request) -> Response:
    """Run dead jobs again: those of `ids`, those matching `queue` and `type`, or with
    `all` every one."""
    filters: dict[str, Any] = {"queue": body.queue, "task": body.type}
    if body.all == bool(body.ids or body.queue or body.type):
        raise ApiError(422, "say which dead jobs: ids, queue or type, or else all: true",
                       code="validation_error")  # fmt: skip
    backend = await server_of(request).backend()
    return JSON({"count": await backend.requeue(ids=body.ids, **filters)})


@router.post(
    "/dlq/{job_id}/requeue",
    response_model=JobOut,
    responses=responses(404, 409),
    tags=["dead-letter queue"],
)
async def requeue_one(job_id: JobId, request: Request) -> Response:
    """Run one dead job again (the same as POST /jobs/{id}/retry)."""
    return await retry_job(job_id, request)


@router.post("/dlq/purge", response_model=Count, responses=responses(), tags=["dead-letter queue"])
async def purge_dead(body: PurgeIn, request: Request) -> Response:
    """Delete dead jobs for good: every one, or those matching `queue` and `type`."""
    backend = await server_of(request).backend()
    return JSON({"count": await backend.purge(queue=body.queue, task=body.type)})
