"""Example tasks: what `taskmill demo` runs, and a starting point for your own.

Run a worker for them with `taskmill worker --app taskmill.examples:app`, then enqueue one:
`taskmill --app taskmill.examples:app enqueue echo --payload '{"message": "hi"}' --wait 10`.
"""

from __future__ import annotations

import asyncio
import operator
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from taskmill import App, Job, PermanentError, current_job

#: The backend comes from TASKMILL_URL (default sqlite:///taskmill.db).
app = App()

_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
}

#: call_webhook keeps at most this many characters of the response body in the result.
MAX_BODY = 2000


@app.task(name="echo")
def echo(message: str) -> str:
    return message


@app.task(name="math")
def math(operation: str, a: float, b: float) -> float:
    """Division by zero raises ZeroDivisionError, which is retried like any other error."""
    try:
        apply = _OPERATIONS[operation]
    except KeyError:
        # No retry can make an unknown operation known: fail at once, into the DLQ.
        raise PermanentError(
            f"unknown operation {operation!r}; use {', '.join(_OPERATIONS)}"
        ) from None
    return float(apply(a, b))


@app.task(name="sleep")
async def sleep(seconds: float) -> float:
    """Sleep without blocking the worker, reporting progress about ten times a second."""
    job = current_job()
    loop = asyncio.get_running_loop()
    start = loop.time()
    while (elapsed := loop.time() - start) < seconds:
        job.progress(elapsed / seconds)
        await asyncio.sleep(min(0.1, seconds - elapsed))
    job.progress(1.0)
    return seconds


@app.task(name="flaky")
def flaky(fail_times: int) -> str:
    """Fail the first `fail_times` attempts, then succeed: retries at work."""
    attempt = current_job().attempt
    if attempt <= fail_times:
        raise RuntimeError(f"failing on purpose: attempt {attempt} of {fail_times} to fail")
    return f"succeeded on attempt {attempt}"


@app.task(name="call_webhook", max_retries=5, retry_delay=2.0)
def call_webhook(
    url: str, method: str = "POST", body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send `body` as JSON to `url`; returns the response's status and (truncated) text.

    A sync handler runs in the worker's thread pool, where a job timeout cannot interrupt
    it: the request's own timeout (for connecting, and for each read) is what bounds it.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        # urllib also opens file:// and ftp:// URLs, which a webhook must never reach.
        raise PermanentError(f"not an http(s) URL: {url!r}")
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method.upper())
    request.add_header("User-Agent", "taskmill-example")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
            # Up to four bytes a character in UTF-8: enough bytes for MAX_BODY characters.
            text = response.read(MAX_BODY * 4).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response, body unread
        if exc.code == 429 or exc.code >= 500:
            raise  # the receiver may recover: retry with backoff
        raise PermanentError(f"{method.upper()} {url} answered {exc.code} {exc.reason}") from None
    return {"status": status, "body": text[:MAX_BODY]}


def demo_jobs() -> list[Job]:
    """The mix of jobs `taskmill demo` enqueues (with `app.enqueue_many`)."""
    jobs = [
        echo.prepare("hello from taskmill"),
        math.prepare("add", 2, 3),
        math.prepare("pow", 2, 10),
        # ZeroDivisionError is retried: two quick retries, then the dead-letter queue.
        math.options(max_retries=2, retry="fixed", retry_delay=0.5).prepare("div", 1, 0),
        # PermanentError skips the retries: dead at the first attempt.
        math.prepare("mod", 7, 2),
        sleep.prepare(3.0),
        flaky.options(retry="fixed", retry_delay=0.5).prepare(2),
        echo.options(delay=2.0).prepare("delayed by two seconds"),
    ]
    # More one-second jobs than the demo worker has slots: the higher priorities run first.
    for priority in ("low", "low", "medium", "medium", "high", "high", "critical", "critical"):
        jobs.append(sleep.options(priority=priority).prepare(1.0))
    return jobs
