"""Wake-ups for idle workers: ONE connection per process (per event loop and database)
runs LISTEN taskmill, and hands each notification to the waiters of its queue.

Every insert notifies its queues (a trigger, see 0001_init.sql), as do finishing attempts
that leave jobs waiting, rescues, requeues and resuming a queue. A waiter registers
before it looks for due jobs, so no notification falls between its look and its sleep.
While the connection is down, notifications are lost: every waiter is woken when it is
lost and when it is back, to look again, and waiters poll meanwhile (their timeout).

A waiter may also leave a claim to run when its queue is notified: it runs on this
connection, whose server process has just woken to send the notification (a pooled
connection's would have to wake first, a cost an idle worker's latency feels), and the
waiter wakes with its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg

log = logging.getLogger("taskmill.postgres")

#: Longest pause between attempts to connect again.
MAX_BACKOFF = 5.0

#: A claim to run on the listening connection.
Claim = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


class Listener:
    """The LISTEN connection of one event loop to one database, shared by its backends."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.users = 0
        #: Set while the connection listens.
        self.listening = asyncio.Event()
        self._waiters: dict[asyncio.Event, tuple[frozenset[str], Claim | None]] = {}
        self._task = asyncio.create_task(self._run(), name="taskmill-postgres-listen")

    def add(self, event: asyncio.Event, queues: Iterable[str], claim: Claim | None = None) -> None:
        self._waiters[event] = (frozenset(queues), claim)

    def remove(self, event: asyncio.Event) -> None:
        self._waiters.pop(event, None)

    def _wake(self, queue: str | None) -> None:
        for event, (queues, _) in self._waiters.items():
            if queue is None or queue in queues:
                event.set()

    async def _serve(self, conn: psycopg.AsyncConnection[Any], queue: str) -> None:
        """Run the claims left for `queue` on the listening connection, then wake."""
        for event, (queues, claim) in list(self._waiters.items()):
            if queue in queues and claim is not None and not event.is_set():
                try:
                    await claim(conn)
                except Exception:  # its waiter, woken anyway, claims on its own
                    log.exception("a claim on the LISTEN connection failed")
        self._wake(queue)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN taskmill")
                    self.listening.set()
                    self._wake(None)  # what was sent while no one listened
                    backoff = 0.05
                    while True:
                        # One at a time, so that a claim can run on the connection between.
                        woken = [n.payload async for n in conn.notifies(stop_after=1)]
                        for queue in dict.fromkeys(woken):
                            await self._serve(conn, queue)
            except (psycopg.Error, OSError) as exc:
                if self.listening.is_set():
                    log.warning("lost the LISTEN connection (%s); reconnecting", exc)
            self.listening.clear()
            self._wake(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


_listeners: dict[tuple[asyncio.AbstractEventLoop, str], Listener] = {}


def acquire(conninfo: str) -> Listener:
    """The running loop's listener to this database, started on first use."""
    key = (asyncio.get_running_loop(), conninfo)
    listener = _listeners.get(key)
    if listener is None:
        listener = _listeners[key] = Listener(conninfo)
    listener.users += 1
    return listener


async def release(listener: Listener) -> None:
    """Give a listener back; the last user closes it."""
    listener.users -= 1
    if listener.users == 0:
        for key, known in list(_listeners.items()):
            if known is listener:
                del _listeners[key]
        await listener.close()
