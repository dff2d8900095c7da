"""The REST API: `create_app()` builds the ASGI app over an `App` and its backend.

FastAPI, for three reasons: the request models are the validation (a 422 names the field),
the OpenAPI document and the docs page come from the same models, and routes stay plain
async functions over the backend. Responses are written by orjson from dicts, not
re-validated through the models, which keeps a submission cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from taskmill.app import App
from taskmill.metrics import MAX_QUEUES
from taskmill.server import dashboard, errors, jobs, queues, schedules, scrape
from taskmill.server.guard import Guard, RateLimit, Role
from taskmill.server.shared import Server

__all__ = ["Server", "create_app"]

#: Default limit of a request body: a full batch of modest jobs.
MAX_BODY = 8 * 1024 * 1024


def create_app(
    app: App,
    *,
    api_keys: Mapping[str, Role] | None = None,
    rate_limit: RateLimit | None = None,
    max_body: int = MAX_BODY,
    allowed_hosts: Collection[str] | None = None,
    metrics_max_queues: int = MAX_QUEUES,
) -> FastAPI:
    """The API over `app`. No keys: no authentication (serve it on loopback only), and
    changes only as JSON from the server's own pages or from programs that are not
    browsers. `allowed_hosts`: the Host names answered besides the loopback ones (`*` for
    any); None answers any Host, for an app embedded behind a server that checks it.
    `metrics_max_queues`: queues with labels of their own in /metrics (see metrics.py)."""

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        yield
        await app.aclose()

    api = FastAPI(
        title="taskmill",
        version="1",
        description="Submit and manage jobs, queues and the dead-letter queue of taskmill.",
        lifespan=lifespan,
    )
    api.state.taskmill = Server(app, metrics_max_queues)
    errors.install(api)
    api.include_router(scrape.router)
    api.include_router(jobs.router)
    api.include_router(queues.router)
    api.include_router(schedules.router)
    dashboard.install(api)
    api.add_middleware(
        Guard,
        keys=dict(api_keys or {}),
        rate_limit=rate_limit,
        max_body=max_body,
        hosts=allowed_hosts,
    )

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            }
            schema["security"] = [{"ApiKey": []}, {"Bearer": []}]
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
