"""The commands that read or change state: enqueue, jobs, queues, dlq, workers.

Each prints what its source gives (the backend, or the API with `--api`): one piece of
output code per command, whichever way the records came.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from taskmill.app import settled_result
from taskmill.backends import QueueInfo
from taskmill.cli.common import (
    STATES,
    Config,
    ago,
    compact,
    duration,
    echo_json,
    global_options,
    identifier,
    json_array,
    json_object,
    json_option,
    max_retries,
    outcome,
    pass_config,
    print_table,
    priority,
    queue_name,
    span,
    timeout,
)
from taskmill.cli.sources import source_of
from taskmill.job import Job, JobState


def _print_jobs(jobs: list[Job], cursor: str | None, as_json: bool, empty: str) -> None:
    if as_json:
        echo_json({"jobs": [job.to_dict() for job in jobs], "next_cursor": cursor})
        return
    now = time.time()
    headers = ["ID", "TASK", "QUEUE", "STATE", "PRIO", "TRIES", "CREATED", "RESULT"]
    rows = [
        [
            job.id,
            job.task,
            job.queue,
            job.state.value,
            job.priority,
            f"{job.attempts}/{job.max_retries + 1}",
            ago(job.created_at, now),
            outcome(job, 60),
        ]
        for job in jobs
    ]
    print_table(headers, rows, empty)
    if cursor is not None:
        click.echo(f"more: --cursor {cursor}")


def _show_job(job: Job) -> None:
    now = time.time()
    record = job.to_dict()
    del record["errors"]  # listed below, one line each
    width = max(map(len, record))
    for key, value in record.items():
        if value is None:
            text = "-"
        elif key.endswith("_at"):
            text = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} "
            text += f"({ago(value, now)})"
        elif key == "progress":
            text = f"{value:.0%}"
        else:
            text = value if isinstance(value, str) else compact(value)
        click.echo(f"{key.ljust(width)}  {text}")
    for error in job.errors:
        click.echo(f"attempt {error.attempt} failed {ago(error.at, now)}: {error.error}")
    if job.errors and job.errors[-1].traceback:
        click.echo(job.errors[-1].traceback.rstrip())


@click.command()
@global_options
@click.argument("task")
@click.option(
    "--payload", default="{}", callback=json_object, help="Keyword arguments: JSON object."
)
@click.option("--args", default="[]", callback=json_array, help="Positional arguments: JSON array.")
@click.option("--queue", callback=queue_name, help="Queue [default: the task's].")
@click.option("--priority", callback=priority, help="low, medium, high, critical, or 0-100.")
@click.option("--delay", callback=duration, help="Run no sooner than this: 10s, 5m.")
@max_retries
@click.option("--timeout", callback=timeout, help="Time limit of one attempt.")
@click.option(
    "--id", "job_id", callback=identifier, help="The job's id; enqueueing an id again does nothing."
)
@click.option(
    "--wait", type=click.FloatRange(min=0), metavar="SECONDS", help="Wait for the result; print it."
)
@json_option
@pass_config
def enqueue(
    config: Config,
    /,
    task: str,
    payload: dict[str, Any],
    args: list[Any],
    wait: float | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Enqueue a job of TASK; prints its id."""
    options["id"] = options.pop("job_id")
    given = {name: value for name, value in options.items() if value is not None}
    job = source_of(config).enqueue(task, args, payload, given, wait)
    if wait is not None:
        settled_result(job.id, job, wait)  # raises if the job failed or did not finish in time
    if as_json:
        echo_json(job.to_dict())
    else:
        click.echo(job.id if wait is None else compact(job.result))


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in (
        click.option("--cursor", help="Where the previous page ended."),
        click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True),
        click.option("--task", help="Only jobs of this task."),
        click.option("--queue", help="Only jobs of this queue."),
    ):
        command = option(command)
    return command


def _job_id(command: Callable[..., Any]) -> Callable[..., Any]:
    command = json_option(click.argument("job_id", metavar="ID")(command))
    return global_options(command)


@click.group()
def jobs() -> None:
    """List, show, cancel, retry and delete jobs."""


@jobs.command("list")
@global_options
@click.option("--status", type=click.Choice(STATES), help="Only jobs in this state.")
@_filters
@json_option
@pass_config
def jobs_list(config: Config, /, status: str | None, as_json: bool, **filters: Any) -> None:
    """Jobs, newest first."""
    state = None if status is None else JobState(status)
    found, cursor = source_of(config).list_jobs(state, **filters)
    _print_jobs(found, cursor, as_json, "no jobs")


@jobs.command("show")
@_job_id
@pass_config
def jobs_show(config: Config, job_id: str, as_json: bool) -> None:
    """Everything about one job, its errors and last traceback included."""
    job = source_of(config).get(job_id)
    if as_json:
        echo_json(job.to_dict())
    else:
        _show_job(job)


@jobs.command("cancel")
@_job_id
@pass_config
def jobs_cancel(config: Config, job_id: str, as_json: bool) -> None:
    """Cancel a job; a running one stops at its worker's next heartbeat."""
    job = source_of(config).cancel(job_id)
    if job.state.finished and job.state != JobState.CANCELLED:
        # Not cancelled, nor to be: a script must not take it for done.
        raise click.ClickException(f"job {job.id} already finished: {job.state.value}")
    if as_json:
        echo_json(job.to_dict())
    elif job.state == JobState.CANCELLED:
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id} is running: cancellation requested")


@jobs.command("retry")
@_job_id
@pass_config
def jobs_retry(config: Config, job_id: str, as_json: bool) -> None:
    """Run a dead job again from a first attempt (its past errors are kept)."""
    job = source_of(config).retry(job_id)
    if as_json:
        echo_json(job.to_dict())
    else:
        click.echo(f"job {job.id} queued again")


@jobs.command("delete")
@_job_id
@pass_config
def jobs_delete(config: Config, job_id: str, as_json: bool) -> None:
    """Remove a job that is not running (cancel a running one first)."""
    source_of(config).delete(job_id)
    if as_json:
        echo_json({"deleted": job_id})
    else:
        click.echo(f"job {job_id} deleted")


@click.group()
def queues() -> None:
    """List, pause and resume queues; show their statistics."""


@queues.command("list")
@global_options
@json_option
@pass_config
def queues_list(config: Config, as_json: bool) -> None:
    """Queues that hold jobs or are paused."""
    infos = source_of(config).list_queues()
    if as_json:
        echo_json([info.to_dict() for info in infos])
        return
    rows = [[i.name, "yes" if i.paused else "no", sum(i.counts.values())] for i in infos]
    print_table(["NAME", "PAUSED", "JOBS"], rows, "no queues")


def _set_paused(config: Config, name: str, paused: bool, as_json: bool) -> None:
    info = source_of(config).set_paused(name, paused)
    if as_json:
        echo_json(info.to_dict())
    else:
        click.echo(f"queue {name} {'paused' if paused else 'resumed'}")


@queues.command("pause")
@global_options
@click.argument("name", callback=queue_name)
@json_option
@pass_config
def queues_pause(config: Config, name: str, as_json: bool) -> None:
    """Stop handing out NAME's jobs (new ones are still accepted)."""
    _set_paused(config, name, True, as_json)


@queues.command("resume")
@global_options
@click.argument("name", callback=queue_name)
@json_option
@pass_config
def queues_resume(config: Config, name: str, as_json: bool) -> None:
    """Hand out NAME's jobs again."""
    _set_paused(config, name, False, as_json)


@queues.command("stats")
@global_options
@click.argument("name", required=False, callback=queue_name)
@json_option
@pass_config
def queues_stats(config: Config, name: str | None, as_json: bool) -> None:
    """Jobs per state, whether paused, and how long the oldest due job has waited."""
    infos = source_of(config).list_queues()
    if name is not None:
        infos = [next((info for info in infos if info.name == name), QueueInfo(name))]
    now = time.time()
    ages = [None if i.oldest_pending is None else max(now - i.oldest_pending, 0.0) for i in infos]
    if as_json:
        records = [
            {**i.to_dict(), "oldest_pending_age": a} for i, a in zip(infos, ages, strict=True)
        ]
        echo_json(records[0] if name is not None else records)
        return
    headers = ["NAME", "PAUSED", *(state.upper() for state in STATES), "OLDEST"]
    rows = [
        [i.name, "yes" if i.paused else "no", *i.counts.values(), "-" if a is None else span(a)]
        for i, a in zip(infos, ages, strict=True)
    ]
    print_table(headers, rows, "no queues")


@click.group()
def dlq() -> None:
    """The dead-letter queue: jobs that failed for good."""


@dlq.command("list")
@global_options
@_filters
@json_option
@pass_config
def dlq_list(config: Config, /, as_json: bool, **filters: Any) -> None:
    """Dead jobs, newest first."""
    found, cursor = source_of(config).list_jobs(JobState.DEAD, **filters)
    _print_jobs(found, cursor, as_json, "the dead-letter queue is empty")


@dlq.command("requeue")
@global_options
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Requeue every dead job.")
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--task", help="Only dead jobs of this task.")
@json_option
@pass_config
def dlq_requeue(
    config: Config,
    /,
    ids: tuple[str, ...],
    everything: bool,
    queue: str | None,
    task: str | None,
    as_json: bool,
) -> None:
    """Run dead jobs again from a first attempt: the IDs given, those matching --queue and
    --task, or with --all every one."""
    if everything and ids:
        raise click.UsageError("give job ids or --all, not both")
    if not (ids or everything or queue or task):
        raise click.UsageError("say which jobs: give ids, --queue, --task, or --all")
    moved = source_of(config).requeue(ids, queue, task)
    if as_json:
        echo_json({"requeued": moved})
    else:
        click.echo(f"requeued {moved} job(s)")
    if ids and moved < len(set(ids)):
        raise click.ClickException(f"{len(set(ids)) - moved} of the ids given are not dead jobs")


@dlq.command("purge")
@global_options
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--task", help="Only dead jobs of this task.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_config
def dlq_purge(
    config: Config, queue: str | None, task: str | None, yes: bool, as_json: bool
) -> None:
    """Delete dead jobs for good."""
    source = source_of(config)
    if not yes:
        scope = (f" of queue {queue}" if queue else "") + (f" of task {task}" if task else "")
        click.confirm(f"Delete every dead job{scope}?", abort=True, err=True)
    removed = source.purge(queue, task)
    if as_json:
        echo_json({"purged": removed})
    else:
        click.echo(f"purged {removed} job(s)")


@click.command()
@global_options
@json_option
@pass_config
def workers(config: Config, as_json: bool) -> None:
    """Live workers: those seen within the last minute."""
    found = source_of(config).list_workers()
    if as_json:
        echo_json([info.to_dict() for info in found])
        return
    now = time.time()
    rows = [
        [
            w.id,
            ",".join(w.queues),
            f"{w.running}/{w.concurrency}",
            len(w.tasks),
            span(now - w.started_at),
            ago(w.last_seen, now),
        ]
        for w in found
    ]
    print_table(["ID", "QUEUES", "RUNNING", "TASKS", "UP", "SEEN"], rows, "no live workers")


COMMANDS = [enqueue, jobs, queues, dlq, workers]
