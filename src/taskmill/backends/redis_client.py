"""A lean asyncio client for one Redis server: the single-server half of the Redis backend.

Why not redis-py's: the Python its asyncio client runs per round trip (connection pool
checkout, per-argument encoding, a parser in Python around hiredis) was most of the time a
job spent in the queue (docs/performance.md). This one packs commands and parses replies
with hiredis in C, and every caller of a process shares ONE connection: pipelines from
concurrent callers are written as they come and answered in order, so a round trip costs
one write and one read whatever the concurrency. Blocking commands (BLPOP) get connections
of their own.

BlockingClient offers the same over blocking sockets, one per thread, for the sync API:
a call from a thread without an event loop then costs no thread switch, and a blocking
round trip a fraction of the CPU of one through asyncio. It waits for a reply spinning a
little before it sleeps (see SPIN).

Faults: a dropped connection fails the calls waiting on it; `execute` reconnects and runs
the commands again, with backoff, `retries` times, then raises ConnectionError. Commands
must therefore be safe to run twice (the backend's scripts are: see lua/claim.lua).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

Command = Sequence[Any]


class ReplyError(Exception):
    """An error reply from the server (`-ERR ...`, `-LOADING ...`): returned in a
    pipeline's results, not raised, so the other commands' results are kept."""


def _pack(commands: Sequence[Command]) -> bytes:
    if len(commands) == 1:  # most calls
        packed: bytes = hiredis.pack_command(tuple(commands[0]))
        return packed
    return b"".join([hiredis.pack_command(tuple(c)) for c in commands])


@dataclass(frozen=True)
class Server:
    """Where a redis:// or rediss:// URL points, and what a new connection sends first."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    setup: list[Command] = field(default_factory=list)

    @classmethod
    def from_url(cls, url: str) -> Server:
        parts = urlsplit(url)
        setup: list[Command] = []
        if parts.password is not None:
            user = [unquote(parts.username)] if parts.username else []
            setup.append(("AUTH", *user, unquote(parts.password)))
        db = parts.path.strip("/")
        if db and db != "0":
            if not db.isdigit():
                raise ValueError(f"the database in a Redis URL is a number, got {db!r}")
            setup.append(("SELECT", int(db)))
        context = ssl.create_default_context() if parts.scheme == "rediss" else None
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379, context, setup)


def _unless_loading(replies: list[Any]) -> list[Any]:
    """The replies, unless the server was still loading its data after a restart: then none
    of the commands ran, and the caller retries them as after a dropped connection (the
    same commands: a claim retried keeps its nonce, so no job is taken twice or lost)."""
    for reply in replies:
        if isinstance(reply, ReplyError) and str(reply).startswith("LOADING"):
            raise ConnectionError(f"Redis is loading its data: {reply}")
    return replies


def _raise_errors(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise reply


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
        #: The server's id of this connection (blocking connections only).
        self.id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not a subclass of asyncio.Transport, but is one).
        self._transport = cast(asyncio.Transport, transport)

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
        self._transport.write(_pack(commands))
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Commands:
    """What both clients share: where the server is, how long to wait, how often to retry."""

    def __init__(
        self,
        url: str,
        *,
        retries: int = 6,
        backoff_cap: float = 1.0,
        connect_timeout: float = 5.0,
        reply_timeout: float = 30.0,
    ) -> None:
        """reply_timeout: a connection that answers nothing for this long is given up for
        dead and the calls on it are made again; no command of the backend takes that long."""
        self._server = Server.from_url(url)
        self._retries, self._backoff_cap = retries, backoff_cap
        self._timeout, self._reply_timeout = connect_timeout, reply_timeout

    def _backoff(self, attempt: int) -> float:
        return min(self._backoff_cap, 0.05 * 2.0**attempt)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        raise NotImplementedError

    async def load(self, library: str) -> None:
        """FUNCTION LOAD a library of functions, replacing one of the same name."""
        _raise_errors(await self.execute([("FUNCTION", "LOAD", "REPLACE", library)]))


class Client(_Commands):
    """Commands to one Redis server at `url` (redis:// or rediss://, with user, password
    and db number), with reconnection."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._shared: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._idle_blocking: list[_Connection] = []
        self._closed = False

    async def _connect(self, *, blocking: bool = False) -> _Connection:
        loop = asyncio.get_running_loop()
        server = self._server
        # A blocking connection learns its id, for CLIENT KILL when its caller gives up.
        setup = [*server.setup, ("CLIENT", "ID")] if blocking else server.setup
        async with asyncio.timeout(self._timeout):
            _, conn = await loop.create_connection(
                _Connection, server.host, server.port, ssl=server.ssl
            )
            if setup:
                try:
                    replies = await conn.send(setup)
                    _raise_errors(replies)
                except BaseException:
                    conn.close()
                    raise
                if blocking:
                    conn.id = replies[-1]
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
                try:
                    async with asyncio.timeout(self._reply_timeout):
                        return _unless_loading(await conn.send(commands))
                except TimeoutError:
                    conn.close()  # half-open, most likely: every caller on it starts over
                    raise
            except OSError:  # ConnectionError and TimeoutError among them
                if attempt == self._retries or self._closed:
                    raise
                await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    async def blocking(self, commands: Sequence[Command], seconds: float) -> list[Any]:
        """Run a pipeline whose first command blocks up to `seconds` on the server, on a
        connection of its own: the commands after it run as soon as it returns, with no
        round trip between. A caller cancelled meanwhile closes that connection and has the
        server kill it: by the time the cancellation is raised, the commands after the
        blocking one have run or never will. No answer in time (a server gone without a
        word) is a TimeoutError. Error replies come back as ReplyError objects."""
        conn = self._idle_blocking.pop() if self._idle_blocking else None
        if conn is None or conn.lost is not None:
            conn = await self._connect(blocking=True)
        try:
            async with asyncio.timeout(seconds + self._timeout):
                replies = await conn.send(commands)
        except asyncio.CancelledError:
            conn.close()
            # Closing alone leaves the server to notice in its own time, and a command
            # queued behind the blocking one could still run meanwhile. Once the kill is
            # answered, whatever ran has run and nothing more will.
            with contextlib.suppress(OSError):
                await self.execute([("CLIENT", "KILL", "ID", conn.id)])
            raise
        except BaseException:
            conn.close()
            raise
        self._idle_blocking.append(conn)
        return replies

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


#: How long a blocking call watches for its reply before it sleeps in recv, when it follows
#: another call of its thread within RECENT seconds. A thread that sleeps is woken by the
#: reply, which costs more than the server's whole work (docs/performance.md). A thread
#: calling in a row is busy with its calls anyway; one that calls now and then sleeps,
#: leaving the CPU to whatever the reply wakes (a worker on the same machine starts the job
#: sooner). Watching yields the CPU to any thread that wants it, and is off when the process
#: has one CPU and over TLS (the socket's readiness is not the reply's).
SPIN = 200e-6
RECENT = 1e-3


class _BlockingConnection:
    """One blocking socket; `pid` tells a forked child not to share its parent's."""

    def __init__(self, server: Server, timeout: float, reply_timeout: float) -> None:
        sock = socket.create_connection((server.host, server.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(reply_timeout)
        if server.ssl is not None:
            sock = server.ssl.wrap_socket(sock, server_hostname=server.host)
        self.sock, self.pid = sock, os.getpid()
        # When its thread ends, close the socket here rather than warn of it in the GC.
        weakref.finalize(self, sock.close)
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._readable: select.poll | None = None
        self._last_reply = 0.0
        if server.ssl is None and len(os.sched_getaffinity(0)) > 1:
            self._readable = select.poll()
            self._readable.register(sock, select.POLLIN)
        if server.setup:
            try:
                _raise_errors(self.send(server.setup))
            except BaseException:
                sock.close()
                raise

    def send(self, commands: Sequence[Command]) -> list[Any]:
        self.sock.sendall(_pack(commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                if self._readable is not None and time.perf_counter() - self._last_reply < RECENT:
                    self._watch(self._readable)
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed by the server")
                self._reader.feed(data)
            else:
                replies.append(reply)
        self._last_reply = time.perf_counter()
        return replies

    @staticmethod
    def _watch(readable: select.poll) -> None:
        """Return once the socket is readable, or after SPIN seconds."""
        deadline = time.perf_counter() + SPIN
        while not readable.poll(0) and time.perf_counter() < deadline:
            os.sched_yield()


class BlockingClient(_Commands):
    """Client's `execute` over blocking sockets, one per thread. It is a coroutine so that
    the backend's code serves both, but it never suspends: a caller with no event loop
    drives it to its end with one `send(None)`."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._local = threading.local()
        # Every thread's connection, to close them all; one dies with its thread.
        self._all: weakref.WeakSet[_BlockingConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _connection(self) -> _BlockingConnection:
        conn: _BlockingConnection | None = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = _BlockingConnection(self._server, self._timeout, self._reply_timeout)
            self._local.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        for attempt in range(self._retries + 1):
            try:
                return _unless_loading(self._connection().send(commands))
            except OSError:  # ConnectionError and TimeoutError among them
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.sock.close()
                    self._local.conn = None
                if attempt == self._retries:
                    raise
                # Blocking is this client's purpose: it never runs on an event loop.
                time.sleep(self._backoff(attempt))  # noqa: ASYNC251
        raise AssertionError("unreachable")

    async def close(self) -> None:
        with self._lock:
            conns = list(self._all)
            self._all.clear()
        for conn in conns:
            conn.sock.close()
