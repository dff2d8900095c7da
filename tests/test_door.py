"""Every input is checked at the door, one way for every entrance (issue 17, findings 5 and
9): the rules of taskmill.job refuse what could not be stored faithfully or used, through
the Python API here; the REST API and the CLI run the same rules (tests/server/test_api.py,
tests/server/test_schedules_api.py, tests/test_cli*.py), and the property tests at the end
send random fields through both APIs on every backend."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from taskmill import App
from taskmill.errors import JobError, PayloadError, ScheduleError, UnknownTaskError
from taskmill.job import MAX_DEPTH, MAX_RETRIES


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
