"""The schedules endpoints through the ASGI app, on every backend a scheduler can use."""

from __future__ import annotations

import httpx
import pytest

from taskmill import App
from taskmill.scheduler import Scheduler
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
