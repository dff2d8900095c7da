"""The `taskmill` command: run workers, enqueue jobs, inspect jobs, queues, the DLQ and workers.

Tables are for people; `--json` prints the records for scripts. Expected errors (bad input,
unknown ids, any TaskmillError, an API's refusal) end with one line on stderr and exit code
2 for usage errors, 1 for the others. Commands that read or change state go to the backend,
or with `--api URL` through the REST API of `taskmill server` (see cli/sources.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import click
import prometheus_client

from taskmill import logs
from taskmill.app import App
from taskmill.backends import Backend
from taskmill.cli.common import (
    STATES,
    BadInput,
    Config,
    Group,
    compact,
    cut,
    duration,
    echo_json,
    global_options,
    json_option,
    logging_options,
    outcome,
    pass_config,
    queues,
    run,
    table,
)
from taskmill.cli.schedules import COMMANDS as SCHEDULE_COMMANDS
from taskmill.cli.state import COMMANDS as STATE_COMMANDS
from taskmill.errors import BackendError, ConfigError
from taskmill.job import Job, JobState
from taskmill.metrics import JobMetrics
from taskmill.worker import Worker

# -- commands --------------------------------------------------------------------------------


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskmill")
@global_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """taskmill: a distributed task queue."""
    ctx.ensure_object(Config)


@main.command()
@global_options
@click.option("-q", "--queues", default="default", callback=queues, help="Queues: a,b:3 (weights).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--strict", is_flag=True, help="Take the queues in the order given, not by weight.")
@click.option("--burst", is_flag=True, help="Stop once no job is left to run.")
@click.option("--processes", type=click.IntRange(min=1), help="Size of the process pool.")
@click.option(
    "--prefetch", type=click.IntRange(min=0), help="Jobs claimed ahead [default: concurrency]."
)
@click.option("--lease", callback=duration, help="How long a claim holds a job: 30s, 2m.")
@click.option("--grace", callback=duration, help="Time running jobs get to finish on stop.")
@click.option("--heartbeat", callback=duration, help="Time between heartbeats.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    envvar="TASKMILL_METRICS_PORT",
    help="Serve this process's Prometheus metrics on this port, one per process (0: any "
    "free port, logged) [env TASKMILL_METRICS_PORT].",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--scheduler", is_flag=True, help="Also run a scheduler in this process.")
@logging_options("INFO")
@pass_config
def worker(
    config: Config,
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
        run(app, lambda app, backend: runner.run(install_signals=True))
    finally:
        if metrics is not None:
            server.shutdown()


@main.command()
@global_options
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
@click.option(
    "--allowed-hosts",
    default="",
    envvar="TASKMILL_ALLOWED_HOSTS",
    help="Host names served besides the loopback ones, comma-separated (name or name:port; "
    "* for any). Without API keys the server answers no other Host.",
)
@click.option(
    "--max-header-bytes",
    type=click.IntRange(min=1024),
    default=64 * 1024,
    show_default=True,
    envvar="TASKMILL_MAX_HEADER_BYTES",
    help="Largest request head (request line and headers), in bytes; larger: 431.",
)
@click.option(
    "--max-headers",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    envvar="TASKMILL_MAX_HEADERS",
    help="Most header fields in a request; more: 431.",
)
@click.option(
    "--head-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    envvar="TASKMILL_HEAD_TIMEOUT",
    help="Seconds a client has to send a whole request head; slower: 408, closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    envvar="TASKMILL_BODY_TIMEOUT",
    help="Seconds a client has to send a request body once its head is in; slower: 408.",
)
@click.option(
    "--keep-alive",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    envvar="TASKMILL_KEEP_ALIVE",
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    envvar="TASKMILL_MAX_CONNECTIONS",
    help="Most open connections; more: 503, closed. [default: 1000, or the open-file "
    "limit less 64 if lower]",
)
@click.option(
    "--metrics-max-queues",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar="TASKMILL_METRICS_MAX_QUEUES",
    help="Queues with series of their own in /metrics; the others are summed as (other).",
)
@logging_options("INFO")
@pass_config
def server(
    config: Config,
    /,
    log_level: str,
    log_format: logs.Format,
    max_header_bytes: int,
    max_headers: int,
    head_timeout: float,
    body_timeout: float,
    keep_alive: int,
    max_connections: int | None,
    **options: Any,
) -> None:
    """Serve the REST API (and /metrics) over the app's backend, until Ctrl-C.

    API keys come from TASKMILL_API_KEYS (KEY:admin or KEY:read, comma-separated); without
    any, the server serves loopback only."""
    logs.setup(log_level, log_format)
    try:
        from taskmill.server.limits import HttpLimits, default_max_connections
        from taskmill.server.run import serve
    except ImportError as exc:
        raise click.ClickException(f"the server needs taskmill[server] ({exc})") from None
    limits = HttpLimits(
        max_header_bytes=max_header_bytes,
        max_headers=max_headers,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        keep_alive=keep_alive,
        max_connections=max_connections or default_max_connections(),
    )
    app = config.load()
    if urlsplit(app.settings.url).scheme == "memory":
        raise BadInput(
            f"the server cannot serve {app.settings.url}: a memory backend lives in one "
            "process, so no worker could see its jobs; use sqlite:///, redis:// or postgresql://"
        )
    serve(app, limits=limits, **options)


@main.command()
@global_options
@json_option
@pass_config
def migrate(config: Config, as_json: bool) -> None:
    """Apply the schema migrations a PostgreSQL database lacks, under an advisory lock (so
    that concurrent runs apply each once), and record them in taskmill_migrations.

    Workers and producers apply them too when they connect; run this to do it ahead, in a
    deploy step, or with a role allowed to change the schema."""
    backend = config.load().unopened_backend()
    try:
        applied, version = asyncio.run(backend.migrate())
    except BackendError as exc:
        raise click.ClickException(f"migrate failed: {exc}") from None
    if as_json:
        echo_json({"applied": applied, "version": version})
        return
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"schema version {version}" + ("" if applied else " (up to date)"))


@main.command()
@global_options
@click.option("--forever", is_flag=True, help="Keep the worker running afterwards, until Ctrl-C.")
@logging_options("ERROR")
@pass_config
def demo(config: Config, forever: bool, log_level: str, log_format: logs.Format) -> None:
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
            drawn, elapsed = _demo_table(jobs), time.monotonic() - start
            header = f"taskmill demo on {app.settings.url}: 1 worker, 8 slots, {elapsed:.1f}s"
            if redraw:
                click.echo(f"\x1b[H\x1b[2J{header}\n\n{drawn}\n")
            elif drawn != shown:
                click.echo(f"{header}\n{drawn}\n")
            shown = drawn
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

    if not run(app, work):
        click.echo("Stopped before every job finished.", err=True)
        sys.exit(130)


def _demo_table(jobs: list[Job]) -> str:
    rows = [
        [
            "…" + job.id[-8:],  # ids start with their creation time: the end tells them apart
            job.task,
            cut(", ".join(map(compact, job.args)), 24),
            job.priority,
            job.state.value,
            job.attempts,
            f"{job.progress:.0%}" if job.state == JobState.RUNNING and job.progress else "",
            outcome(job, 50),
        ]
        for job in jobs
    ]
    return table(["ID", "TASK", "ARGS", "PRIO", "STATE", "TRIES", "PROGRESS", "RESULT"], rows)


def _demo_summary(jobs: list[Job], elapsed: float, url: str) -> str:
    counts = {state: sum(job.state == state for job in jobs) for state in STATES}
    states = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    summary = f"All {len(jobs)} jobs finished in {elapsed:.1f}s: {states}."
    if counts.get("dead"):
        summary += f"\nThe dead ones wait in the dead-letter queue: taskmill --url {url} dlq list"
    return summary


for command in (*STATE_COMMANDS, *SCHEDULE_COMMANDS):
    main.add_command(command)
