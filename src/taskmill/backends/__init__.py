"""Backends chosen by URL scheme; each is imported only when used."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskmill.backends.base import Backend, Clock, Lease, Outcome, QueueInfo, WorkerInfo
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
]


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
    if scheme in ("postgresql", "postgres"):
        try:
            from taskmill.backends.postgres import PostgresBackend
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL backend needs psycopg 3 and psycopg_pool ({exc}); "
                "install taskmill[postgres]"
            ) from None
        return PostgresBackend(url, **options)
    raise ConfigError(
        f"unsupported backend URL {url!r}; use memory://, sqlite:///path, redis://host "
        "or postgresql://host/db"
    )


def connect_blocking(url: str, **options: Any) -> Backend | None:
    """For the sync API: a backend whose coroutines never suspend, their I/O blocking the
    calling thread, which then drives them with no event loop and no thread switch. None
    for the backends without such a mode (all but one Redis server)."""
    if urlsplit(url).scheme in ("redis", "rediss"):
        return connect(url, blocking=True, **options)
    return None
