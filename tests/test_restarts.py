"""A restart of the server under a backend and under workers, for each backend on a server:
Redis (append-only, synced at every write) and PostgreSQL, each a private server that the
test stops and starts again on the same port and files."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskmill import App, JobState
from taskmill.backends import connect
from taskmill.errors import BackendError
from taskmill.job import Job
from tests import sample_tasks
from tests.conftest import (
    PostgresCluster,
    RedisServer,
    effects,
    free_port,
    start_taskmill,
    wait_until,
)

#: Each test starts a server of its own (initdb for PostgreSQL) and restarts it.
pytestmark = pytest.mark.slow


@dataclass
class Private:
    """A server of the test's own, which it may stop and start again."""

    server: RedisServer | PostgresCluster
    url: str
    #: How a BackendError names the server.
    named: str
    #: PostgreSQL's pool hands out each connection the restart broke once, which fails, and
    #: then replaces it; Redis's one connection is made again at the first call.
    pooled: bool


def private_redis(directory: Path) -> Iterator[Private]:
    server = RedisServer(directory, free_port(), "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    url = f"redis://127.0.0.1:{server.port}"
    yield Private(server, url, f"Redis {url}", pooled=False)
    server.stop()


def private_postgres() -> Iterator[Private]:
    # Not under tmp_path: a server started as root runs as postgres, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="taskmill-pg-"))
    cluster = PostgresCluster(root / "cluster")
    try:
        cluster.init()
        cluster.start()
        named = f"PostgreSQL postgresql://postgres@127.0.0.1:{cluster.port}"
        yield Private(cluster, cluster.url, named, pooled=True)
        cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["redis", "postgres"])
def private(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Private]:
    if request.param == "redis":
        yield from private_redis(tmp_path / "redis")
    else:
        yield from private_postgres()


async def test_errors_are_backend_errors_and_the_backend_reconnects(private: Private) -> None:
    backend = connect(private.url)
    await backend.open()
    try:
        (job,) = await backend.enqueue([Job(task="t")])
        private.server.stop()
        with pytest.raises(BackendError, match=re.escape(private.named)):
            await backend.get(job.id)
        private.server.start()  # same port, same files
        deadline = time.monotonic() + 20
        while True:
            try:
                stored = await backend.get(job.id)
                break
            except BackendError:
                assert private.pooled and time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert stored is not None and stored.state == JobState.PENDING
        assert [j.id for j in await backend.claim(["default"], "w1", 10, 30.0)] == [job.id]
    finally:
        await backend.close()


async def test_workers_ride_out_a_restart_of_the_server(
    private: Private, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    env = {**os.environ, "TASKMILL_URL": private.url}
    env |= {"TASKMILL_TEST_LOG": str(tmp_path / "effects.log"), "TASKMILL_LEASE": "10"}
    env |= {"TASKMILL_HEARTBEAT": "0.5", "TASKMILL_POLL_INTERVAL": "0.2"}
    app = App(private.url)
    count = 10_000
    handles = await app.aenqueue_many([sample_tasks.record.prepare(n) for n in range(count)])
    await app.aclose()
    for _ in range(2):
        start_taskmill(workers, env, "worker", "--concurrency", "16", "--burst")
    # The workers are other processes: the log of the jobs' effects is all there is to watch.
    await wait_until(lambda: effects(env).total() >= count // 5, "a fifth of the jobs ran", 60)
    private.server.stop()
    await asyncio.sleep(1.0)  # the workers see connection errors meanwhile
    private.server.start()
    for worker in workers:
        assert worker.wait(120) == 0  # burst: they exit once every job is done
    done = effects(env)
    app = App(private.url)
    backend = await app.backend()
    (queue,) = await backend.list_queues()
    assert set(done) == set(range(count))  # none lost
    assert queue.counts["succeeded"] == count
    for handle in handles[::97]:
        job = await backend.get(handle.id)
        assert job is not None and job.state == JobState.SUCCEEDED
    await app.aclose()
