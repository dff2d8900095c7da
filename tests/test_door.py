"""Every input is checked at the door, one way for every entrance (issue 17, findings 5 and
9): the rules of taskmill.job refuse what could not be stored faithfully or used, through
the Python API here; the REST API and the CLI run the same rules (tests/server/test_api.py,
tests/server/test_schedules_api.py, tests/test_cli*.py), and the property tests at the end
send random fields through both APIs on every backend."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskmill import App, Worker
from taskmill.errors import (
    JobError,
    JobNotFoundError,
    PayloadError,
    ScheduleError,
    UnknownTaskError,
)
from taskmill.job import MAX_DEPTH, MAX_RETRIES, JobState
from taskmill.schedule import JOB_OPTIONS
from taskmill.server import create_app
from tests.server.conftest import tasks_app

JSON_TYPE = {"content-type": "application/json"}


def nested(depth: int) -> Any:
    """`depth` arrays inside one another, with a number at the bottom."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def app() -> App:
    app = App(f"memory://{uuid.uuid4().hex}")

    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return args

    return app


# -- finding 5: payloads that JSON would not carry back, and ids that cannot be reached ------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, float("1e999")])
def test_numbers_that_are_not_finite_are_refused_not_stored_as_null(
    app: App, number: float
) -> None:
    with pytest.raises(PayloadError, match="args: numbers must be finite"):
        app.make_job("echo", [number])
    with pytest.raises(PayloadError, match="kwargs: numbers must be finite"):
        app.make_job("echo", kwargs={"x": {"y": [number]}})
    with pytest.raises(JobError, match="metadata: numbers must be finite"):
        app.make_job("echo", metadata={"x": number})
    with pytest.raises(ScheduleError, match="numbers must be finite"):
        app.schedules.build("s", "echo", "* * * * *", kwargs={"x": number})


def test_nesting_deeper_than_the_bound_is_refused(app: App) -> None:
    app.make_job("echo", nested(MAX_DEPTH - 1), metadata={"m": nested(MAX_DEPTH - 1)})
    with pytest.raises(PayloadError, match=f"args: nested deeper than {MAX_DEPTH}"):
        app.make_job("echo", nested(252))
    with pytest.raises(PayloadError, match="kwargs: nested deeper"):
        app.make_job("echo", kwargs={"x": nested(MAX_DEPTH)})
    with pytest.raises(JobError, match="metadata: nested deeper"):
        app.make_job("echo", metadata={"x": nested(MAX_DEPTH)})
    with pytest.raises(ScheduleError, match="nested deeper"):
        app.schedules.build("s", "echo", "* * * * *", args=[nested(252)])


@pytest.mark.parametrize("job_id", ["a/b", "/", "nul\x00", "tab\t", "\u202e", ".", "..", ""])
def test_ids_outside_the_alphabet_are_refused(app: App, job_id: str) -> None:
    with pytest.raises(JobError, match=r"^id: must be 1-255 printable characters"):
        app.make_job("echo", id=job_id)


def test_ids_in_the_alphabet_are_taken(app: App) -> None:
    for job_id in ["schedule:nightly:1700000000", "ünïcode id", "a" * 255, "50%?#"]:
        assert app.make_job("echo", id=job_id).id == job_id
    with pytest.raises(JobError, match=r"^id:"):
        app.make_job("echo", id="a" * 256)


# -- finding 9: options out of range, task names, schedules ----------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delay": math.inf}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": 10 * 366 * 86400}, "delay"),
        ({"ttl": math.nan}, "ttl"),
        ({"scheduled_at": -1}, "scheduled_at"),
        ({"scheduled_at": 1e20}, "scheduled_at"),
        ({"scheduled_at": 10**400}, "scheduled_at"),
        ({"expires_at": math.nan}, "expires_at"),
        ({"expires_at": math.inf}, "expires_at"),
        ({"max_retries": 10**9}, "max_retries"),
        ({"max_retries": MAX_RETRIES + 1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": "0s"}, "timeout"),
        ({"retry_delay": math.inf}, "retry_delay"),
        ({"result_ttl": math.nan}, "result_ttl"),
    ],
)
def test_options_out_of_range_are_refused_naming_the_option(
    app: App, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(JobError, match=f"^{field}: "):
        app.make_job("echo", **options)
    with pytest.raises(JobError, match=f"^{field}: "):  # a task's defaults: at definition
        app.task(name="other", **options)(lambda: None)
    with pytest.raises(JobError, match=f"^{field}: "):
        app.tasks["echo"].options(**options)


def test_options_at_their_bounds_are_taken(app: App) -> None:
    job = app.make_job("echo", max_retries=MAX_RETRIES, timeout=0.001, scheduled_at=0.0)
    assert (job.max_retries, job.timeout) == (MAX_RETRIES, 0.001)
    assert app.make_job("echo", expires_at=253370764799.0).expires_at == 253370764799.0


@pytest.mark.parametrize("name", ["x" * 100_000, "x" * 201, "a/b", "nul\x00", "line\n"])
def test_task_names_outside_the_alphabet_are_refused(app: App, name: str) -> None:
    loose = App(app.settings.url, strict=False)
    with pytest.raises(JobError, match=r"^task: must be 1-200 printable characters"):
        loose.make_job(name)
    with pytest.raises(JobError, match=r"^task: must be 1-200 printable characters"):
        app.task(name=name)(lambda: None)
    assert app.make_job("echo").task == "echo"


def test_schedules_of_unknown_tasks_are_refused_by_an_app_that_knows_its_tasks(app: App) -> None:
    with pytest.raises(ScheduleError, match="unknown task 'ghost'"):
        app.schedules.build("s", "ghost", "* * * * *")
    with pytest.raises(UnknownTaskError):
        app.make_job("ghost")  # as enqueue refuses it
    # An app that knows no tasks of its own (the CLI without --app) takes any name.
    loose = App(app.settings.url, strict=False)
    assert loose.schedules.build("s", "ghost", "* * * * *").task == "ghost"


async def test_a_schedule_of_an_unknown_task_can_still_be_paused(app: App) -> None:
    loose = App(app.settings.url, strict=False)
    await loose.schedules.acreate("s", "ghost", "* * * * *")
    assert (await app.schedules.apause("s")).paused
    with pytest.raises(ScheduleError, match="unknown task 'phantom'"):
        await app.schedules.aupdate("s", task="phantom")
    await loose.aclose()
    await app.aclose()


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"])
def test_crons_that_never_fire_are_refused(app: App, cron: str) -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        app.schedules.build("s", "echo", cron)
    assert app.schedules.build("s", "echo", "0 0 29 2 *").cron == "0 0 29 2 *"  # leap years


@pytest.mark.parametrize(
    ("field", "value"),
    [("catch_up", math.nan), ("jitter", math.inf), ("jitter", "soon"), ("catch_up", -1)],
)
def test_schedule_durations_are_parsed_as_job_durations(app: App, field: str, value: Any) -> None:
    with pytest.raises(ScheduleError, match=f"{field}: "):
        app.schedules.build("s", "echo", "* * * * *", **{field: value})
    taken: dict[str, Any] = {field: "5m"}
    assert app.schedules.build("s", "echo", "* * * * *", **taken).definition()[field] == 300


# -- random fields through the Python API and the REST API, on every backend -----------------
# Each job or schedule is refused (a JobError or ScheduleError, or a 4xx), or it is stored,
# listed, run where that is cheap, and deleted, without a 5xx or an unexpected exception.

CHARS = st.characters(codec="utf-8")  # NUL, controls and slashes included; no lone surrogates
TEXT = st.text(CHARS, max_size=12)
NAMES = (
    st.sampled_from(["add", "refuse", "ok.name:1", "a/b", "nul\x00", ".", "..", "x" * 201]) | TEXT
)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
) | st.integers(MAX_DEPTH - 2, 260).map(nested)
ARGS = st.lists(JSON, max_size=3) | st.tuples(st.integers(-9, 9), st.integers(-9, 9)).map(list)
KWARGS = st.dictionaries(TEXT, JSON, max_size=2)
NUMBERS = st.floats() | st.integers(-10, 10**21)
DURATIONS = NUMBERS | st.sampled_from(["5m", "250ms", "0s", "soon", "99999d", "1e3"])
ODD_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
        "queue": st.sampled_from(["default", "door", "no spaces", "a/b", ""]),
        "priority": st.integers(-5, 105) | st.sampled_from(["low", "critical", "urgent"]),
        "max_retries": st.integers(-2, 3) | st.sampled_from([MAX_RETRIES + 1, 10**9]),
        "retry": st.sampled_from(["exponential", "linear", "fixed", "bogus"]),
        "retry_delay": DURATIONS,
        "max_retry_delay": DURATIONS,
        "jitter": NUMBERS,
        "timeout": DURATIONS,
        "result_ttl": DURATIONS,
        "delay": DURATIONS,
        "ttl": DURATIONS,
        "scheduled_at": NUMBERS,
        "expires_at": NUMBERS,
        "id": NAMES,
        "metadata": st.dictionaries(TEXT, JSON, max_size=2),
}  # fmt: skip
OPTIONS = st.fixed_dictionaries({}, optional=ODD_OPTIONS)
#: One option drawn at random, to go with options within the bounds.
ONE_ODD_OPTION = st.sampled_from(sorted(ODD_OPTIONS)).flatmap(
    lambda key: ODD_OPTIONS[key].map(lambda value: {key: value})
)
CRONS = st.sampled_from(["* * * * *", "@daily", "0 0 30 2 *", "61 * * * *", "*/0 * * * *"]) | TEXT
ZONES = st.sampled_from(["UTC", "Europe/Paris", "Mars/Base", "Etc"]) | TEXT

# Fields drawn at random are nearly always refused: the same fields drawn within the bounds,
# so that about half the examples are stored, run and deleted.
FINITE = st.floats(allow_nan=False, allow_infinity=False)
GOOD_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
GOOD_ID = st.text(CHARS, min_size=1, max_size=20).filter(
    lambda s: s.isprintable() and "/" not in s and s not in (".", "..")
)
GOOD_DURATIONS = st.floats(0, 3600) | st.sampled_from(["5m", "250ms", "0s", "1d"])
GOOD_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "queue": st.sampled_from(["default", "door"]),
        "priority": st.integers(0, 100) | st.sampled_from(["low", "critical"]),
        "max_retries": st.integers(0, 2),
        "retry": st.sampled_from(["exponential", "linear", "fixed"]),
        "retry_delay": GOOD_DURATIONS,
        "max_retry_delay": GOOD_DURATIONS,
        "jitter": st.floats(0, 1),
        "timeout": st.floats(1, 60) | st.just("5m"),
        "result_ttl": GOOD_DURATIONS,
        "delay": GOOD_DURATIONS,
        "ttl": GOOD_DURATIONS,
        "scheduled_at": st.floats(0, 253370764799),
        "expires_at": st.floats(0, 253370764799),
        "id": GOOD_ID,
        "metadata": st.dictionaries(TEXT, GOOD_JSON, max_size=2),
    },
)
#: Calls that fit the tasks: `refuse` takes any JSON value as its reason.
GOOD_CALLS: st.SearchStrategy[tuple[str, list[Any], dict[str, Any]]] = (
    st.tuples(st.just("add"), st.tuples(st.integers(-9, 9), st.integers(-9, 9)).map(list),
              st.just({}))
    | st.tuples(st.just("refuse"), st.lists(JSON, min_size=1, max_size=1), st.just({}))
    | st.tuples(st.just("refuse"), st.just([]), st.fixed_dictionaries({"reason": JSON}))
)  # fmt: skip
JOBS = (
    st.tuples(NAMES, ARGS, KWARGS, OPTIONS)
    | GOOD_CALLS.flatmap(lambda call: st.tuples(*map(st.just, call), GOOD_OPTIONS))
    | GOOD_CALLS.flatmap(lambda call: st.tuples(
        *map(st.just, call), st.builds(lambda a, b: {**a, **b}, GOOD_OPTIONS, ONE_ODD_OPTION)
    ))
)  # fmt: skip
SCHEDULE_OPTIONS = GOOD_OPTIONS.map(lambda options: {
    key: value for key, value in options.items() if key in JOB_OPTIONS
})  # fmt: skip
SCHEDULES = st.tuples(
    NAMES | st.sampled_from(["nightly", "s:1"]), NAMES, CRONS, ZONES, ARGS, KWARGS, OPTIONS,
    DURATIONS, DURATIONS,
) | st.tuples(
    st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True), st.just("add"),
    st.sampled_from(["* * * * *", "@daily", "0 0 29 2 *", "*/5 9-17 * * mon-fri"]),
    st.sampled_from(["UTC", "Europe/Paris"]), st.just([1]), st.just({"b": 2}),
    SCHEDULE_OPTIONS, GOOD_DURATIONS, GOOD_DURATIONS,
)  # fmt: skip
#: The REST API's names of the job options that it spells otherwise.
API_NAMES = {"retry": "retry_strategy"}
#: Options the REST API takes as RFC 3339 times, or not at all.
API_TIMES = {"scheduled_at"}
NOT_IN_API = {"expires_at", "jitter"}


def api_time(seconds: Any) -> Any:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, ValueError, OSError, TypeError):
        return "not a time"


def api_body(task: Any, args: Any, kwargs: Any, options: dict[str, Any]) -> bytes:
    """The job as a JSON body, with NaN and Infinity written as Python writes them."""
    body = {"type": task, "args": args, "payload": kwargs}
    for key, value in options.items():
        if key not in NOT_IN_API:
            body[API_NAMES.get(key, key)] = api_time(value) if key in API_TIMES else value
    return json.dumps(body).encode()


async def settle(app: App, client: httpx.AsyncClient, job_id: str, queue: str) -> None:
    """A stored job: read, listed, run if due (burst), and deleted."""
    path = f"/api/v1/jobs/{quote(job_id, safe='')}"
    assert (await client.get(path)).status_code == 200
    await listings_work(client)
    await Worker(app, [queue], burst=True, concurrency=2).run()
    assert (await app.aget(job_id)).state is not JobState.RUNNING
    assert (await client.delete(path)).status_code == 204
    with pytest.raises(JobNotFoundError):
        await app.aget(job_id)


async def listings_work(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/jobs", "/api/v1/dlq", "/api/v1/queues", "/api/v1/schedules"):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)


Example = Callable[[App, httpx.AsyncClient, Any], Coroutine[Any, Any, None]]


def property_test(url: str, example: Example, fields: st.SearchStrategy[Any]) -> None:
    """Run `example` on each of 50 random `fields`, on one app and API client over `url`."""
    app = tasks_app(url)
    with asyncio.Runner() as runner:
        transport = httpx.ASGITransport(create_app(app))
        client = httpx.AsyncClient(transport=transport, base_url="http://api")

        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
        @given(fields)
        def check(drawn: Any) -> None:
            runner.run(example(app, client, drawn))

        try:
            check()
        finally:
            runner.run(client.aclose())
            runner.run(app.aclose())


async def one_job(app: App, client: httpx.AsyncClient, drawn: Any) -> None:
    task, args, kwargs, options = drawn
    try:
        handle = await app.aenqueue(task, args, kwargs, **options)
    except JobError:
        event("python: refused")
    else:
        event("python: stored")
        stored = await app.aget(handle.id)  # as given: nothing turned into null on the way
        assert (stored.args, stored.kwargs) == (list(args), kwargs)
        assert stored.metadata == options.get("metadata", {})
        await settle(app, client, handle.id, handle.job.queue)
    response = await client.post(
        "/api/v1/jobs", content=api_body(task, args, kwargs, options), headers=JSON_TYPE
    )
    assert response.status_code in (201, 400, 422), response.text
    event(f"api: {response.status_code}")
    if response.status_code == 201:
        job = response.json()
        assert (job["args"], job["payload"]) == (args, kwargs)
        await settle(app, client, job["id"], job["queue"])
    await listings_work(client)


@pytest.mark.slow
def test_random_jobs_are_refused_or_stored_run_and_deleted(url: str) -> None:
    property_test(url, one_job, JOBS)


async def one_schedule(app: App, client: httpx.AsyncClient, drawn: Any) -> None:
    name, task, cron, tz, args, kwargs, options, catch_up, jitter = drawn
    fields = {"tz": tz, "args": args, "kwargs": kwargs, "options": options,
              "catch_up": catch_up, "jitter": jitter}  # fmt: skip
    try:
        await app.schedules.acreate(name, task, cron, **fields)
    except ScheduleError:
        event("python: refused")
    else:
        event("python: stored")
        await listings_work(client)
        await app.schedules.adelete(name)
    body = {**fields, "name": name, "type": task, "cron": cron, "payload": kwargs}
    del body["kwargs"]
    response = await client.post(
        "/api/v1/schedules", content=json.dumps(body).encode(), headers=JSON_TYPE
    )
    assert response.status_code in (201, 400, 422), response.text
    event(f"api: {response.status_code}")
    await listings_work(client)
    if response.status_code == 201:
        path = f"/api/v1/schedules/{quote(name, safe='')}"
        assert (await client.delete(path)).status_code == 204


@pytest.mark.slow
def test_random_schedules_are_refused_or_stored_listed_and_deleted(url: str) -> None:
    property_test(url, one_schedule, SCHEDULES)
