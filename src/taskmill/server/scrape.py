"""/metrics and /api/v1/metrics: the families are read from the backend by awaiting it,
then built and rendered in a thread (metrics.server_families), so that a scrape of many
queues never holds up the event loop, and with it /health and every other request."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client.metrics_core import Metric
from starlette.responses import Response

from taskmill.metrics import CONTENT_TYPE, as_json, exposition, server_families
from taskmill.server.errors import JSON, responses
from taskmill.server.shared import server_of

router = APIRouter()


async def server_families_of(request: Request) -> list[Metric]:
    server = server_of(request)
    return await server_families(await server.backend(), server.metrics, server.max_queues)


@router.get("/api/v1/metrics", responses=responses(), tags=["metrics"])
async def scrape_json(request: Request) -> Response:
    """The metrics of /metrics as JSON."""
    families = await server_families_of(request)
    return JSON({"metrics": await asyncio.to_thread(as_json, families)})


@router.get(
    "/metrics",
    responses={200: {"content": {CONTENT_TYPE: {}}}, **responses()},
    response_class=Response,
    tags=["metrics"],
)
async def scrape(request: Request) -> Response:
    """Prometheus exposition: the backend's state and this server's counters."""
    families = await server_families_of(request)
    return Response(await asyncio.to_thread(exposition, families), media_type=CONTENT_TYPE)
