"""A lean asyncio client for one Redis server: the single-server half of the Redis backend.

Why not redis-py's: its asyncio client costs about 130 µs of Python per round trip here
(connection pool checkout, per-argument encoding, a parser in Python around hiredis),
which is most of the time a job spends in the queue. This one packs commands and parses
replies with hiredis in C, and every caller of a process shares ONE connection: pipelines
from concurrent callers are written as they come and answered in order, so a round trip
costs one write and one read whatever the concurrency. Blocking commands (BLPOP) get
connections of their own.

Faults: a dropped connection fails the calls waiting on it; `execute` reconnects and runs
the commands again, with backoff, `retries` times, then raises ConnectionError. Commands
must therefore be safe to run twice (the backend's scripts are: see lua/claim.lua).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

Command = Sequence[Any]


class ReplyError(Exception):
    """An error reply from the server (`-ERR ...`, `-NOSCRIPT ...`): returned in a
    pipeline's results, not raised, so the other commands' results are kept."""


class _Connection(asyncio.Protocol):
    """One connection: writes pipelines, hands their replies to waiters in order."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._transport: asyncio.Transport | None = None
        # Per pipeline in flight: its future, how many replies it wants, those read so far.
        self._waiters: collections.deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = (
            collections.deque()
        )
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiters = self._waiters
        while (reply := self._reader.gets()) is not False:
            future, wanted, replies = waiters[0]
            replies.append(reply)
            if len(replies) == wanted:
                waiters.popleft()
                # A cancelled caller's replies are read and dropped: the rest stay in step.
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        while self._waiters:
            future = self._waiters.popleft()[0]
            if not future.done():
                future.set_exception(ConnectionError(str(self.lost)))

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        if self.lost is not None or self._transport is None:
            raise ConnectionError(f"connection lost: {self.lost}")
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((future, len(commands), []))
        self._transport.write(b"".join([hiredis.pack_command(tuple(c)) for c in commands]))
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Client:
    """Commands to one Redis server at `url` (redis:// or rediss://, with user, password
    and db number), with reconnection."""

    def __init__(
        self, url: str, *, retries: int = 6, backoff_cap: float = 1.0, connect_timeout: float = 5.0
    ) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 6379
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._setup: list[Command] = []
        if parts.password is not None:
            user = [unquote(parts.username)] if parts.username else []
            self._setup.append(("AUTH", *user, unquote(parts.password)))
        db = parts.path.strip("/")
        if db and db != "0":
            if not db.isdigit():
                raise ValueError(f"the database in a Redis URL is a number, got {db!r}")
            self._setup.append(("SELECT", int(db)))
        self._retries, self._backoff_cap, self._timeout = retries, backoff_cap, connect_timeout
        self._shared: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._idle_blocking: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            _, conn = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl
            )
            if self._setup:
                for reply in await conn.send(self._setup):
                    if isinstance(reply, ReplyError):
                        conn.close()
                        raise reply
        return conn

    async def _connection(self) -> _Connection:
        conn = self._shared
        if conn is not None and conn.lost is None:
            return conn
        if self._closed:
            raise ConnectionError("the client is closed")
        # Concurrent callers share one attempt to connect.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            self._shared = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return self._shared

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Run commands in one pipeline; error replies come back as ReplyError objects."""
        for attempt in range(self._retries + 1):
            try:
                conn = self._shared
                if conn is None or conn.lost is not None:
                    conn = await self._connection()
                return await conn.send(commands)
            except (ConnectionError, OSError, TimeoutError):
                if attempt == self._retries or self._closed:
                    raise
                await asyncio.sleep(min(self._backoff_cap, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    async def blocking(self, command: Command) -> Any:
        """Run a blocking command on a connection of its own. A caller cancelled while it
        blocks closes that connection, so the server forgets the command at once."""
        conn = self._idle_blocking.pop() if self._idle_blocking else None
        if conn is None or conn.lost is not None:
            conn = await self._connect()
        try:
            (reply,) = await conn.send([command])
        except BaseException:
            conn.close()
            raise
        self._idle_blocking.append(conn)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def close(self) -> None:
        self._closed = True
        conns = [*self._idle_blocking, *([self._shared] if self._shared else [])]
        self._idle_blocking.clear()
        self._shared = None
        for conn in conns:
            conn.close()
        # Let the transports finish closing on this loop, so none is left for the GC.
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
