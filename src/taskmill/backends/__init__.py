"""Backends chosen by URL scheme; each is imported only when used."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskmill.backends.base import Backend, Clock, Outcome, QueueInfo, WorkerInfo
from taskmill.errors import ConfigError

__all__ = ["Backend", "Clock", "Outcome", "QueueInfo", "WorkerInfo", "connect"]


def connect(url: str, **options: Any) -> Backend:
    """A backend for `url` (not opened yet): memory://NAME or sqlite:///PATH."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from taskmill.backends.memory import MemoryBackend

        return MemoryBackend(url, **options)
    if scheme == "sqlite":
        from taskmill.backends.sqlite import SQLiteBackend

        return SQLiteBackend(url, **options)
    raise ConfigError(f"unsupported backend URL {url!r}; use memory:// or sqlite:///path")
