"""Every example task, run by a real Worker on the memory backend."""

from __future__ import annotations

import asyncio
import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from taskmill import App, JobHandle, JobState, Worker, examples
from tests.conftest import fast_settings


@pytest.fixture
async def app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    """examples.app on a store of its own, with timings short enough for a test."""
    monkeypatch.setattr(examples.app, "settings", fast_settings(f"memory://{uuid.uuid4().hex}"))
    yield examples.app
    await examples.app.aclose()


async def finished(app: App, handle: JobHandle[Any]) -> JobHandle[Any]:
    """Run a burst worker (it stops once nothing is due) and refresh the job's record."""
    await Worker(app, concurrency=4, burst=True).run()
    assert (await handle.arefresh()).state.finished, handle.job.state
    return handle


async def test_echo_returns_its_message(app: App) -> None:
    handle = await finished(app, await examples.echo.aenqueue("hello"))
    assert await handle.aresult(1) == "hello"


@pytest.mark.parametrize(
    ("operation", "expected"),
    [("add", 5.0), ("sub", -1.0), ("mul", 6.0), ("div", 2 / 3), ("pow", 8.0)],
)
async def test_math_operations(app: App, operation: str, expected: float) -> None:
    handle = await finished(app, await examples.math.aenqueue(operation, 2, 3))
    assert await handle.aresult(1) == pytest.approx(expected)


async def test_math_unknown_operation_fails_at_once(app: App) -> None:
    handle = await finished(app, await examples.math.aenqueue("mod", 7, 2))
    assert handle.job.state == JobState.DEAD
    assert handle.job.attempts == 1
    assert "PermanentError: unknown operation 'mod'" in (handle.job.error or "")


async def test_math_division_by_zero_is_retried_into_the_dlq(app: App) -> None:
    quick = examples.math.options(max_retries=2, retry="fixed", retry_delay=0)
    handle = await finished(app, await quick.aenqueue("div", 1, 0))
    assert handle.job.state == JobState.DEAD
    assert [error.attempt for error in handle.job.errors] == [1, 2, 3]
    assert all("ZeroDivisionError" in error.error for error in handle.job.errors)


async def test_flaky_succeeds_after_its_failures(app: App) -> None:
    handle = await finished(app, await examples.flaky.options(retry_delay=0).aenqueue(2))
    assert await handle.aresult(1) == "succeeded on attempt 3"
    assert len(handle.job.errors) == 2


async def test_flaky_failing_more_than_the_retries_ends_dead(app: App) -> None:
    stubborn = examples.flaky.options(max_retries=1, retry_delay=0)
    handle = await finished(app, await stubborn.aenqueue(5))
    assert handle.job.state == JobState.DEAD
    assert handle.job.attempts == 2


async def test_sleep_reports_progress_while_it_runs(app: App) -> None:
    handle = await examples.sleep.aenqueue(0.6)
    worker = asyncio.create_task(Worker(app, burst=True).run())
    seen: set[float] = set()
    while not worker.done():
        job = await handle.arefresh()
        if job.state == JobState.RUNNING and job.progress is not None:
            seen.add(job.progress)
        await asyncio.sleep(0.02)
    await worker
    assert await handle.aresult(1) == 0.6
    assert any(0 < progress < 1 for progress in seen), seen


# -- call_webhook against a server on 127.0.0.1 ---------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    """Answers POST and GET: /status/N with status N, /big with a long body, else it echoes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_GET(self) -> None:
        self.reply()

    def do_POST(self) -> None:
        self.reply()

    def reply(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = {
            "method": self.command,
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "body": orjson.loads(body) if body else None,
        }
        self.server.requests.append(request)
        status, answer = 200, orjson.dumps(request)
        if self.path.startswith("/status/"):
            status = int(self.path.removeprefix("/status/"))
        elif self.path == "/big":
            answer = b"x" * 5000
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


async def test_call_webhook_posts_json_and_returns_the_response(
    app: App, receiver: Receiver
) -> None:
    body = {"event": "signup", "user": 42}
    handle = await finished(
        app, await examples.call_webhook.aenqueue(receiver.url + "/hook", body=body)
    )
    result = await handle.aresult(1)
    assert result["status"] == 200
    assert orjson.loads(result["body"]) == {
        "method": "POST",
        "path": "/hook",
        "content_type": "application/json",
        "body": body,
    }


async def test_call_webhook_without_body_and_other_method(app: App, receiver: Receiver) -> None:
    handle = await finished(app, await examples.call_webhook.aenqueue(receiver.url, method="get"))
    result = await handle.aresult(1)
    assert result["status"] == 200
    assert receiver.requests == [{"method": "GET", "path": "/", "content_type": None, "body": None}]


async def test_call_webhook_truncates_long_bodies(app: App, receiver: Receiver) -> None:
    handle = await finished(app, await examples.call_webhook.aenqueue(receiver.url + "/big"))
    assert (await handle.aresult(1))["body"] == "x" * examples.MAX_BODY


async def test_call_webhook_client_error_is_permanent(app: App, receiver: Receiver) -> None:
    handle = await finished(app, await examples.call_webhook.aenqueue(receiver.url + "/status/404"))
    assert handle.job.state == JobState.DEAD
    assert handle.job.attempts == 1
    assert "answered 404" in (handle.job.error or "")


async def test_call_webhook_server_error_is_retried(app: App, receiver: Receiver) -> None:
    webhook = examples.call_webhook.options(max_retries=1, retry_delay=0)
    handle = await finished(app, await webhook.aenqueue(receiver.url + "/status/503"))
    assert handle.job.state == JobState.DEAD
    assert handle.job.attempts == 2
    assert len(receiver.requests) == 2
    assert "HTTP Error 503" in (handle.job.error or "")


async def test_call_webhook_refuses_other_schemes(app: App) -> None:
    handle = await finished(app, await examples.call_webhook.aenqueue("file:///etc/passwd"))
    assert handle.job.state == JobState.DEAD
    assert "not an http(s) URL" in (handle.job.error or "")
