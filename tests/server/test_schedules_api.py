"""The schedules endpoints through the ASGI app, on every backend a scheduler can use."""

from __future__ import annotations

import httpx
import pytest

from taskmill import App
from taskmill.scheduler import Scheduler
from taskmill.server import create_app
from tests.conftest import FakeClock
from tests.server.conftest import created, error

pytestmark = pytest.mark.parametrize("url", ["sqlite", "redis", "postgres"], indirect=True)
SCHEDULES = "/api/v1/schedules"


async def test_schedules_are_created_read_changed_paused_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "name": "nightly-sum", "type": "add", "cron": "30 2 * * *", "tz": "Europe/Paris",
        "args": [1], "payload": {"b": 2}, "options": {"queue": "maths", "priority": "high"},
        "catch_up": 3600, "jitter": 5,
    }  # fmt: skip
    made = created(await client.post(SCHEDULES, json=body))
    assert {k: made[k] for k in body} == {**body, "options": {"queue": "maths", "priority": 2}}
    assert made["paused"] is False and made["source"] == "api" and made["last_tick"] is None
    assert made["next_tick"] > made["created_at"] and made["recent_jobs"] == []
    error(await client.post(SCHEDULES, json=body), 409, "conflict")

    assert [s["name"] for s in (await client.get(SCHEDULES)).json()] == ["nightly-sum"]
    assert (await client.get(f"{SCHEDULES}/nightly-sum")).json() == made

    changed = (await client.put(f"{SCHEDULES}/nightly-sum", json={"cron": "*/5 * * * *"})).json()
    assert changed["cron"] == "*/5 * * * *" and changed["tz"] == "Europe/Paris"
    paused = (await client.post(f"{SCHEDULES}/nightly-sum/pause")).json()
    assert paused["paused"] is True and paused["next_tick"] is None
    resumed = (await client.post(f"{SCHEDULES}/nightly-sum/resume")).json()
    assert resumed["paused"] is False and resumed["next_tick"] is not None

    assert (await client.delete(f"{SCHEDULES}/nightly-sum")).status_code == 204
    error(await client.get(f"{SCHEDULES}/nightly-sum"), 404, "not_found")
    error(await client.delete(f"{SCHEDULES}/nightly-sum"), 404, "not_found")
    error(await client.post(f"{SCHEDULES}/nightly-sum/pause"), 404, "not_found")


async def test_bad_schedules_are_refused_naming_the_problem(client: httpx.AsyncClient) -> None:
    base = {"name": "s", "type": "add", "cron": "* * * * *", "args": [1, 2]}
    bad_cron = error(await client.post(SCHEDULES, json={**base, "cron": "61 * * * *"}), 422,
                     "invalid_schedule")  # fmt: skip
    assert "61" in bad_cron["message"]
    error(await client.post(SCHEDULES, json={**base, "tz": "Mars/Olympus"}), 422,
          "invalid_schedule")  # fmt: skip
    error(await client.post(SCHEDULES, json={**base, "args": ["x", "y", "z"]}), 422,
          "invalid_schedule")  # fmt: skip
    error(await client.post(SCHEDULES, json={**base, "colour": "red"}), 422, "validation_error")
    assert (await client.get(SCHEDULES)).json() == []


async def test_a_schedules_jobs_are_listed(client: httpx.AsyncClient, taskapp: App) -> None:
    clock = taskapp.clock = FakeClock()  # before the first request opens the backend
    created(await client.post(SCHEDULES, json={
        "name": "every-second", "type": "add", "cron": "* * * * * *", "args": [1, 2],
        "catch_up": 60,
    }))  # fmt: skip
    scheduler = Scheduler(taskapp, lease=30)
    await scheduler.lead()
    clock.advance(1)
    await scheduler.fire_due()
    assert (await client.get(f"{SCHEDULES}/every-second")).json()["recent_jobs"]
    jobs = (await client.get(f"{SCHEDULES}/every-second/jobs")).json()["jobs"]
    assert jobs and jobs[0]["id"].startswith("schedule:every-second:")
    assert jobs[0]["type"] == "add" and jobs[0]["args"] == [1, 2]


async def test_unknown_tasks_crons_that_never_fire_and_poison_payloads_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """Issue 17, findings 5 and 9: each of these was stored (and the deep payload then made
    GET /api/v1/schedules answer 500)."""
    base = {"name": "s", "type": "add", "cron": "* * * * *", "args": [1, 2]}
    body = error(await client.post(SCHEDULES, json={**base, "type": "ghost"}), 422,
                 "invalid_schedule")  # fmt: skip
    assert "unknown task 'ghost'" in body["message"]
    body = error(await client.post(SCHEDULES, json={**base, "cron": "0 0 30 2 *"}), 422,
                 "invalid_schedule")  # fmt: skip
    assert "never fires" in body["message"]
    deep = "[" * 252 + "1" + "]" * 252
    for field, text in [
        ("args", f'"args": [{deep}, 1]'), ("payload", '"payload": {"b": NaN}'),
        ("jitter", '"jitter": Infinity'), ("catch_up", '"catch_up": "soon"'),
    ]:  # fmt: skip
        content = f'{{"name": "s", "type": "add", "cron": "* * * * *", {text}}}'.encode()
        response = await client.post(
            SCHEDULES, content=content, headers={"content-type": "application/json"}
        )
        found = error(response, 422, "validation_error")["details"]["errors"][0]["field"]
        assert found.startswith(f"body.{field}"), found
    error(await client.post(SCHEDULES, json={**base, "options": {"timeout": 0}}), 422,
          "invalid_schedule")  # fmt: skip
    listing = await client.get(SCHEDULES)
    assert listing.status_code == 200 and listing.json() == []
    made = created(await client.post(SCHEDULES, json={**base, "jitter": "5m"}))
    assert made["jitter"] == 300
    body = error(await client.put(f"{SCHEDULES}/s", json={"type": "ghost"}), 422,
                 "invalid_schedule")  # fmt: skip
    assert "unknown task 'ghost'" in body["message"]


async def test_a_server_that_knows_no_tasks_takes_any_task(url: str) -> None:
    loose = App(url, strict=False)
    transport = httpx.ASGITransport(create_app(loose))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        body = {"name": "s", "type": "billing.charge", "cron": "@daily"}
        assert created(await http.post(SCHEDULES, json=body))["type"] == "billing.charge"
        error(await http.post(SCHEDULES, json={**body, "name": "t", "cron": "0 0 30 2 *"}),
              422, "invalid_schedule")  # fmt: skip
    await loose.aclose()
