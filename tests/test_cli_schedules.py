"""`taskmill schedules ...` in process (the scheduler command runs in
test_scheduler_processes.py as a subprocess)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskmill.backends import connect
from taskmill.schedule import LEADER
from tests.test_cli import TASKS, app_module, ok, run


def test_schedules_add_list_show_pause_resume_delete(url: str) -> None:
    added = ok(
        "--url", url, "schedules", "add", "nightly", "report.build", "30 2 * * *",
        "--tz", "Europe/Paris", "--args", "[1]", "--payload", '{"month": "may"}',
        "--queue", "reports", "--priority", "high", "--max-retries", "2", "--timeout", "5m",
        "--catch-up", "1h", "--jitter", "30s",
    )  # fmt: skip
    assert (added["name"], added["task"], added["cron"], added["tz"]) == (
        "nightly", "report.build", "30 2 * * *", "Europe/Paris",
    )  # fmt: skip
    assert (added["args"], added["kwargs"]) == ([1], {"month": "may"})
    assert added["options"] == {"queue": "reports", "priority": 2, "max_retries": 2,
                                "timeout": 300.0}  # fmt: skip
    assert (added["catch_up"], added["jitter"], added["paused"]) == (3600.0, 30.0, False)
    assert added["last_tick"] is None and added["next_tick"] > added["created_at"]

    listed = ok("--url", url, "schedules", "list")
    assert [s["name"] for s in listed] == ["nightly"]
    assert listed[0]["next_tick"] == added["next_tick"]
    table = run("--url", url, "schedules", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "WHEN", "TASK", "QUEUE", "STATE", "LAST", "NEXT", "JOBS"]
    assert table[1].split()[:2] == ["nightly", "30"]
    assert table[-1].startswith("no scheduler leads")

    paused = ok("--url", url, "schedules", "pause", "nightly")
    assert paused["paused"] is True and paused["next_tick"] is None
    assert "paused" in run("--url", url, "schedules", "list").stdout
    assert ok("--url", url, "schedules", "resume", "nightly")["paused"] is False
    shown = ok("--url", url, "schedules", "show", "nightly")
    assert (shown["name"], shown["jobs"]) == ("nightly", [])
    assert "no jobs yet" in run("--url", url, "schedules", "show", "nightly").stdout

    assert ok("--url", url, "schedules", "delete", "nightly") == {"deleted": "nightly"}
    assert run("--url", url, "schedules", "list").stdout == (
        "no schedules\nno scheduler leads: run `taskmill scheduler` or "
        "`taskmill worker --scheduler`\n"
    )


def test_schedules_errors_are_one_line(url: str) -> None:
    ok("--url", url, "schedules", "add", "s", "t", "@hourly")
    again = run("--url", url, "schedules", "add", "s", "t", "@daily")
    assert again.exit_code == 2 and "exists" in again.stderr
    bad = run("--url", url, "schedules", "add", "b", "t", "* * *")
    assert bad.exit_code == 2 and "invalid cron expression" in bad.stderr
    zone = run("--url", url, "schedules", "add", "b", "t", "@daily", "--tz", "Moon/Base")
    assert zone.exit_code == 2 and "unknown time zone" in zone.stderr
    for command in ("pause", "resume", "delete", "show"):
        missing = run("--url", url, "schedules", command, "nope")
        assert missing.exit_code == 1 and "no schedule 'nope'" in missing.stderr


def test_schedules_of_unknown_tasks_are_refused_with_app(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, finding 9: with --app the task registry is known, and a schedule of a task
    it does not have is refused as enqueue refuses it; a cron that never fires, always."""
    with app_module(TASKS, tmp_path, monkeypatch) as spec:
        unknown = run("--url", url, "--app", spec, "schedules", "add", "s", "ghost", "@daily")
        assert unknown.exit_code == 2 and "unknown task 'ghost'" in unknown.stderr
        args = ("--args", "[1, 2]")
        ok("--url", url, "--app", spec, "schedules", "add", "s", "add", "@daily", *args)
    never = run("--url", url, "schedules", "add", "n", "t", "0 0 30 2 *")
    assert never.exit_code == 2 and "never fires" in never.stderr
    zero = run("--url", url, "schedules", "add", "z", "t", "@daily", "--timeout", "0")
    assert zero.exit_code == 2 and "timeout: must be > 0" in zero.stderr
    assert [s["name"] for s in ok("--url", url, "schedules", "list")] == ["s"]


def test_schedules_list_names_the_leader(url: str) -> None:
    async def lead() -> None:
        backend = connect(url)
        await backend.open()
        await backend.acquire_lease(LEADER, "host:42:abcd", 60.0)
        await backend.close()

    asyncio.run(lead())
    assert "leader: host:42:abcd (lease ends in " in run("--url", url, "schedules", "list").stdout


def test_schedules_list_names_the_queue_its_jobs_go_to(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schedule with no queue of its own fills its task's, which only the app knows."""
    source = (
        "from taskmill import App\napp = App()\n\n"
        "@app.task(name='mail.send', queue='mail')\ndef send() -> None: ...\n"
    )
    for schedule, task in (("own", "mail.send"), ("task", "mail.send"), ("none", "other")):
        extra = ["--queue", "own"] if schedule == "own" else []
        ok("--url", url, "schedules", "add", schedule, task, "@daily", *extra)
    with app_module(source, tmp_path, monkeypatch) as spec:
        rows = run("--url", url, "--app", spec, "schedules", "list").stdout.splitlines()
    queues = {row.split()[0]: row.split()[4] for row in rows[1:4]}
    assert queues == {"own": "own", "task": "mail", "none": "default"}
