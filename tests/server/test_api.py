"""Every endpoint through the ASGI app, over SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskmill import App, Worker
from taskmill.backends import WorkerInfo
from taskmill.errors import JobError
from tests.server.conftest import created, drain, error, poll

pytestmark = pytest.mark.parametrize("url", ["sqlite", "redis", "postgres"], indirect=True)
JOBS = "/api/v1/jobs"
JSON_TYPE = {"content-type": "application/json"}


async def test_a_job_with_every_option_and_its_full_record(client: httpx.AsyncClient) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    job = created(await client.post(JOBS, json={
        "type": "add", "payload": {"b": 2}, "args": [1], "queue": "maths", "priority": "high",
        "max_retries": 7, "retry_strategy": "linear", "retry_delay": "250ms",
        "max_retry_delay": 60, "timeout": "5m", "scheduled_at": at.isoformat(), "ttl": "2h",
        "result_ttl": "1d", "id": "job-1", "metadata": {"by": "test"},
    }))  # fmt: skip
    assert (job["id"], job["type"], job["queue"], job["status"]) == (
        "job-1", "add", "maths", "scheduled"
    )  # fmt: skip
    assert (job["args"], job["payload"], job["priority"]) == ([1], {"b": 2}, 2)
    assert job["retry"]["strategy"] == "linear" and job["retry"]["delay"] == 0.25
    assert (job["max_retries"], job["retry"]["max_delay"], job["timeout"]) == (7, 60, 300)
    assert (job["result_ttl"], job["metadata"]) == (86400, {"by": "test"})
    assert datetime.fromisoformat(job["scheduled_at"]) == at.replace(microsecond=job_us(job))
    assert datetime.fromisoformat(job["expires_at"]) > datetime.now(UTC) + timedelta(hours=1.9)
    full = (await client.get(f"{JOBS}/job-1")).json()
    assert full == job
    assert set(full) >= {"attempts", "errors", "result", "progress", "started_at", "worker"}
    again = created(await client.post(JOBS, json={"type": "add", "args": [5, 5], "id": "job-1"}))
    assert again["args"] == [1]  # an id submitted again returns the job it names
    delayed = created(await client.post(JOBS, json={"type": "add", "args": [1, 1], "delay": 30}))
    assert delayed["status"] == "scheduled" and delayed["priority"] == 1


def job_us(job: dict[str, object]) -> int:
    return datetime.fromisoformat(str(job["scheduled_at"])).microsecond


async def test_batch_list_filters_and_cursor_pages(client: httpx.AsyncClient) -> None:
    items = [{"type": "add", "args": [i, i], "queue": f"q{i % 2}"} for i in range(5)]
    batch = created(await client.post(f"{JOBS}/batch", json={"jobs": items}))["jobs"]
    assert [job["args"][0] for job in batch] == [0, 1, 2, 3, 4]
    pages, cursor = [], None
    while True:
        page = (
            await client.get(JOBS, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        pages.append([job["args"][0] for job in page["jobs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[4, 3], [2, 1], [0]]
    q0 = (await client.get(JOBS, params={"queue": "q0", "type": "add", "status": "pending"})).json()
    assert [job["args"][0] for job in q0["jobs"]] == [4, 2, 0]
    assert (await client.get(JOBS, params={"status": "dead"})).json()["jobs"] == []
    bad = [{"type": "add", "args": [1, 1]}, {"type": "add", "priority": "urgent"}]
    body = error(await client.post(f"{JOBS}/batch", json={"jobs": bad}), 422, "validation_error")
    assert body["details"]["errors"][0]["field"].startswith("body.jobs.1.priority")
    assert len((await client.get(JOBS)).json()["jobs"]) == 5  # nothing of the bad batch stored


async def test_run_cancel_retry_and_delete(client: httpx.AsyncClient, taskapp: App) -> None:
    added = created(await client.post(JOBS, json={"type": "add", "args": [2, 3]}))
    refused = created(await client.post(JOBS, json={"type": "refuse", "payload": {"reason": "no"}}))
    await drain(taskapp)
    done = (await client.get(f"{JOBS}/{added['id']}")).json()
    assert (done["status"], done["result"], done["attempts"]) == ("succeeded", 5, 1)
    assert done["worker"] and done["started_at"] and done["finished_at"]
    dead = (await client.get(f"{JOBS}/{refused['id']}")).json()
    assert dead["status"] == "dead" and dead["errors"][0]["error"] == "PermanentError: no"
    retried = (await client.post(f"{JOBS}/{refused['id']}/retry")).json()
    assert (retried["status"], retried["attempts"], len(retried["errors"])) == ("pending", 0, 1)
    body = error(await client.post(f"{JOBS}/{added['id']}/retry"), 409, "conflict")
    assert body["details"] == {"status": "succeeded"}
    cancelled = (await client.post(f"{JOBS}/{refused['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled"
    assert (await client.delete(f"{JOBS}/{refused['id']}")).status_code == 204
    error(await client.get(f"{JOBS}/{refused['id']}"), 404, "not_found")
    for method in ("GET", "DELETE"):
        error(await client.request(method, f"{JOBS}/missing"), 404, "not_found")
    for action in ("cancel", "retry"):
        error(await client.post(f"{JOBS}/missing/{action}"), 404, "not_found")


async def test_a_running_job_is_cancelled_by_its_worker_and_not_deleted(
    client: httpx.AsyncClient, taskapp: App
) -> None:
    job = created(await client.post(JOBS, json={"type": "nap", "args": [30]}))
    worker = Worker(taskapp, concurrency=1)
    running = asyncio.create_task(worker.run())
    await poll(client, f"{JOBS}/{job['id']}", lambda job: job["status"] == "running")
    error(await client.delete(f"{JOBS}/{job['id']}"), 409, "conflict")
    asked = (await client.post(f"{JOBS}/{job['id']}/cancel")).json()
    assert asked["status"] == "running" and asked["cancel_requested"]
    await poll(client, f"{JOBS}/{job['id']}", lambda job: job["status"] == "cancelled")
    worker.stop()
    await running


async def test_bad_input_is_refused_naming_what_is_wrong(client: httpx.AsyncClient) -> None:
    body = error(await client.post(JOBS, json={"type": "nope"}), 422, "unknown_task")
    assert body["details"] == {"type": "nope", "known": ["add", "nap", "refuse"]}
    assert "add, nap, refuse" in body["message"]
    body = error(
        await client.post(JOBS, json={"type": "add", "args": [1]}), 422, "invalid_arguments"
    )
    assert "add" in body["message"]
    for field, value in [
        ("priority", "urgent"), ("priority", 101), ("timeout", "5 parsecs"), ("timeout", -1),
        ("scheduled_at", "2030-01-01T00:00:00"), ("queue", "no spaces"), ("colour", "red"),
        ("max_retries", -1), ("delay", "99999d"), ("payload", [1]),
    ]:  # fmt: skip
        response = await client.post(JOBS, json={"type": "add", "args": [1, 2], field: value})
        body = error(response, 422, "validation_error")
        assert body["details"]["errors"][0]["field"].startswith(f"body.{field}"), body
        assert field in body["message"]
    error(
        await client.post(JOBS, content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    error(await client.get(JOBS, params={"cursor": "not-a-cursor"}), 400, "bad_request")
    error(await client.get(JOBS, params={"status": "lost"}), 422, "validation_error")
    error(await client.get("/api/v1/nothing-here"), 404, "not_found")
    error(await client.put(JOBS), 405, "method_not_allowed")


async def test_numbers_json_cannot_carry_and_deep_nesting_are_refused_and_listings_work(
    client: httpx.AsyncClient,
) -> None:
    """Issue 17, finding 5: NaN, Infinity and 1e999 were stored as null; a payload nested
    about 252 deep was stored, and then GET /api/v1/jobs answered 500."""
    deep = "[" * 252 + "1" + "]" * 252
    for field, text in [
        ("args", '"args": [NaN, 1]'), ("args", '"args": [1, -Infinity]'),
        ("payload", '"payload": {"a": 1e999, "b": 1}'), ("metadata", '"metadata": {"m": NaN}'),
        ("args", f'"args": [{deep}, 1]'), ("payload", f'"payload": {{"a": {deep}}}'),
        ("metadata", f'"metadata": {{"m": {deep}}}'),
    ]:  # fmt: skip
        content = f'{{"type": "add", {text}}}'.encode()
        response = await client.post(JOBS, content=content, headers=JSON_TYPE)
        body = error(response, 422, "validation_error")
        assert body["details"]["errors"][0]["field"] == f"body.{field}", body
        assert body["message"].startswith(f"invalid request: body.{field}: {field}: "), body
    assert (await client.get(JOBS)).json()["jobs"] == []


async def test_ids_with_a_slash_or_control_characters_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """Issue 17, finding 5: a job id with '/' was stored, then unreachable (404)."""
    for job_id in ["a/b", "nul\x00", "..", "x" * 256]:
        response = await client.post(JOBS, json={"type": "add", "args": [1, 2], "id": job_id})
        body = error(response, 422, "validation_error")
        assert body["message"].startswith("invalid request: body.id: id: must be"), body
    job = created(await client.post(JOBS, json={"type": "add", "args": [1, 2], "id": "a:b c%"}))
    assert (await client.get(f"{JOBS}/a:b%20c%25")).json()["id"] == job["id"] == "a:b c%"
    error(await client.get(f"{JOBS}/nul%00"), 422, "validation_error")
    error(await client.get(JOBS, params={"type": "a\x00"}), 422, "validation_error")


async def test_options_out_of_range_are_refused_as_the_python_api_refuses_them(
    client: httpx.AsyncClient, taskapp: App
) -> None:
    """Issue 17, finding 9, through the API: the same rule, in the same words."""
    for field, value in [
        ("timeout", 0), ("timeout", "0s"), ("max_retries", 10**9), ("delay", 1e20),
        ("type", "x" * 100_000), ("type", "a/b"), ("scheduled_at", "1960-01-01T00:00:00Z"),
        ("ttl", "99999d"),
    ]:  # fmt: skip
        response = await client.post(JOBS, json={"type": "add", "args": [1, 2], field: value})
        message = error(response, 422, "validation_error")["message"]
        option = {"type": "task", "scheduled_at": "scheduled_at"}.get(field, field)
        assert message.startswith(f"invalid request: body.{field}: {option}: "), message
        if field not in ("type", "scheduled_at"):
            options: dict[str, Any] = {field: value}
            with pytest.raises(JobError) as refused:
                taskapp.make_job("add", [1, 2], **options)
            # The same words, but for the value as written back (0 came as 0.0).
            assert str(refused.value).partition(" got ")[0] in message
    assert (await client.get(JOBS)).json()["jobs"] == []


async def test_a_task_only_a_live_worker_knows_is_accepted(
    client: httpx.AsyncClient, taskapp: App
) -> None:
    info = WorkerInfo("w-remote", "elsewhere", 1, ["default"], 1, ["billing.charge"], time.time())
    await (await taskapp.backend()).heartbeat(info, {}, 30.0, {})
    job = created(await client.post(JOBS, json={"type": "billing.charge", "payload": {"x": 1}}))
    assert job["type"] == "billing.charge"
    body = error(await client.post(JOBS, json={"type": "nope"}), 422, "unknown_task")
    assert body["details"]["known"] == ["add", "billing.charge", "nap", "refuse"]


async def test_queues_settings_pause_stats_and_delete(
    client: httpx.AsyncClient, taskapp: App
) -> None:
    queues = "/api/v1/queues"
    settings = {"weight": 3, "concurrency": 2, "max_retries": 9, "retry_strategy": "fixed",
                "retry_delay": "2s", "max_retry_delay": "1m"}  # fmt: skip
    queue = created(await client.post(queues, json={"name": "mail", **settings}))
    assert queue["retry_delay"] == 2 and queue["max_retry_delay"] == 60 and not queue["paused"]
    assert (queue["weight"], queue["concurrency"], queue["max_retries"]) == (3, 2, 9)
    error(await client.post(queues, json={"name": "mail"}), 409, "conflict")
    error(await client.post(queues, json={"name": "bad name"}), 422, "validation_error")
    # The queue's retry defaults fill in what neither the request nor the task sets.
    job = created(await client.post(JOBS, json={"type": "add", "args": [1, 1], "queue": "mail"}))
    assert (job["max_retries"], job["retry"]["strategy"], job["retry"]["delay"]) == (9, "fixed", 2)
    job = created(
        await client.post(
            JOBS, json={"type": "add", "args": [1, 1], "queue": "mail", "max_retries": 1}
        )
    )
    assert job["max_retries"] == 1
    put = (await client.put(f"{queues}/mail", json={"weight": 1, "paused": True})).json()
    assert (put["weight"], put["max_retries"], put["paused"]) == (1, None, True)
    got = (await client.get(f"{queues}/mail")).json()
    assert {**got, "oldest_pending_age": 0} == {**put, "oldest_pending_age": 0}
    assert not (await client.post(f"{queues}/mail/resume")).json()["paused"]
    assert (await client.post(f"{queues}/mail/pause")).json()["paused"]
    await drain(taskapp, ("mail",))  # paused: nothing runs
    stats = (await client.get(f"{queues}/mail/stats")).json()
    assert (stats["pending"], stats["succeeded"], stats["paused"]) == (2, 0, True)
    assert stats["oldest_pending_age"] >= 0 and stats["ready_by_priority"] == {"1": 2}
    error(await client.delete(f"{queues}/mail"), 409, "conflict")
    await client.post(f"{queues}/mail/resume")
    await drain(taskapp, ("mail",))
    stats = (await client.get(f"{queues}/mail/stats")).json()
    assert (stats["pending"], stats["succeeded"], stats["throughput_per_minute"]) == (0, 2, 2)
    assert stats["oldest_pending_age"] is None and stats["failed"] == 0 and stats["workers"] == 0
    names = [q["name"] for q in (await client.get(queues)).json()]
    assert names == ["mail"]
    assert (await client.delete(f"{queues}/mail")).status_code == 204
    error(await client.get(f"{queues}/mail"), 404, "not_found")
    error(await client.get(f"{queues}/mail/stats"), 404, "not_found")
    assert (await client.get(queues)).json() == []


async def test_a_stored_weight_reaches_running_workers(
    client: httpx.AsyncClient, taskapp: App
) -> None:
    worker = Worker(taskapp, {"a": 1, "b": 2})
    running = asyncio.create_task(worker.run())
    await client.put("/api/v1/queues/a", json={"weight": 7})
    for _ in range(500):
        if worker.weights == {"a": 7, "b": 2}:
            break
        await asyncio.sleep(0.02)
    assert worker.weights == {"a": 7, "b": 2}
    await client.delete("/api/v1/queues/a")
    for _ in range(500):
        if worker.weights == {"a": 1, "b": 2}:
            break
        await asyncio.sleep(0.02)
    assert worker.weights == {"a": 1, "b": 2}
    worker.stop()
    await running


async def test_dead_letter_list_requeue_and_purge(client: httpx.AsyncClient, taskapp: App) -> None:
    items = [
        {"type": "refuse", "payload": {"reason": str(i)}, "queue": f"q{i % 2}"} for i in range(5)
    ]
    jobs = created(await client.post(f"{JOBS}/batch", json={"jobs": items}))["jobs"]
    await drain(taskapp, ("q0", "q1"))
    dead = (await client.get("/api/v1/dlq", params={"limit": 10})).json()
    assert [job["id"] for job in dead["jobs"]] == [job["id"] for job in reversed(jobs)]
    q1 = (await client.get("/api/v1/dlq", params={"queue": "q1", "type": "refuse"})).json()
    assert len(q1["jobs"]) == 2
    one = (await client.post(f"/api/v1/dlq/{jobs[0]['id']}/requeue")).json()
    assert one["status"] == "pending"
    error(await client.post(f"/api/v1/dlq/{jobs[0]['id']}/requeue"), 409, "conflict")
    moved = await client.post("/api/v1/dlq/requeue", json={"queue": "q1"})
    assert moved.json() == {"count": 2}
    error(await client.post("/api/v1/dlq/requeue", json={}), 422, "validation_error")
    ids = await client.post("/api/v1/dlq/requeue", json={"ids": [jobs[2]["id"], "missing"]})
    assert ids.json() == {"count": 1}
    await drain(taskapp, ("q0", "q1"))
    assert (await client.post("/api/v1/dlq/requeue", json={"all": True})).json() == {"count": 5}
    await drain(taskapp, ("q0", "q1"))
    assert (await client.post("/api/v1/dlq/purge", json={"queue": "q0"})).json() == {"count": 3}
    assert (await client.post("/api/v1/dlq/purge", json={})).json() == {"count": 2}
    assert (await client.get("/api/v1/dlq")).json() == {"jobs": [], "next_cursor": None}


async def test_workers_stats_health_and_metrics(client: httpx.AsyncClient, taskapp: App) -> None:
    items = [{"type": "add", "args": [i, 1]} for i in range(3)] + [
        {"type": "refuse", "payload": {"reason": "x"}}
    ]
    created(await client.post(f"{JOBS}/batch", json={"jobs": items}))
    worker = Worker(taskapp, ["default", "other"], concurrency=3)
    running = asyncio.create_task(worker.run())
    await poll(client, "/api/v1/stats", lambda stats: stats["throughput_per_minute"] == 4)
    (listed,) = (await client.get("/api/v1/workers")).json()
    assert (listed["id"], listed["queues"], listed["concurrency"]) == (
        worker.id,
        ["default", "other"],
        3,
    )
    assert listed["tasks"] == ["add", "nap", "refuse"] and listed["pid"] > 0
    assert listed["started_at"] and listed["last_heartbeat"] and listed["running"] >= 0
    stats = (await client.get("/api/v1/stats")).json()
    assert (stats["queues"], stats["workers"], stats["throughput_per_minute"]) == (1, 1, 4)
    assert stats["counts"]["succeeded"] == 3 and stats["counts"]["dead"] == 1
    assert (await client.get("/api/v1/queues/default/stats")).json()["workers"] == 1
    worker.stop()
    await running
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json() == {"status": "ok"}
    text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("taskmill_jobs_enqueued_total", (("queue", "default"), ("task", "add")))] == 3
    assert samples[("taskmill_queue_jobs", (("queue", "default"), ("state", "succeeded")))] == 3
    assert samples[("taskmill_queue_jobs", (("queue", "default"), ("state", "dead")))] == 1
    assert samples[("taskmill_workers_live", ())] == 0
    as_json = (await client.get("/api/v1/metrics")).json()["metrics"]
    enqueued = next(m for m in as_json if m["name"] == "taskmill_jobs_enqueued")
    assert sum(s["value"] for s in enqueued["samples"]) == 4
