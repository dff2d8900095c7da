"""What the commands share: the global options, option parsing, the event loop, tables."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import orjson

from taskmill.app import App
from taskmill.backends import Backend
from taskmill.errors import ConfigError, JobError, ScheduleError, TaskmillError
from taskmill.job import (
    MAX_RETRIES,
    Job,
    JobState,
    check_id,
    check_max_retries,
    check_queue_name,
    check_timeout,
    parse_duration,
    parse_priority,
)
from taskmill.worker import parse_queues

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

STATES = [state.value for state in JobState]
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


# -- where the app, or the API, comes from ----------------------------------------------------


@dataclass
class Config:
    """The global options, which may be given before the command or after it."""

    url: str | None = None
    app: str | None = None
    api: str | None = None
    api_key: str | None = None

    def load(self, *, need_app: bool = False) -> App:
        self._refuse_api()
        if self.app is None:
            if need_app:
                raise click.UsageError("give --app module:attr, the app whose tasks to run")
            # Without the app only task names are known: enqueue cannot check arguments.
            return App(self.url, strict=False)
        return self.apply_url(import_app(self.app))

    def apply_url(self, app: App) -> App:
        self._refuse_api()
        if self.url is not None:
            app.settings = dataclasses.replace(app.settings, url=self.url)
        return app

    def _refuse_api(self) -> None:
        """Called by the commands that use the backend itself: ignoring --api, they would
        work on a local database while the user means the server's."""
        if self.api is not None:
            command = click.get_current_context().command_path
            raise BadInput(
                f"{command} does not go through the API: --api serves enqueue, jobs, queues, "
                "dlq and workers"
            )


def import_app(spec: str) -> App:
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
        setattr(ctx.ensure_object(Config), str(param.name), value)


_GLOBALS = {
    "--url": ("URL", "Backend URL [env TASKMILL_URL; default sqlite:///taskmill.db]."),
    "--app": ("MODULE:ATTR", "The App whose tasks to use, imported with the cwd on sys.path."),
    "--api": ("URL", "Go through the REST API served there, not the backend [env TASKMILL_API]."),
    "--api-key": ("KEY", "The API key to send with --api [env TASKMILL_API_KEY]."),
}


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, (metavar, help) in reversed(_GLOBALS.items()):
        command = click.option(
            name, callback=_remember, expose_value=False, metavar=metavar, help=help
        )(command)
    return command


pass_config = click.make_pass_decorator(Config, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# -- running, parsing, errors ----------------------------------------------------------------


def run(app: App, work: Callable[[App, Backend], Awaitable[T]]) -> T:
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


class BadInput(click.ClickException):
    """Bad usage or input, in one line: unlike click.UsageError, without the usage text."""

    exit_code = 2


#: The errors that say what was given is wrong (a URL, a task name, arguments, a schedule),
#: not that the state or the backend refused it: exit code 2, as for click's own usage errors.
BAD_INPUT = (ConfigError, JobError, ScheduleError)


class Group(click.Group):
    """The one place where taskmill's errors become exit codes: 2 for bad input, 1 else."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BAD_INPUT as exc:
            raise BadInput(str(exc)) from None
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


# The same checks as App.make_job's (taskmill.job), so that a bad value is a usage error
# here, in the words the Python API and the REST API use.
duration = _parsed(parse_duration)
timeout = _parsed(check_timeout)
queue_name = _parsed(check_queue_name)
identifier = _parsed(check_id)
max_retries = click.option(
    "--max-retries",
    type=int,
    callback=_parsed(check_max_retries),
    help=f"Retries after a failure (0-{MAX_RETRIES}).",
)
priority = _parsed(parse_priority)
queues = _parsed(parse_queues)
json_object = _parsed(_json_of(dict))
json_array = _parsed(_json_of(list))


def logging_options(default: str) -> Decorator:
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


# -- output ----------------------------------------------------------------------------------


def echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    click.echo(table(headers, rows) if rows else empty)


def cut(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s"


def ago(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    return f"{span(now - when)} ago" if when <= now else f"in {span(when - now)}"


def outcome(job: Job, width: int) -> str:
    """The result of a job that succeeded, else its last error."""
    if job.state == JobState.SUCCEEDED:
        return cut(compact(job.result), width)
    return cut(job.error or "", width)
