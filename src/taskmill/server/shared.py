"""`Server`, what the routes share: create_app() keeps one in the ASGI app's state, and each
route gets it with `server_of(request)`. A module of its own so that the routers import it
from below the package that imports them."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from taskmill.app import App
from taskmill.backends import Backend
from taskmill.errors import UnknownTaskError
from taskmill.job import DEFAULT_QUEUE, Job, encode
from taskmill.metrics import MAX_QUEUES, JobMetrics
from taskmill.server.models import JobIn

#: Seconds the server trusts what it read of workers' tasks and queues' settings.
CACHE_TTL = 2.0
#: Queue settings that are job options, as the API names them -> as make_job takes them.
_QUEUE_DEFAULTS = {
    "max_retries": "max_retries",
    "retry_strategy": "retry",
    "retry_delay": "retry_delay",
    "max_retry_delay": "max_retry_delay",
}


class Server:
    """What the routes share: the app, its backend, caches and this process's metrics."""

    def __init__(self, app: App, max_queues: int = MAX_QUEUES) -> None:
        self.app = app
        #: Queues with metric series of their own (see metrics.py).
        self.max_queues = max_queues
        # Builds jobs of tasks only workers know: their arguments cannot be checked here.
        self.loose = App(settings=app.settings, clock=app.clock, strict=False)
        self.metrics = JobMetrics(max_queues)
        self._worker_tasks: tuple[float, frozenset[str]] = (-CACHE_TTL, frozenset())
        self._settings: tuple[float, dict[str, dict[str, Any]]] = (-CACHE_TTL, {})

    async def backend(self) -> Backend:
        return await self.app.backend()

    async def worker_tasks(self, *, fresh: bool = False) -> frozenset[str]:
        read_at, tasks = self._worker_tasks
        if fresh or time.monotonic() - read_at > CACHE_TTL:
            workers = await (await self.backend()).list_workers()
            tasks = frozenset(name for w in workers for name in w.tasks)
            self._worker_tasks = (time.monotonic(), tasks)
        return tasks

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        read_at, settings = self._settings
        if time.monotonic() - read_at > CACHE_TTL:
            settings = await (await self.backend()).queue_settings()
            self._settings = (time.monotonic(), settings)
        return settings

    def forget_settings(self) -> None:
        """A queue's settings changed here: read them again at the next submission."""
        self._settings = (-CACHE_TTL, {})

    async def build(self, body: JobIn) -> Job:
        """The job a request asks for: its options, else the task's, else its queue's."""
        task = self.app.tasks.get(body.type)
        if task is None and body.type not in await self.worker_tasks():
            # A worker that just started may know it: look again before refusing.
            known = await self.worker_tasks(fresh=True)
            if body.type not in known:
                raise UnknownTaskError(body.type, sorted(known | set(self.app.tasks)))
        options = body.options()
        defaults = task.defaults if task is not None else {}
        queue = options.get("queue") or defaults.get("queue") or DEFAULT_QUEUE
        stored = (await self.queue_settings()).get(queue, {})
        for setting, option in _QUEUE_DEFAULTS.items():
            if setting in stored and option not in defaults:
                options.setdefault(option, stored[setting])
        if body.metadata is not None:
            encode(body.metadata)  # one a backend cannot store is refused here, as a 422
        producer = self.app if task is not None else self.loose
        return producer.make_job(body.type, body.args, body.payload, **options)


def server_of(request: Request) -> Server:
    server: Server = request.app.state.taskmill
    return server
