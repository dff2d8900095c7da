"""schemathesis against /openapi.json: generated requests to every operation get no 5xx,
and every response fits the document (status, content type, body schema), for every way a
client comes: without keys configured (the loopback mode, Host checked as `taskmill
server` does), and with keys configured, as admin, read-only and without a key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from taskmill.server import create_app
from taskmill.server.guard import Role
from tests.server.conftest import ADMIN, READER, tasks_app

# The memory backend: what is tested is the API layer, and each request may come on an
# event loop of its own (the test client's), which costs the memory backend nothing.
# Generated requests to every operation: seconds in all.
pytestmark = pytest.mark.slow

# The Host schemathesis sends, served as TASKMILL_ALLOWED_HOSTS would make it.
open_api = create_app(tasks_app(f"memory://{uuid.uuid4().hex}"), allowed_hosts=("testserver",))
keyed_api = create_app(
    tasks_app(f"memory://{uuid.uuid4().hex}"),
    api_keys={ADMIN: Role.ADMIN, READER: Role.READ},
)
schema = schemathesis.openapi.from_asgi("/openapi.json", open_api)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_response_fits_the_document(case: Case[Any]) -> None:
    case.call_and_validate(checks=CHECKS)
    for key in (ADMIN, READER, None):
        headers = {"X-API-Key": key} if key else {}
        case.call_and_validate(app=keyed_api, headers=headers, checks=CHECKS)
