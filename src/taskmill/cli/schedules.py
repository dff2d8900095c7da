"""The `taskmill scheduler` command and the `taskmill schedules` group (cli/__init__.py
adds COMMANDS to the `taskmill` group)."""

from __future__ import annotations

import time
from typing import Any

import click

from taskmill import logs
from taskmill.app import App
from taskmill.backends import Backend, Lease
from taskmill.cli.common import (
    Config,
    ago,
    cut,
    duration,
    echo_json,
    global_options,
    json_array,
    json_object,
    json_option,
    logging_options,
    max_retries,
    outcome,
    pass_config,
    print_table,
    priority,
    queue_name,
    run,
    timeout,
)
from taskmill.job import DEFAULT_QUEUE
from taskmill.schedule import LEADER, Schedule
from taskmill.scheduler import Scheduler


@click.command()
@global_options
@click.option("--lease", callback=duration, help="How long the leader's lease lasts: 10s.")
@logging_options("INFO")
@pass_config
def scheduler(
    config: Config, /, lease: float | None, log_level: str, log_format: logs.Format
) -> None:
    """Fire the schedules stored in the backend (and those the app declares with
    app.periodic), and run the backend's upkeep, while this scheduler leads. Run as many
    as you like: one leads, the others take over within a lease if it dies."""
    logs.setup(log_level, log_format)
    app = config.load()
    runner = Scheduler(app, lease=lease)
    run(app, lambda app, backend: runner.run(install_signals=True))


@click.group()
def schedules() -> None:
    """List, add, pause, resume and delete schedules; show the jobs one produced."""


def _when(moment: float | None, now: float) -> str:
    if moment is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moment))} ({ago(moment, now)})"


def _echo_schedule(schedule: Schedule, as_json: bool) -> None:
    now = time.time()
    if as_json:
        echo_json(schedule.to_dict(now))
        return
    state = "paused" if schedule.paused else "active"
    click.echo(f"schedule {schedule.name} ({state}): {schedule.cron} {schedule.tz}")
    click.echo(f"next tick  {_when(schedule.next_tick(now), now)}")


def _queue(app: App, schedule: Schedule) -> str:
    """Where the schedule's jobs go: its own queue, else its task's, as make_job picks it
    (the task's is known only to an app that has the task)."""
    task = app.tasks.get(schedule.task)
    defaults = {} if task is None else task.defaults
    return str(schedule.options.get("queue", defaults.get("queue", DEFAULT_QUEUE)))


@schedules.command("list")
@global_options
@json_option
@pass_config
def schedules_list(config: Config, as_json: bool) -> None:
    """Every schedule, with its last and next tick, and the scheduler that leads."""

    async def work(app: App, backend: Backend) -> tuple[list[Schedule], Lease | None]:
        return await backend.list_schedules(), await backend.get_lease(LEADER)

    app = config.load()
    found, leader = run(app, work)
    now = time.time()
    if as_json:
        echo_json([schedule.to_dict(now) for schedule in found])
        return
    rows = [
        [
            s.name,
            f"{s.cron} {s.tz}",
            s.task,
            _queue(app, s),
            "paused" if s.paused else "active",
            ago(s.last_tick, now),
            ago(s.next_tick(now), now),
            len(s.recent_jobs),
        ]
        for s in found
    ]
    headers = ["NAME", "WHEN", "TASK", "QUEUE", "STATE", "LAST", "NEXT", "JOBS"]
    print_table(headers, rows, "no schedules")
    if leader is None:
        click.echo("no scheduler leads: run `taskmill scheduler` or `taskmill worker --scheduler`")
    else:
        click.echo(f"leader: {leader.holder} (lease ends {ago(leader.expires_at, now)})")


@schedules.command("show")
@global_options
@click.argument("name")
@json_option
@pass_config
def schedules_show(config: Config, name: str, as_json: bool) -> None:
    """One schedule, and the jobs of its latest ticks that are still stored."""

    async def work(app: App, backend: Backend) -> dict[str, Any]:
        schedule = await app.schedules.aget(name)
        return {"schedule": schedule, "jobs": await app.schedules.ajobs(name)}

    found = run(config.load(), work)
    schedule, jobs = found["schedule"], found["jobs"]
    if as_json:
        echo_json({**schedule.to_dict(time.time()), "jobs": [job.to_dict() for job in jobs]})
        return
    _echo_schedule(schedule, False)
    now = time.time()
    click.echo(f"last tick  {_when(schedule.last_tick, now)}")
    click.echo(f"task       {schedule.task} {cut(str(schedule.args), 40)} {schedule.kwargs}")
    rows = [[j.id, j.state.value, ago(j.created_at, now), outcome(j, 40)] for j in jobs]
    print_table(["JOB", "STATE", "CREATED", "RESULT"], rows, "no jobs yet")


@schedules.command("add")
@global_options
@click.argument("name")
@click.argument("task")
@click.argument("cron")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone: Europe/Paris.")
@click.option(
    "--payload", default="{}", callback=json_object, help="Keyword arguments: JSON object."
)
@click.option("--args", default="[]", callback=json_array, help="Positional arguments: JSON array.")
@click.option("--queue", callback=queue_name, help="Queue [default: the task's].")
@click.option("--priority", callback=priority, help="low, medium, high, critical, or 0-100.")
@max_retries
@click.option("--timeout", callback=timeout, help="Time limit of one attempt.")
@click.option("--catch-up", default="0", callback=duration, help="Fire missed ticks this old.")
@click.option("--jitter", default="0", callback=duration, help="Delay each job up to this.")
@click.option("--paused", is_flag=True, help="Store it paused.")
@json_option
@pass_config
def schedules_add(
    config: Config,
    /,
    name: str,
    task: str,
    cron: str,
    tz: str,
    payload: dict[str, Any],
    args: list[Any],
    catch_up: float,
    jitter: float,
    paused: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Store a schedule NAME that enqueues TASK at every tick of CRON ("*/15 * * * *";
    6 fields for seconds; @hourly, @daily, ...)."""
    given = {key: value for key, value in options.items() if value is not None}

    async def work(app: App, backend: Backend) -> Schedule:
        return await app.schedules.acreate(
            name, task, cron, tz=tz, args=args, kwargs=payload, catch_up=catch_up,
            jitter=jitter, paused=paused, options=given,
        )  # fmt: skip

    _echo_schedule(run(config.load(), work), as_json)


def _pausing(verb: str, paused: bool, summary: str) -> None:
    """The `schedules pause` or `schedules resume` command."""

    @schedules.command(verb, help=summary)
    @global_options
    @click.argument("name")
    @json_option
    @pass_config
    def command(config: Config, name: str, as_json: bool) -> None:
        async def work(app: App, backend: Backend) -> Schedule:
            return await app.schedules.aupdate(name, paused=paused)

        _echo_schedule(run(config.load(), work), as_json)


_pausing("pause", True, "Stop firing a schedule; its ticks while paused are skipped.")
_pausing("resume", False, "Fire a paused schedule again, from its next tick.")


@schedules.command("delete")
@global_options
@click.argument("name")
@json_option
@pass_config
def schedules_delete(config: Config, name: str, as_json: bool) -> None:
    """Remove a schedule (one declared in code comes back when a scheduler starts)."""
    run(config.load(), lambda app, backend: app.schedules.adelete(name))
    if as_json:
        echo_json({"deleted": name})
    else:
        click.echo(f"schedule {name} deleted")


COMMANDS = [scheduler, schedules]
