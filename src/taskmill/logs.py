"""Structured logs: JSON, one event per line, carrying the context bound where it happens
(the worker binds its id; each job its id, task, queue and attempt); readable colour lines
when the stream is a terminal.

The context lives in a ContextVar, so every asyncio task and every handler run in the
thread pool (which copies the context) logs with the fields of its own job.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import orjson

Format = Literal["auto", "json", "text"]

_context: ContextVar[dict[str, Any]] = ContextVar("taskmill_log_context", default={})  # noqa: B039 - never mutated
#: Attributes every LogRecord has: any other one came from `extra=` and is logged too.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}  # fmt: skip


def bind(**fields: Any) -> None:
    """Add fields to the context of the running task (and of the tasks it starts later)."""
    _context.set({**_context.get(), **fields})


def context() -> dict[str, Any]:
    return _context.get()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    return {**_context.get(), **extra}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(event, default=str).decode()


_COLOURS = {"DEBUG": "36", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


class ConsoleFormatter(logging.Formatter):
    """`12:00:01.234 INFO  taskmill.worker  message  key=value ...`, coloured by level."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = f"\x1b[{_COLOURS.get(record.levelname, '0')}m{record.levelname:<5}\x1b[0m"
        fields = " ".join(f"\x1b[2m{k}=\x1b[0m{v}" for k, v in _fields(record).items())
        line = (
            f"\x1b[2m{clock}.{int(record.msecs):03d}\x1b[0m {level} \x1b[2m{record.name}\x1b[0m  "
        )
        line += record.getMessage() + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


def setup(level: str = "INFO", fmt: Format = "auto", stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr): JSON lines, or with "auto" colour text on a terminal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    text = fmt == "text" or (fmt == "auto" and stream.isatty())
    handler.setFormatter(ConsoleFormatter() if text else JSONFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
