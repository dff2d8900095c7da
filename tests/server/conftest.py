"""An App with a few tasks, its API as an ASGI app, and an httpx client over it; the server
and workers as subprocesses."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmill import App, PermanentError, Worker
from taskmill.server import create_app
from tests.conftest import fast_settings


def tasks_app(url: str) -> App:
    app = App(settings=fast_settings(url))

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="refuse", max_retries=0)
    def refuse(reason: str) -> None:
        raise PermanentError(reason)

    @app.task(name="nap")
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return app


@pytest.fixture
async def taskapp(url: str) -> AsyncIterator[App]:
    app = tasks_app(url)
    yield app
    await app.aclose()


@pytest.fixture
async def client(taskapp: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_app(taskapp))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


async def drain(app: App, queues: tuple[str, ...] = ("default",)) -> None:
    """Run every due job of `queues` to its end, in this process."""
    await Worker(app, queues, burst=True, concurrency=4).run()


async def poll(client: httpx.AsyncClient, path: str, done: Callable[[Any], bool]) -> Any:
    """GET `path` until `done` says yes of its body (for at most 20 s)."""
    for _ in range(1000):
        body = (await client.get(path)).json()
        if done(body):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got there: {body}")


def created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code and isinstance(body["details"], dict)
    assert "Traceback" not in response.text
    return body


# -- real processes ------------------------------------------------------------------------

TASKMILL = str(Path(sys.executable).with_name("taskmill"))
APP = ["--app", "taskmill.examples:app"]
ADMIN, READER = "admin-key-1", "read-key-1"


class Process:
    """A taskmill subprocess, its log in a file; stopped with SIGTERM (SIGKILL if stuck)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.log = cwd / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [TASKMILL, *args], cwd=cwd, stdout=out, stderr=out, env=env
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def wait_for(url: str, proc: Process, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.proc.poll() is None, proc.log.read_text()
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered: {proc.log.read_text()}"
        time.sleep(0.05)
