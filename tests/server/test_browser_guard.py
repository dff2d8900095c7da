"""Without API keys, the browser of the user is the only barrier between the server and any
web page they visit: a page may not change anything (a form post, a no-cors fetch), nor
reach the server under a name of its own that resolves to 127.0.0.1 (DNS rebinding)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from taskmill import App
from taskmill.server import create_app
from taskmill.server.guard import Role
from tests.conftest import free_port
from tests.server.conftest import ADMIN, APP, Process, error, tasks_app, wait_for

BASE = "http://127.0.0.1:8000"
PAUSE = "/api/v1/queues/default/pause"
#: What a page on another site makes the browser send with a form post to the server.
FORM = {
    "content-type": "application/x-www-form-urlencoded",
    "origin": "https://evil.example",
    "sec-fetch-site": "cross-site",
}


@pytest.fixture
async def memory_app() -> AsyncIterator[App]:
    app = tasks_app(f"memory://{uuid.uuid4().hex}")
    yield app
    await app.aclose()


def client(app: App, base: str = BASE, **options: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(create_app(app, **options))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=base)


async def paused(http: httpx.AsyncClient) -> bool:
    return bool((await http.get("/api/v1/queues/default")).json()["paused"])


async def test_a_page_of_another_site_changes_nothing(memory_app: App) -> None:
    await (await memory_app.backend()).configure_queue("default", {})
    async with client(memory_app, allowed_hosts=()) as http:
        error(await http.post(PAUSE, content=b"x=1", headers=FORM), 403, "cross_origin")
        # A no-cors fetch without a body: no content type, but the Origin gives it away.
        cross = {"origin": "https://evil.example"}
        error(await http.post(PAUSE, headers=cross), 403, "cross_origin")
        error(await http.post(PAUSE, headers={"sec-fetch-site": "same-site"}), 403, "cross_origin")
        # A form's types are not JSON, whatever the Origin: a browser never preflights them.
        plain = {"content-type": "text/plain"}
        refused = error(await http.post("/api/v1/schedules", content=b"{}", headers=plain), 415,
                        "unsupported_media_type")  # fmt: skip
        assert "application/json" in refused["message"]
        assert not await paused(http)
        # The server's own pages (same origin) and programs that are not browsers still can.
        own = {"origin": BASE, "sec-fetch-site": "same-origin"}
        assert (await http.post(PAUSE, headers=own)).status_code == 200
        assert (await http.post("/api/v1/queues/default/resume")).status_code == 200
        job = await http.post(
            "/api/v1/jobs", json={"type": "add", "args": [1, 2]}, headers={"origin": BASE}
        )
        assert job.status_code == 201, job.text


async def test_only_loopback_or_configured_host_names_are_served(memory_app: App) -> None:
    async with client(memory_app, allowed_hosts=("taskmill.lan", "other.lan:9000")) as http:
        for host in ("localhost:8000", "127.0.0.1:8000", "LOCALHOST:8000", "127.0.0.1"):
            assert (await http.get("/health", headers={"host": host})).status_code == 200, host
        for host in ("taskmill.lan", "taskmill.lan:1234", "other.lan:9000"):
            assert (await http.get("/api/v1/jobs", headers={"host": host})).status_code == 200
        # A name resolving to 127.0.0.1 (rebinding), a loopback name on another port, or
        # a configured name on a port not configured.
        for host in ("evil.example:8000", "localhost:9999", "other.lan:9001", ""):
            body = error(await http.get("/", headers={"host": host}), 400, "host_not_allowed")
            assert "TASKMILL_ALLOWED_HOSTS" in body["message"]
    async with client(memory_app, base="http://[::1]:8000", allowed_hosts=()) as http:
        assert (await http.get("/health")).status_code == 200
    async with client(memory_app, allowed_hosts=("*",)) as http:
        assert (await http.get("/health", headers={"host": "any.example"})).status_code == 200


async def test_with_keys_the_key_is_the_barrier(memory_app: App) -> None:
    async with client(memory_app, api_keys={ADMIN: Role.ADMIN}) as http:
        # A browser never sends the key on its own: a cross-site post with it is the
        # user's (or a script's) own, and any Host is served unless some are configured.
        headers = {"x-api-key": ADMIN, "origin": "https://elsewhere.example", "host": "a.b"}
        assert (await http.post(PAUSE, headers=headers)).status_code == 200


@pytest.mark.slow
def test_the_server_without_keys_refuses_foreign_hosts_and_origins(tmp_path: Path) -> None:
    env = {**os.environ, "TASKMILL_URL": f"sqlite:///{tmp_path / 'tm.db'}"}
    env.pop("TASKMILL_API_KEYS", None)
    env["TASKMILL_ALLOWED_HOSTS"] = "taskmill.lan"
    port = free_port()
    proc = Process([*APP, "server", "--port", str(port)], tmp_path, env, "server")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", proc)
        rebound = httpx.get(f"{base}/api/v1/jobs", headers={"host": f"evil.example:{port}"})
        assert rebound.status_code == 400, rebound.text
        assert httpx.get(f"{base}/api/v1/jobs", headers={"host": "taskmill.lan"}).is_success
        form = httpx.post(f"{base}{PAUSE}", content=b"a=1", headers=FORM)
        assert form.status_code == 403, form.text
        assert httpx.post(f"{base}{PAUSE}", headers={"origin": base}).status_code == 200
    finally:
        assert proc.stop() == 0, proc.log.read_text()
