"""Every error the API answers with, in one shape and mapped in one place:
`{"error": {"code", "message", "details"}}`. Nothing internal (tracebacks, paths, backend
addresses) reaches a response; the server's log has it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskmill.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidArgumentsError,
    JobError,
    JobNotFoundError,
    JobStateError,
    PayloadError,
    ScheduleError,
    ScheduleNotFoundError,
    TaskmillError,
    UnknownTaskError,
)
from taskmill.server.models import ErrorOut

log = logging.getLogger("taskmill.server")

#: taskmill's exceptions as (status, code); the first class that matches wins.
STATUS: list[tuple[type[TaskmillError], int, str]] = [
    (UnknownTaskError, 422, "unknown_task"),
    (InvalidArgumentsError, 422, "invalid_arguments"),
    (PayloadError, 422, "invalid_payload"),
    (JobError, 422, "invalid_job"),
    (JobNotFoundError, 404, "not_found"),
    (ScheduleNotFoundError, 404, "not_found"),
    (ScheduleError, 422, "invalid_schedule"),
    (JobStateError, 409, "conflict"),
    (ConfigError, 400, "bad_request"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (BackendError, 500, "backend_error"),
]
#: Codes of plain HTTP errors (unknown route, wrong method, ...).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by a route to answer with an error of its choosing."""

    def __init__(
        self, status: int, message: str, details: dict[str, Any] | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or HTTP_CODES.get(status, "error")
        self.details = details or {}


class JSON(Response):
    """JSON written by orjson (datetimes as RFC 3339, numbers as they are)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSON:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSON(body, status_code=status, headers=headers)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # A check of taskmill's own (models._rule) raised ValueError: its words, as the Python
    # API and the CLI say them, without pydantic's "Value error, " before them.
    errors = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "message": str(e.get("msg", "invalid")).removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error_response(
        422, "validation_error", f"invalid request: {summary}", {"errors": errors}
    )


async def _taskmill(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskmillError)
    status, code = next((s, c) for kind, s, c in STATUS if isinstance(exc, kind))
    if isinstance(exc, BackendError):
        log.error("backend error on %s %s: %s", request.method, request.url.path, exc)
        what = "is unavailable" if isinstance(exc, BackendUnavailable) else "refused the request"
        return error_response(status, code, f"the backend {what}; see the server log")
    details: dict[str, Any] = {}
    if isinstance(exc, UnknownTaskError):
        details = {"type": exc.name, "known": exc.known}
    elif isinstance(exc, JobStateError):
        details = {"status": exc.state}
    return error_response(status, code, str(exc), details)


async def _api(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(TaskmillError, _taskmill)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route, for OpenAPI: those every route may give, and more."""
    common = (400, 401, 403, 413, 422, 429, 503)
    return {status: {"model": ErrorOut} for status in sorted({*common, *statuses})}
