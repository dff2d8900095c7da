"""Redis Cluster for the Redis backend, through redis-py's cluster client, which knows the
slots and follows MOVED/ASK. It offers what the backend uses of redis_client.Client, and
gives replies as that client does."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from taskmill.backends.base import cancellable
from taskmill.backends.redis_client import ReplyError
from taskmill.backends.redis_scripts import Op
from taskmill.errors import ConfigError


def _raw(reply: Any) -> Any:
    """A reply of redis-py's as the server sent it (as redis_client.Client gives it)."""
    if isinstance(reply, ResponseError):
        return ReplyError(str(reply))
    if isinstance(reply, dict):  # HGETALL
        return [value for pair in reply.items() for value in pair]
    if isinstance(reply, set):  # SMEMBERS
        return list(reply)
    return reply


class Cluster:
    """The nodes of a `redis+cluster://h:p,h:p` or `rediss+cluster://` URL, where discovery
    starts; a command after a connection error is tried again `retries` times."""

    def __init__(self, url: str, *, retries: int) -> None:
        parts = urlsplit(url)
        nodes = []
        for node in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"invalid Redis Cluster URL {url!r}; use {parts.scheme}://h:p,h:p"
                )
            nodes.append(ClusterNode(host, int(port)))
        self._redis = RedisCluster(
            startup_nodes=nodes,
            password=parts.password,
            username=parts.username,
            ssl=parts.scheme == "rediss+cluster",
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            socket_connect_timeout=5.0,
            socket_keepalive=True,
        )

    async def execute(self, commands: Sequence[Op]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        with cancellable():
            results = await pipe.execute(raise_on_error=False)
        return [_raw(r) for r in results]

    async def blocking(self, commands: Sequence[Op], seconds: float) -> list[Any]:
        # The backend sends a cluster one command at a time (the slots differ).
        ((command,)) = commands
        with cancellable():
            return [await self._redis.execute_command(*command)]

    async def load(self, library: str) -> None:
        await self._redis.function_load(library, replace=True)  # to every primary

    async def close(self) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.aclose()
