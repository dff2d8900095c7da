"""The server and a worker as real processes, over real HTTP: auth, limits, metrics."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer, free_port, fresh_redis
from tests.server.conftest import ADMIN, APP, READER, Process, wait_for


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The server's backend URL: SQLite unless a test asks for another (`on_every_backend`)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "redis":
        return fresh_redis(request.getfixturevalue("redis_server"))
    if kind == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'taskmill.db'}"


#: For the tests whose outcome depends on the backend; the others run on SQLite alone,
#: which keeps the module's wall time modest.
on_every_backend = pytest.mark.parametrize("store", ["sqlite", "redis", "postgres"], indirect=True)


@pytest.fixture
def env(store: str) -> dict[str, str]:
    return {
        **os.environ,
        "TASKMILL_URL": store,
        "TASKMILL_API_KEYS": f"{ADMIN}:admin,{READER}:read",
        "TASKMILL_LOG_LEVEL": "info",
    }


@contextlib.contextmanager
def running_server(cwd: Path, env: dict[str, str], *options: str) -> Iterator[str]:
    """`taskmill server` on a free port, once it answers; it must stop cleanly, and its log
    hold no traceback."""
    port = free_port()
    proc = Process([*APP, "server", "--port", str(port), *options], cwd, env, "server")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", proc)
        yield base
    finally:
        assert proc.stop() == 0, proc.log.read_text()
    assert "Traceback" not in proc.log.read_text()


@pytest.fixture
def server(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    with running_server(tmp_path, env, "--rate-limit", "20", "--max-body", "4096") as base:
        yield base


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by(task: str) -> tuple[tuple[str, str], ...]:
    return (("queue", "default"), ("task", task))


@pytest.mark.slow
@on_every_backend
def test_jobs_run_by_a_worker_and_the_metrics_count_them(
    server: str, tmp_path: Path, env: dict[str, str]
) -> None:
    with client(server, {"X-API-Key": ADMIN}) as admin:
        run_and_count(admin, tmp_path, env)


def client(base: str, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=base, headers=headers, timeout=10)


def run_and_count(admin: httpx.Client, tmp_path: Path, env: dict[str, str]) -> None:
    jobs: list[dict[str, Any]] = [
        {"type": "echo", "payload": {"message": str(i)}} for i in range(5)
    ] + [
        {
            "type": "flaky",
            "payload": {"fail_times": 1},
            "retry_strategy": "fixed",
            "retry_delay": 0,
        },
        {"type": "math", "payload": {"operation": "nope", "a": 1, "b": 2}},
    ]
    response = admin.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    port = free_port()
    worker = Process([*APP, "worker", "--metrics-port", str(port)], tmp_path, env, "worker")
    try:
        wait_for(f"http://127.0.0.1:{port}/metrics", worker)
        deadline = time.monotonic() + 30
        while admin.get("/api/v1/stats").json()["throughput_per_minute"] < 7:
            assert time.monotonic() < deadline, worker.log.read_text()
            time.sleep(0.05)
        ran = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        served = samples(admin.get("/metrics").text)
    finally:
        assert worker.stop() == 0
    assert ran[("taskmill_jobs_started_total", by("echo"))] == 5
    assert ran[("taskmill_jobs_succeeded_total", by("echo"))] == 5
    assert ran[("taskmill_jobs_started_total", by("flaky"))] == 2
    assert ran[("taskmill_jobs_failed_total", by("flaky"))] == 1
    assert ran[("taskmill_jobs_retried_total", by("flaky"))] == 1
    assert ran[("taskmill_jobs_succeeded_total", by("flaky"))] == 1
    assert ran[("taskmill_jobs_dead_total", by("math"))] == 1
    assert ran[("taskmill_job_run_seconds_count", by("echo"))] == 5
    assert ran[("taskmill_job_wait_seconds_count", by("flaky"))] == 2
    assert ran[("taskmill_worker_running_jobs", ())] == 0
    assert served[("taskmill_jobs_enqueued_total", by("echo"))] == 5
    assert served[("taskmill_queue_jobs", (("queue", "default"), ("state", "succeeded")))] == 6
    assert served[("taskmill_queue_jobs", (("queue", "default"), ("state", "dead")))] == 1
    assert served[("taskmill_workers_live", ())] == 1
    assert served[("taskmill_jobs_running", (("queue", "default"),))] == 0
    # The worker's log: JSON lines, each failure with its job's context bound.
    events = [line for line in worker.log.read_text().splitlines() if '"flaky"' in line]
    assert events and all(
        '"job_id"' in e and '"attempt":1' in e and '"worker"' in e for e in events
    )


@pytest.mark.slow
def test_keys_roles_limits_and_errors(server: str) -> None:
    with (
        client(server) as anonymous,
        client(server, {"Authorization": f"Bearer {READER}"}) as reader,
        client(server, {"X-API-Key": ADMIN}) as admin,
    ):
        check_keys_and_limits(server, anonymous, reader, admin)


def check_keys_and_limits(
    server: str, anonymous: httpx.Client, reader: httpx.Client, admin: httpx.Client
) -> None:
    paths = admin.get("/openapi.json").json()["paths"]
    # Without a key, nothing answers but the probes: every route of the API, the document,
    # the docs page and paths that do not exist.
    for path, methods in paths.items():
        concrete = path.replace("{job_id}", "some-id").replace("{name}", "default")
        for method in methods:
            response = anonymous.request(method.upper(), concrete)
            expected = 200 if path in ("/health", "/ready") else 401
            assert response.status_code == expected, (method, path, response.text)
    for path in ("/openapi.json", "/docs", "/nowhere"):
        assert anonymous.get(path).status_code == 401
    wrong = httpx.get(f"{server}/api/v1/jobs", headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    # A read-only key reads, and changes nothing.
    assert reader.get("/api/v1/jobs").status_code == 200
    assert reader.get("/docs").status_code == 200
    refused = reader.post("/api/v1/jobs", json={"type": "echo", "payload": {"message": "x"}})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert reader.post("/api/v1/queues/default/pause").status_code == 403
    assert reader.delete("/api/v1/jobs/x").status_code == 403
    # Bodies over the limit are refused whole, declared or chunked.
    big = {"type": "echo", "payload": {"message": "x" * 5000}}
    too_large = admin.post("/api/v1/jobs", json=big)
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
    chunks = iter([b'{"type": "echo", "payload": {"message": "', b"x" * 5000, b'"}}'])
    chunked = admin.post(
        "/api/v1/jobs", content=chunks, headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    # 20 submissions a second per key: a burst past that is told when to come back.
    statuses = [
        admin.post("/api/v1/jobs", json={"type": "echo", "payload": {"message": "x"}})
        for _ in range(30)
    ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and all(r.status_code == 201 for r in statuses[:15])
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    assert reader.get("/api/v1/jobs").status_code == 200  # reads are not limited


@pytest.mark.slow
def test_without_keys_the_server_serves_loopback_only(tmp_path: Path, env: dict[str, str]) -> None:
    del env["TASKMILL_API_KEYS"]
    refused = Process([*APP, "server", "--host", "0.0.0.0", "--port", "0"], tmp_path, env, "open")
    assert refused.proc.wait(30) == 2  # bad usage
    assert "binds to loopback only" in refused.log.read_text()
    port = free_port()
    local = Process([*APP, "server", "--port", str(port)], tmp_path, env, "local")
    try:
        wait_for(f"http://127.0.0.1:{port}/health", local)
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/jobs",
            json={"type": "echo", "payload": {"message": "hi"}},
        )
        assert response.status_code == 201
    finally:
        assert local.stop() == 0
    assert "serving on loopback only, without auth" in local.log.read_text()


@pytest.mark.slow
def test_ready_answers_503_while_the_backend_is_down(tmp_path: Path, env: dict[str, str]) -> None:
    redis = RedisServer(tmp_path / "redis", free_port(), "--appendonly", "no")
    redis.start()
    env["TASKMILL_URL"] = f"redis://127.0.0.1:{redis.port}"
    port = free_port()
    proc = Process([*APP, "server", "--port", str(port)], tmp_path, env, "server")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ready", proc)
        redis.stop()
        down = httpx.get(f"{base}/ready", timeout=30)
        assert down.status_code == 503, down.text
        assert down.json()["error"] == {
            "code": "backend_unavailable",
            "message": "the backend is unavailable; see the server log",
            "details": {},
        }
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        redis.start()  # the same port: the server finds its backend again
        assert httpx.get(f"{base}/ready", timeout=30).status_code == 200
    finally:
        redis.stop()
        assert proc.stop() == 0, proc.log.read_text()
