"""Where the commands that read or change state get their records: the backend, or the REST
API (`--api URL`). Both give the same records (Job, QueueInfo, WorkerInfo), so that each
command prints them with one piece of code whichever way they came.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import click

from taskmill.app import App
from taskmill.backends import Backend, QueueInfo, WorkerInfo
from taskmill.cli.common import Config, run
from taskmill.job import AttemptError, Job, JobState, encode
from taskmill.retry import RetryPolicy

if TYPE_CHECKING:
    import httpx

#: Seconds one API request may take.
TIMEOUT = 30.0


class Source(Protocol):
    def enqueue(
        self,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        wait: float | None,
    ) -> Job:
        """Enqueue a job; with `wait`, wait up to that many seconds for it to finish, and
        return its last record."""
        ...

    def list_jobs(
        self,
        state: JobState | None,
        queue: str | None,
        task: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]: ...

    def get(self, job_id: str) -> Job: ...

    def cancel(self, job_id: str) -> Job: ...

    def retry(self, job_id: str) -> Job: ...

    def delete(self, job_id: str) -> None: ...

    def list_queues(self) -> list[QueueInfo]: ...

    def set_paused(self, name: str, paused: bool) -> QueueInfo: ...

    def requeue(self, ids: Sequence[str], queue: str | None, task: str | None) -> int:
        """Requeue the dead jobs matching every filter given: all of them if none is."""
        ...

    def purge(self, queue: str | None, task: str | None) -> int: ...

    def list_workers(self) -> list[WorkerInfo]: ...


def source_of(config: Config) -> Source:
    """Where the commands that read or change state go: the API if one is given (the
    server's app and backend are used then), else the backend."""
    api = config.api or os.environ.get("TASKMILL_API")
    if not api:
        return BackendSource(config.load())
    if config.url is not None or config.app is not None:
        raise click.UsageError("--api goes through the server, which has its own app and URL")
    source = ApiSource(api, config.api_key or os.environ.get("TASKMILL_API_KEY"))
    click.get_current_context().call_on_close(source.close)
    return source


class BackendSource:
    """Straight to the backend, one event loop per command."""

    def __init__(self, app: App) -> None:
        self.app = app

    def enqueue(
        self,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        wait: float | None,
    ) -> Job:
        async def work(app: App, backend: Backend) -> Job:
            job = (await app.aenqueue(task, args, kwargs, **options)).job
            if wait is None:
                return job
            return await backend.wait_finished(job.id, wait) or job

        return run(self.app, work)

    def list_jobs(
        self,
        state: JobState | None,
        queue: str | None,
        task: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        return run(
            self.app,
            lambda app, backend: backend.list_jobs(
                state=state, queue=queue, task=task, limit=limit, cursor=cursor
            ),
        )

    def get(self, job_id: str) -> Job:
        return run(self.app, lambda app, backend: app.aget(job_id))

    def cancel(self, job_id: str) -> Job:
        return run(self.app, lambda app, backend: app.acancel(job_id))

    def retry(self, job_id: str) -> Job:
        return run(self.app, lambda app, backend: app.aretry(job_id))

    def delete(self, job_id: str) -> None:
        run(self.app, lambda app, backend: app.adelete(job_id))

    def list_queues(self) -> list[QueueInfo]:
        return run(self.app, lambda app, backend: backend.list_queues())

    def set_paused(self, name: str, paused: bool) -> QueueInfo:
        async def work(app: App, backend: Backend) -> QueueInfo:
            await backend.set_paused(name, paused)
            infos = await backend.list_queues()
            return next((info for info in infos if info.name == name), QueueInfo(name))

        return run(self.app, work)

    def requeue(self, ids: Sequence[str], queue: str | None, task: str | None) -> int:
        return run(
            self.app, lambda app, backend: backend.requeue(ids=ids or None, queue=queue, task=task)
        )

    def purge(self, queue: str | None, task: str | None) -> int:
        return run(self.app, lambda app, backend: backend.purge(queue=queue, task=task))

    def list_workers(self) -> list[WorkerInfo]:
        return run(self.app, lambda app, backend: backend.list_workers())


class ApiSource:
    """Through the REST API of `taskmill server`; its errors end the command with the API's
    message."""

    def __init__(self, base: str, key: str | None) -> None:
        try:
            import httpx
        except ImportError:
            raise click.ClickException(
                "--api needs httpx: pip install 'taskmill[server]'"
            ) from None
        self.base = base.rstrip("/")
        headers = {"X-API-Key": key} if key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT)
        self.transport_error = httpx.TransportError

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **request: Any) -> Any:
        try:
            response = self.http.request(method, f"/api/v1{path}", **request)
        except self.transport_error as exc:
            raise click.ClickException(f"cannot reach the API at {self.base}: {exc}") from None
        if response.status_code >= 400:
            raise click.ClickException(_refusal(response))
        return None if response.status_code == 204 else response.json()

    def enqueue(
        self,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        wait: float | None,
    ) -> Job:
        body = {"type": task, "payload": kwargs, "args": args, **options}
        job = job_of(self._call("POST", "/jobs", json=body))
        if wait is None:
            return job
        deadline, interval = time.monotonic() + wait, 0.01
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
            interval = min(interval * 2, 0.2)
            job = self.get(job.id)
        return job

    def list_jobs(
        self,
        state: JobState | None,
        queue: str | None,
        task: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        params = {"queue": queue, "type": task, "limit": limit, "cursor": cursor}
        if state is JobState.DEAD:
            path = "/dlq"  # the dead-letter queue's own route, for keys limited to it
        else:
            path, params["status"] = "/jobs", None if state is None else state.value
        page = self._call("GET", path, params={k: v for k, v in params.items() if v is not None})
        return [job_of(record) for record in page["jobs"]], page["next_cursor"]

    def get(self, job_id: str) -> Job:
        return job_of(self._call("GET", f"/jobs/{_quote(job_id)}"))

    def cancel(self, job_id: str) -> Job:
        return job_of(self._call("POST", f"/jobs/{_quote(job_id)}/cancel"))

    def retry(self, job_id: str) -> Job:
        return job_of(self._call("POST", f"/jobs/{_quote(job_id)}/retry"))

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"/jobs/{_quote(job_id)}")

    def list_queues(self) -> list[QueueInfo]:
        return [queue_of(record) for record in self._call("GET", "/queues")]

    def set_paused(self, name: str, paused: bool) -> QueueInfo:
        action = "pause" if paused else "resume"
        return queue_of(self._call("POST", f"/queues/{_quote(name)}/{action}"))

    def requeue(self, ids: Sequence[str], queue: str | None, task: str | None) -> int:
        body: dict[str, Any] = {"ids": list(ids) or None, "queue": queue, "type": task}
        body["all"] = not any(body.values())
        count: int = self._call("POST", "/dlq/requeue", json=body)["count"]
        return count

    def purge(self, queue: str | None, task: str | None) -> int:
        count: int = self._call("POST", "/dlq/purge", json={"queue": queue, "type": task})["count"]
        return count

    def list_workers(self) -> list[WorkerInfo]:
        return [worker_of(record) for record in self._call("GET", "/workers")]


def _refusal(response: httpx.Response) -> str:
    """The API's own message of an error response, else its status line."""
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase or "no message"
    return f"the API answered {response.status_code}: {message}"


def _quote(part: str) -> str:
    return quote(part, safe="")


# -- API records back into taskmill's own -----------------------------------------------------


def _seconds(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def job_of(record: dict[str, Any]) -> Job:
    return Job(
        task=record["type"],
        payload=encode({"args": record["args"], "kwargs": record["payload"]}),
        id=record["id"],
        queue=record["queue"],
        priority=record["priority"],
        state=JobState(record["status"]),
        max_retries=record["max_retries"],
        retry=RetryPolicy.from_dict(record["retry"]),
        timeout=record["timeout"],
        result_ttl=record["result_ttl"],
        expires_at=_seconds(record["expires_at"]),
        metadata=record["metadata"],
        created_at=_seconds(record["created_at"]) or 0.0,
        run_at=_seconds(record["scheduled_at"]) or 0.0,
        started_at=_seconds(record["started_at"]),
        finished_at=_seconds(record["finished_at"]),
        attempts=record["attempts"],
        errors=[
            AttemptError.from_dict({**error, "at": _seconds(error["at"]) or 0.0})
            for error in record["errors"]
        ],
        worker=record["worker"],
        result=record["result"],
        progress=record["progress"],
        cancel_requested=record["cancel_requested"],
    )


_SETTINGS = (
    "weight", "concurrency", "max_retries", "retry_strategy", "retry_delay", "max_retry_delay"
)  # fmt: skip


def queue_of(record: dict[str, Any]) -> QueueInfo:
    age = record["oldest_pending_age"]
    settings = {name: record[name] for name in _SETTINGS}
    return QueueInfo(
        name=record["name"],
        paused=record["paused"],
        counts=record["counts"],
        # The API gives the age: the time is as exact as the two clocks agree.
        oldest_pending=None if age is None else time.time() - age,
        ready_by_priority={int(p): n for p, n in record["ready_by_priority"].items()},
        finished_recently=record["throughput_per_minute"],
        settings={name: value for name, value in settings.items() if value is not None},
    )


def worker_of(record: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(
        id=record["id"],
        host=record["host"],
        pid=record["pid"],
        queues=record["queues"],
        concurrency=record["concurrency"],
        tasks=record["tasks"],
        started_at=_seconds(record["started_at"]) or 0.0,
        last_seen=_seconds(record["last_heartbeat"]) or 0.0,
        running=record["running"],
    )
