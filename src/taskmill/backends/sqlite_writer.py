"""The SQLite backend's connection: one thread owns it, and concurrent writes share a commit.

SQLite calls block, so they run on a thread of their own and the event loop never waits on
the disk or on another process's write lock; one connection serves an instance, so that
thread is its only user. A commit costs more than most writes, so the writes that arrive
while one transaction commits go together in the next, each in a savepoint of its own: each
stays atomic and a failing one undoes only itself, while a claim shares its commit with the
finish of the batch before it, and many producers' enqueues share one.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from taskmill.errors import BackendError, BackendUnavailable

T = TypeVar("T")

#: How long a call waits for another process's lock before failing.
BUSY_TIMEOUT = 10.0

_Batch = list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]


class Writer:
    """The connection to one database file, and the thread that uses it."""

    # Set on the thread by open(); only that thread uses it.
    _conn: sqlite3.Connection

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        # Writes waiting for the next transaction, and the task that commits them.
        self._writes: _Batch = []
        self._committer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start the thread and connect; close() undoes a failed open."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="taskmill-sqlite")
        await self._call(self._connect)
        await self.run(lambda conn: conn.execute("PRAGMA journal_mode = WAL"))

    def _connect(self) -> None:
        # timeout=0: _patiently() waits for locks instead of SQLite's busy handler.
        self._conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        # A bulk enqueue touches more pages than the default 2 MiB cache holds, and spilling
        # them mid-transaction slows its inserts down.
        self._conn.execute("PRAGMA cache_size = -65536")

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        try:
            if hasattr(self, "_conn"):
                await self._call(self._conn.close)
        finally:
            self._executor.shutdown()
            self._executor = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) on the thread, outside a transaction: for reads."""
        return await self._call(lambda: fn(self._conn))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) in a write transaction, atomically, maybe beside other writes."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writes.append((fn, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_writes())
        return await future

    async def _commit_writes(self) -> None:
        while self._writes:
            batch, self._writes = self._writes, []
            try:
                results = await self._call(functools.partial(self._transaction, batch))
            except BaseException as exc:
                results = [(False, exc)] * len(batch)
                if not isinstance(exc, Exception):
                    _settle(batch, results)
                    raise
            _settle(batch, [
                (ok, value if ok or not isinstance(value, sqlite3.Error) else self._error(value))
                for ok, value in results
            ])  # fmt: skip

    def _transaction(self, batch: _Batch) -> list[tuple[bool, Any]]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = _each(conn, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return results

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise BackendError(f"SQLite backend {self.path} is not open")
        call = functools.partial(_patiently, fn)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> BackendError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        error = BackendUnavailable if code in _AWAY else BackendError
        return error(f"SQLite database {self.path}: {exc}")


#: Result codes that say the database is away for now rather than refusing the statement:
#: a lock another process held past our patience, the disk failing or full, the file gone.
_AWAY = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
})  # fmt: skip


def _patiently(fn: Callable[[], T]) -> T:
    """Call fn, again while another process holds the lock it needs (a failed transaction
    was rolled back, so fn may run again).

    Not SQLite's busy handler: it sleeps up to 100 ms between tries, and so loses the lock
    race to busier processes for long enough that leases expire."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.0005, 0.002))


def _each(conn: sqlite3.Connection, batch: _Batch) -> list[tuple[bool, Any]]:
    """Run the writes of one transaction; each in a savepoint when it has company."""
    if len(batch) == 1:
        return [(True, batch[0][0](conn))]
    results: list[tuple[bool, Any]] = []
    for fn, _ in batch:
        conn.execute("SAVEPOINT write")
        try:
            results.append((True, fn(conn)))
        except Exception as exc:
            conn.execute("ROLLBACK TO write")
            results.append((False, exc))
        conn.execute("RELEASE write")
    return results


def _settle(batch: _Batch, results: list[tuple[bool, Any]]) -> None:
    for (_, future), (ok, value) in zip(batch, results, strict=True):
        if not future.done():  # its caller may have gone
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
