"""The `taskmill` command: run workers, enqueue jobs, inspect jobs, queues, the DLQ and workers.

Tables are for people; `--json` prints the records for scripts. Expected errors (bad input,
unknown ids, any TaskmillError) end with one line on stderr and exit code 2 for usage
errors, 1 for the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import orjson
import prometheus_client

from taskmill import logs
from taskmill.app import App
from taskmill.backends import Backend, QueueInfo
from taskmill.errors import ConfigError, TaskmillError
from taskmill.job import Job, JobState, check_queue_name, parse_duration, parse_priority
from taskmill.metrics import JobMetrics
from taskmill.worker import Worker, parse_queues

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

STATES = [state.value for state in JobState]
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


# -- where the app comes from ----------------------------------------------------------------


@dataclass
class _Config:
    """The global options, which may be given before the command or after it."""

    url: str | None = None
    app: str | None = None

    def load(self, *, need_app: bool = False) -> App:
        if self.app is None:
            if need_app:
                raise click.UsageError("give --app module:attr, the app whose tasks to run")
            # Without the app only task names are known: enqueue cannot check arguments.
            return App(self.url, strict=False)
        return self.apply_url(_import_app(self.app))

    def apply_url(self, app: App) -> App:
        if self.url is not None:
            app.settings = dataclasses.replace(app.settings, url=self.url)
        return app


def _import_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("use module:attr, e.g. myproject.tasks:app", param_hint="--app")
    # A console script's sys.path holds its own directory, not the one it was started in.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise  # the module exists, but something it imports does not: show where
        raise click.BadParameter(f"no module named {module_name!r}", param_hint="--app") from None
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not isinstance(target, App):
        raise click.BadParameter(f"{spec} is not a taskmill App", param_hint="--app")
    return target


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        setattr(ctx.ensure_object(_Config), str(param.name), value)


def _global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    url_help = "Backend URL [env TASKMILL_URL; default sqlite:///taskmill.db]."
    app_help = "The App whose tasks to use, imported with the cwd on sys.path."
    command = click.option("--url", callback=_remember, expose_value=False, help=url_help)(command)
    return click.option(
        "--app", callback=_remember, expose_value=False, metavar="MODULE:ATTR", help=app_help
    )(command)


pass_config = click.make_pass_decorator(_Config, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# -- running, parsing, errors ----------------------------------------------------------------


def _run(app: App, work: Callable[[App, Backend], Awaitable[T]]) -> T:
    """Run `work` with the app and its backend on a fresh event loop, then close them."""

    async def main() -> T:
        try:
            return await work(app, await app.backend())
        finally:
            await app.aclose()

    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskmillError as exc:
            raise click.ClickException(str(exc)) from None


def _parsed(parse: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that turns taskmill's own validation errors into usage errors."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else parse(value)
        except (TaskmillError, ValueError) as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _json_of(kind: type[Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(value, kind):
            raise ValueError(f"expected a JSON {'object' if kind is dict else 'array'}")
        return value

    return parse


_duration = _parsed(parse_duration)
_queue_name = _parsed(check_queue_name)
_priority = _parsed(parse_priority)
_queues = _parsed(parse_queues)
_object = _parsed(_json_of(dict))
_array = _parsed(_json_of(list))


# -- output ----------------------------------------------------------------------------------


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    click.echo(_table(headers, rows) if rows else empty)


def _cut(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s"


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    return f"{_span(now - when)} ago" if when <= now else f"in {_span(when - now)}"


def _outcome(job: Job, width: int) -> str:
    """The result of a job that succeeded, else its last error."""
    if job.state == JobState.SUCCEEDED:
        return _cut(_compact(job.result), width)
    return _cut(job.error or "", width)


def _print_jobs(jobs: list[Job], cursor: str | None, as_json: bool, empty: str) -> None:
    if as_json:
        _echo_json({"jobs": [job.to_dict() for job in jobs], "next_cursor": cursor})
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
            _ago(job.created_at, now),
            _outcome(job, 60),
        ]
        for job in jobs
    ]
    _print_table(headers, rows, empty)
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
            text += f"({_ago(value, now)})"
        elif key == "progress":
            text = f"{value:.0%}"
        else:
            text = value if isinstance(value, str) else _compact(value)
        click.echo(f"{key.ljust(width)}  {text}")
    for error in job.errors:
        click.echo(f"attempt {error.attempt} failed {_ago(error.at, now)}: {error.error}")
    if job.errors and job.errors[-1].traceback:
        click.echo(job.errors[-1].traceback.rstrip())


def _logging_options(default: str) -> Decorator:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--log-format",
            envvar="TASKMILL_LOG_FORMAT",
            type=click.Choice(["auto", "json", "text"]),
            default="auto",
            show_default=True,
            help="JSON lines, or colour text; auto: text on a terminal [env TASKMILL_LOG_FORMAT].",
        )(command)
        return click.option(
            "--log-level",
            envvar="TASKMILL_LOG_LEVEL",
            default=default,
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            show_default=True,
            help="Logging level [env TASKMILL_LOG_LEVEL].",
        )(command)

    return decorate


# -- commands --------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskmill")
@_global_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """taskmill: a distributed task queue."""
    ctx.ensure_object(_Config)


@main.command()
@_global_options
@click.option(
    "-q", "--queues", default="default", callback=_queues, help="Queues: a,b:3 (weights)."
)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--strict", is_flag=True, help="Take the queues in the order given, not by weight.")
@click.option("--burst", is_flag=True, help="Stop once no job is left to run.")
@click.option("--processes", type=click.IntRange(min=1), help="Size of the process pool.")
@click.option(
    "--prefetch", type=click.IntRange(min=0), help="Jobs claimed ahead [default: concurrency]."
)
@click.option("--lease", callback=_duration, help="How long a claim holds a job: 30s, 2m.")
@click.option("--grace", callback=_duration, help="Time running jobs get to finish on stop.")
@click.option("--heartbeat", callback=_duration, help="Time between heartbeats.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    envvar="TASKMILL_METRICS_PORT",
    help="Serve this process's Prometheus metrics on this port, one per process (0: any "
    "free port, logged) [env TASKMILL_METRICS_PORT].",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--scheduler", is_flag=True, help="Also run a scheduler in this process.")
@_logging_options("INFO")
@pass_config
def worker(
    config: _Config,
    /,
    queues: dict[str, int],
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: logs.Format,
    **options: Any,
) -> None:
    """Run the app's tasks until SIGTERM or Ctrl-C (running jobs get the grace period)."""
    logs.setup(log_level, log_format)
    app = config.load(need_app=True)
    timings = {name: options.pop(name) for name in ("lease", "grace", "heartbeat")}
    try:
        app.settings = dataclasses.replace(
            app.settings, **{name: value for name, value in timings.items() if value is not None}
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    metrics = None
    if metrics_port is not None:
        metrics = JobMetrics()
        try:
            server, _ = prometheus_client.start_http_server(
                metrics_port, metrics_host, registry=metrics.registry
            )
        except OSError as exc:
            raise click.UsageError(
                f"cannot serve metrics on {metrics_host}:{metrics_port} ({exc.strerror}); "
                "each worker process needs a port of its own"
            ) from None
        logging.getLogger("taskmill.worker").info(
            "metrics on http://%s:%d/metrics", metrics_host, server.server_port
        )
    # concurrency, strict, ..., prefetch, scheduler
    runner = Worker(app, queues, metrics=metrics, **options)
    try:
        _run(app, lambda app, backend: runner.run(install_signals=True))
    finally:
        if metrics is not None:
            server.shutdown()


@main.command()
@_global_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=1000.0,
    show_default=True,
    envvar="TASKMILL_API_RATE_LIMIT",
    help="Job submissions per second per API key, in bursts up to as many; 0: no limit.",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1024),
    default=8 * 1024 * 1024,
    show_default=True,
    help="Largest request body, in bytes.",
)
@click.option("--access-log/--no-access-log", default=True, help="Log every request.")
@_logging_options("INFO")
@pass_config
def server(config: _Config, /, log_level: str, log_format: logs.Format, **options: Any) -> None:
    """Serve the REST API (and /metrics) over the app's backend, until Ctrl-C.

    API keys come from TASKMILL_API_KEYS (KEY:admin or KEY:read, comma-separated); without
    any, the server serves loopback only."""
    logs.setup(log_level, log_format)
    try:
        from taskmill.server.run import serve
    except ImportError as exc:
        raise click.ClickException(f"the server needs taskmill[server] ({exc})") from None
    serve(config.load(), **options)


@main.command()
@_global_options
@click.argument("task")
@click.option("--payload", default="{}", callback=_object, help="Keyword arguments: JSON object.")
@click.option("--args", default="[]", callback=_array, help="Positional arguments: JSON array.")
@click.option("--queue", callback=_queue_name, help="Queue [default: the task's].")
@click.option("--priority", callback=_priority, help="low, medium, high, critical, or 0-100.")
@click.option("--delay", callback=_duration, help="Run no sooner than this: 10s, 5m.")
@click.option("--max-retries", type=click.IntRange(min=0), help="Retries after a failure.")
@click.option("--timeout", callback=_duration, help="Time limit of one attempt.")
@click.option("--id", "job_id", help="The job's id; enqueueing an id again does nothing.")
@click.option(
    "--wait", type=click.FloatRange(min=0), metavar="SECONDS", help="Wait for the result; print it."
)
@json_option
@pass_config
def enqueue(
    config: _Config,
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

    async def work(app: App, backend: Backend) -> Job:
        handle = await app.aenqueue(task, args, payload, **given)
        if wait is None:
            return handle.job
        await handle.aresult(wait)  # raises if the job failed or did not finish in time
        return await handle.arefresh()

    job = _run(config.load(), work)
    if as_json:
        _echo_json(job.to_dict())
    else:
        click.echo(job.id if wait is None else _compact(job.result))


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in (
        click.option("--cursor", help="Where the previous page ended."),
        click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True),
        click.option("--task", help="Only jobs of this task."),
        click.option("--queue", help="Only jobs of this queue."),
    ):
        command = option(command)
    return command


@main.group()
def jobs() -> None:
    """List, show and cancel jobs."""


@jobs.command("list")
@_global_options
@click.option("--status", type=click.Choice(STATES), help="Only jobs in this state.")
@_filters
@json_option
@pass_config
def jobs_list(config: _Config, /, status: str | None, as_json: bool, **filters: Any) -> None:
    """Jobs, newest first."""
    state = None if status is None else JobState(status)
    found, cursor = _run(config.load(), lambda app, b: b.list_jobs(state=state, **filters))
    _print_jobs(found, cursor, as_json, "no jobs")


@jobs.command("show")
@_global_options
@click.argument("job_id", metavar="ID")
@json_option
@pass_config
def jobs_show(config: _Config, job_id: str, as_json: bool) -> None:
    """Everything about one job, its errors and last traceback included."""
    job = _run(config.load(), lambda app, backend: app.aget(job_id))
    if as_json:
        _echo_json(job.to_dict())
    else:
        _show_job(job)


@jobs.command("cancel")
@_global_options
@click.argument("job_id", metavar="ID")
@json_option
@pass_config
def jobs_cancel(config: _Config, job_id: str, as_json: bool) -> None:
    """Cancel a job; a running one stops at its worker's next heartbeat."""
    job = _run(config.load(), lambda app, backend: app.acancel(job_id))
    if as_json:
        _echo_json(job.to_dict())
    elif job.state == JobState.CANCELLED:
        click.echo(f"job {job.id} cancelled")
    elif job.cancel_requested:
        click.echo(f"job {job.id} is running: cancellation requested")
    else:
        click.echo(f"job {job.id} already finished: {job.state.value}")


@main.group()
def queues() -> None:
    """List, pause and resume queues; show their statistics."""


def _find_queue(infos: list[QueueInfo], name: str) -> QueueInfo:
    return next((info for info in infos if info.name == name), QueueInfo(name))


@queues.command("list")
@_global_options
@json_option
@pass_config
def queues_list(config: _Config, as_json: bool) -> None:
    """Queues that hold jobs or are paused."""
    infos = _run(config.load(), lambda app, backend: backend.list_queues())
    if as_json:
        _echo_json([info.to_dict() for info in infos])
        return
    rows = [[i.name, "yes" if i.paused else "no", sum(i.counts.values())] for i in infos]
    _print_table(["NAME", "PAUSED", "JOBS"], rows, "no queues")


def _set_paused(config: _Config, name: str, paused: bool, as_json: bool) -> None:
    async def work(app: App, backend: Backend) -> QueueInfo:
        await backend.set_paused(name, paused)
        return _find_queue(await backend.list_queues(), name)

    info = _run(config.load(), work)
    if as_json:
        _echo_json(info.to_dict())
    else:
        click.echo(f"queue {name} {'paused' if paused else 'resumed'}")


@queues.command("pause")
@_global_options
@click.argument("name", callback=_queue_name)
@json_option
@pass_config
def queues_pause(config: _Config, name: str, as_json: bool) -> None:
    """Stop handing out NAME's jobs (new ones are still accepted)."""
    _set_paused(config, name, True, as_json)


@queues.command("resume")
@_global_options
@click.argument("name", callback=_queue_name)
@json_option
@pass_config
def queues_resume(config: _Config, name: str, as_json: bool) -> None:
    """Hand out NAME's jobs again."""
    _set_paused(config, name, False, as_json)


@queues.command("stats")
@_global_options
@click.argument("name", required=False, callback=_queue_name)
@json_option
@pass_config
def queues_stats(config: _Config, name: str | None, as_json: bool) -> None:
    """Jobs per state, whether paused, and how long the oldest due job has waited."""
    infos = _run(config.load(), lambda app, backend: backend.list_queues())
    if name is not None:
        infos = [_find_queue(infos, name)]
    now = time.time()
    ages = [None if i.oldest_pending is None else max(now - i.oldest_pending, 0.0) for i in infos]
    if as_json:
        records = [
            {**i.to_dict(), "oldest_pending_age": a} for i, a in zip(infos, ages, strict=True)
        ]
        _echo_json(records[0] if name is not None else records)
        return
    headers = ["NAME", "PAUSED", *(state.upper() for state in STATES), "OLDEST"]
    rows = [
        [i.name, "yes" if i.paused else "no", *i.counts.values(), "-" if a is None else _span(a)]
        for i, a in zip(infos, ages, strict=True)
    ]
    _print_table(headers, rows, "no queues")


@main.group()
def dlq() -> None:
    """The dead-letter queue: jobs that failed for good."""


@dlq.command("list")
@_global_options
@_filters
@json_option
@pass_config
def dlq_list(config: _Config, /, as_json: bool, **filters: Any) -> None:
    """Dead jobs, newest first."""
    found, cursor = _run(config.load(), lambda app, b: b.list_jobs(state=JobState.DEAD, **filters))
    _print_jobs(found, cursor, as_json, "the dead-letter queue is empty")


@dlq.command("requeue")
@_global_options
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Requeue every dead job.")
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--task", help="Only dead jobs of this task.")
@json_option
@pass_config
def dlq_requeue(
    config: _Config, /, ids: tuple[str, ...], everything: bool, as_json: bool, **filters: Any
) -> None:
    """Run dead jobs again from a first attempt: the IDs given, those matching --queue and
    --task, or with --all every one."""
    if everything and ids:
        raise click.UsageError("give job ids or --all, not both")
    if not (ids or everything or any(filters.values())):
        raise click.UsageError("say which jobs: give ids, --queue, --task, or --all")
    moved = _run(config.load(), lambda app, b: b.requeue(ids=ids or None, **filters))
    if as_json:
        _echo_json({"requeued": moved})
    else:
        click.echo(f"requeued {moved} job(s)")
    if ids and moved < len(set(ids)):
        raise click.ClickException(f"{len(set(ids)) - moved} of the ids given are not dead jobs")


@dlq.command("purge")
@_global_options
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--task", help="Only dead jobs of this task.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_config
def dlq_purge(
    config: _Config, queue: str | None, task: str | None, yes: bool, as_json: bool
) -> None:
    """Delete dead jobs for good."""
    if not yes:
        scope = (f" of queue {queue}" if queue else "") + (f" of task {task}" if task else "")
        click.confirm(f"Delete every dead job{scope}?", abort=True, err=True)
    removed = _run(config.load(), lambda app, backend: backend.purge(queue=queue, task=task))
    if as_json:
        _echo_json({"purged": removed})
    else:
        click.echo(f"purged {removed} job(s)")


@main.command()
@_global_options
@json_option
@pass_config
def migrate(config: _Config, as_json: bool) -> None:
    """Apply the schema migrations a PostgreSQL database lacks, under an advisory lock (so
    that concurrent runs apply each once), and record them in taskmill_migrations.

    Workers and producers apply them too when they connect; run this to do it ahead, in a
    deploy step, or with a role allowed to change the schema."""
    url = config.load().settings.url
    scheme = url.partition("://")[0]
    if scheme not in ("postgresql", "postgres"):
        raise click.ClickException(
            f"migrate is for postgresql:// URLs, not {scheme}://: SQLite applies its "
            "migrations when opened, memory:// and Redis have no schema"
        )
    import psycopg

    from taskmill.backends.postgres_sql import migrate_database

    try:
        applied, version = asyncio.run(migrate_database(url))
    except psycopg.Error as exc:
        raise click.ClickException(f"migrate failed: {exc}") from None
    if as_json:
        _echo_json({"applied": applied, "version": version})
        return
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"schema version {version}" + ("" if applied else " (up to date)"))


@main.command()
@_global_options
@json_option
@pass_config
def workers(config: _Config, as_json: bool) -> None:
    """Live workers: those seen within the last minute."""
    found = _run(config.load(), lambda app, backend: backend.list_workers())
    if as_json:
        _echo_json([info.to_dict() for info in found])
        return
    now = time.time()
    rows = [
        [
            w.id,
            ",".join(w.queues),
            f"{w.running}/{w.concurrency}",
            len(w.tasks),
            _span(now - w.started_at),
            _ago(w.last_seen, now),
        ]
        for w in found
    ]
    _print_table(["ID", "QUEUES", "RUNNING", "TASKS", "UP", "SEEN"], rows, "no live workers")


@main.command()
@_global_options
@click.option("--forever", is_flag=True, help="Keep the worker running afterwards, until Ctrl-C.")
@_logging_options("ERROR")
@pass_config
def demo(config: _Config, forever: bool, log_level: str, log_format: logs.Format) -> None:
    """Run a worker over taskmill.examples in this process, enqueue a mix of jobs, and
    watch them until every one is finished."""
    logs.setup(log_level, log_format)
    # Imported here: the examples' App reads TASKMILL_* at import, and only the demo uses it.
    from taskmill import examples

    app = config.apply_url(examples.app)
    # Progress is stored at heartbeats: beat more often than usual for a lively table.
    app.settings = dataclasses.replace(app.settings, heartbeat=min(app.settings.heartbeat, 0.25))
    redraw = sys.stdout.isatty()

    async def work(app: App, backend: Backend) -> bool:
        ids = [handle.id for handle in await app.aenqueue_many(examples.demo_jobs())]
        runner = Worker(app, concurrency=8)
        start, shown = time.monotonic(), ""

        async def draw() -> list[Job]:
            nonlocal shown
            # One query, so that the table never mixes two moments.
            recent = {job.id: job for job in (await backend.list_jobs(limit=len(ids)))[0]}
            jobs = [recent.get(job_id) or await app.aget(job_id) for job_id in ids]
            table, elapsed = _demo_table(jobs), time.monotonic() - start
            header = f"taskmill demo on {app.settings.url}: 1 worker, 8 slots, {elapsed:.1f}s"
            if redraw:
                click.echo(f"\x1b[H\x1b[2J{header}\n\n{table}\n")
            elif table != shown:
                click.echo(f"{header}\n{table}\n")
            shown = table
            return jobs

        jobs = await draw()  # every job waiting, before the worker starts
        running = asyncio.create_task(runner.run(install_signals=True))
        while not all(job.state.finished for job in jobs) and not running.done():
            await asyncio.wait([running], timeout=0.5)  # the worker stops early on Ctrl-C
            jobs = await draw()
        finished = all(job.state.finished for job in jobs)
        if finished:
            click.echo(_demo_summary(jobs, time.monotonic() - start, app.settings.url))
        if finished and forever:
            click.echo("The worker keeps running; Ctrl-C stops it.")
        else:
            runner.stop()
        await running
        return finished

    if not _run(app, work):
        click.echo("Stopped before every job finished.", err=True)
        sys.exit(130)


def _demo_table(jobs: list[Job]) -> str:
    rows = [
        [
            "…" + job.id[-8:],  # ids start with their creation time: the end tells them apart
            job.task,
            _cut(", ".join(map(_compact, job.args)), 24),
            job.priority,
            job.state.value,
            job.attempts,
            f"{job.progress:.0%}" if job.state == JobState.RUNNING and job.progress else "",
            _outcome(job, 50),
        ]
        for job in jobs
    ]
    return _table(["ID", "TASK", "ARGS", "PRIO", "STATE", "TRIES", "PROGRESS", "RESULT"], rows)


def _demo_summary(jobs: list[Job], elapsed: float, url: str) -> str:
    counts = {state: sum(job.state == state for job in jobs) for state in STATES}
    states = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    summary = f"All {len(jobs)} jobs finished in {elapsed:.1f}s: {states}."
    if counts.get("dead"):
        summary += f"\nThe dead ones wait in the dead-letter queue: taskmill --url {url} dlq list"
    return summary


# The scheduler and schedules commands live in a module of their own; importing it adds them.
from taskmill import cli_schedules  # noqa: E402, F401
