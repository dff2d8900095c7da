"""Backends chosen by URL scheme; each is imported only when used."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from taskmill.backends.base import Backend, Clock
from taskmill.backends.rules import Lease, Outcome, QueueInfo, WorkerInfo
from taskmill.errors import ConfigError

__all__ = [
    "Backend",
    "Clock",
    "Lease",
    "Outcome",
    "QueueInfo",
    "WorkerInfo",
    "connect",
    "connect_blocking",
    "drive",
]

T = TypeVar("T")
POSTGRES = ("postgresql", "postgres")


def connect(url: str, **options: Any) -> Backend:
    """A backend for `url` (not opened yet): memory://NAME, sqlite:///PATH, redis://HOST,
    rediss://HOST, redis+cluster://HOST:PORT,HOST:PORT, or postgresql://USER@HOST/DB."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from taskmill.backends.memory import MemoryBackend

        return MemoryBackend(url, **options)
    if scheme == "sqlite":
        from taskmill.backends.sqlite import SQLiteBackend

        return SQLiteBackend(url, **options)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        try:
            from taskmill.backends.redis import RedisBackend
        except ImportError as exc:
            raise ConfigError(
                f"the Redis backend needs redis-py and hiredis ({exc}); install taskmill[redis]"
            ) from None
        return RedisBackend(url, **options)
    if scheme in POSTGRES:
        try:
            from taskmill.backends.postgres import PostgresBackend
        except ImportError as exc:
            raise _no_postgres(exc) from None
        return PostgresBackend(url, **options)
    raise ConfigError(
        f"unsupported backend URL {url!r}; use memory://, sqlite:///path, redis://host "
        "or postgresql://host/db"
    )


def connect_blocking(url: str, **options: Any) -> Backend | None:
    """For the sync API, the backend's own way to serve it in the calling thread: a backend
    of the same store (not opened yet) whose coroutines for the sync API's single calls
    (enqueue, get, cancel) never suspend, their I/O blocking the calling thread, which then
    runs them with `drive`: no event loop, no hop to another thread. None for the backends
    without one. One Redis server: every call blocks (redis_client.BlockingClient).
    PostgreSQL: those calls, on a connection of the calling thread's own."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return connect(url, blocking=True, **options)
    if scheme in POSTGRES:
        try:
            from taskmill.backends.postgres import ThreadBackend
        except ImportError as exc:
            raise _no_postgres(exc) from None
        return ThreadBackend(url, **options)
    return None


def _no_postgres(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"the PostgreSQL backend needs psycopg 3 and psycopg_pool ({exc}); "
        "install taskmill[postgres]"
    )


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run to its end, in this thread, a coroutine that never suspends (a blocking
    backend's: its I/O blocks instead)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a blocking backend's coroutine suspended")
