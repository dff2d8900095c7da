"""The PostgreSQL backend: jobs in tables of an existing database, for any number of
worker processes and machines, with enqueue inside the caller's own transactions.

URLs: `postgresql://user:password@host:port/dbname` (or `postgres://`), libpq's; its
query options apply, e.g. `?options=-csearch_path%3Dmyschema` for the tables' schema.

Statements are in sql/postgres/queries.sql, the schema in numbered migrations beside
them (postgres_sql.py runs them); sql/postgres/schema.sql shows the schema they make, to
read. Every change of state is one statement (claim: one function call),
atomic on its own; batches (enqueue, claim, heartbeat, finish) take one round trip. Claims
lock rows with SKIP LOCKED, so concurrent workers never wait on each other. Idle workers
sleep until a notification (postgres_listen.py) or their poll interval.

Connections come from a pool (psycopg_pool), which replaces broken ones with backoff: a
restarted server costs the calls in flight a BackendError, and the worker retries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from taskmill.backends import postgres_listen
from taskmill.backends.base import Backend, Clock, cancellable
from taskmill.backends.migrations import migrations
from taskmill.backends.postgres_schedules import PostgresSchedules
from taskmill.backends.postgres_sql import (
    QUERIES,
    claimed,
    insert,
    insert_sync,
    job,
    migrate,
    migrate_database,
    quarantines,
    readable,
    schema_version,
)
from taskmill.backends.rules import (
    CLOCK_CHECK,
    CORRUPT,
    THROUGHPUT_WINDOW,
    WORKER_TTL,
    Heartbeat,
    Listing,
    Outcome,
    QueueInfo,
    WorkerInfo,
    fold_counts,
    in_claim_order,
    rescue,
    sift,
)
from taskmill.errors import BackendError, BackendUnavailable, ConfigError
from taskmill.job import Job, JobState, decode

#: Connections per backend instance at most: a worker uses one for claims, one for
#: outcomes, one for heartbeats, one for upkeep, and one per waiting probe at a time.
POOL_SIZE = 8
#: How long a call waits for a pooled connection (all busy, or the server is down).
POOL_TIMEOUT = 10.0
#: Seconds open() waits for its first connection (libpq's connect_timeout).
CONNECT_TIMEOUT = 5
#: Expired leases rescued, and finished jobs pruned, per `maintain` at most.
MAINTAIN_BATCH = 5_000
_T = TypeVar("_T")


def _failure(url: str, exc: psycopg.Error) -> BackendError:
    """The backend's error for a driver's: an OperationalError or InterfaceError (the
    server down or restarting, a connection lost, the pool empty) says it is away; any
    other is a refusal of the statement."""
    away = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    reason = " ".join(str(exc).split())  # libpq's hints come on lines of their own
    return (BackendUnavailable if away else BackendError)(f"PostgreSQL {_where(url)}: {reason}")


def _where(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username
    return urlunsplit((parts.scheme, f"{user}@{host}" if user else host, parts.path, "", ""))


async def _claim_on(
    conn: AsyncConnection[Any],
    queues: list[str],
    worker_id: str,
    limit: int,
    lease: float,
    now: float,
) -> list[Job]:
    """Backend._claim on `conn`. The function returns its rows in no order. A record that
    cannot be read is quarantined by the statement that follows, only then; should the
    process die between the two, the lease expires and upkeep quarantines it."""
    params = {"queues": queues, "worker": worker_id, "limit": limit, "now": now,
              "lease_until": now + lease}  # fmt: skip
    rows = await (await conn.execute(QUERIES["claim"], params)).fetchall()
    taken, bad = sift(rows, claimed)
    if bad:
        await conn.execute(QUERIES["quarantine"], quarantines(bad, now))
    return in_claim_order(queues, taken)


@contextlib.contextmanager
def _caller_errors() -> Iterator[None]:
    """The driver's errors on a caller's connection, as BackendError."""
    try:
        yield
    except psycopg.Error as exc:
        hint = "; run `taskmill migrate`" if isinstance(exc, psycopg.errors.UndefinedTable) else ""
        raise BackendError(f"enqueue on the given connection failed: {exc}{hint}") from exc


class PostgresBackend(PostgresSchedules, Backend):
    """Jobs in PostgreSQL (`postgresql://...`); see the module docstring."""

    def __init__(self, url: str, clock: Clock = time.time) -> None:
        super().__init__(clock)
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"not a PostgreSQL URL: {url!r}")
        self.url = url
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._listener: postgres_listen.Listener | None = None
        self._closer: asyncio.Task[None] | None = None

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise _failure(self.url, exc) from exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if self._pool is None:
            raise BackendError(f"PostgreSQL backend {_where(self.url)} is not open")
        with self._errors(), cancellable():
            async with self._pool.connection() as conn:
                yield conn

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the named query; its rows."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES[name], params)
            return await cursor.fetchall() if cursor.description else []

    async def _count(self, name: str, params: Mapping[str, Any]) -> int:
        """Run the named query; how many rows it changed (or the count it selects)."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES[name], params)
            if cursor.description:
                row = await cursor.fetchone()
                return 0 if row is None else int(row[0])
            return cursor.rowcount

    async def open(self) -> None:
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "row_factory": tuple_row},
            timeout=POOL_TIMEOUT,
            open=False,
            name="taskmill",
        )
        with self._errors():
            # The schema on one connection of its own first: a server that cannot be reached
            # fails here at once with the driver's reason, where the pool would try again
            # until its timeout, logging a warning at each try.
            async with await AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ) as conn:
                if await schema_version(conn) != len(migrations("postgres")):
                    await migrate(conn)
            await pool.open(wait=True, timeout=POOL_TIMEOUT)
        self._pool = pool
        self._closer = asyncio.create_task(self._close_when_cancelled())

    async def _close_when_cancelled(self) -> None:
        """Close the pool and the listener once cancelled: by close(), or by the end of
        asyncio.run() when nobody closed the backend (App keeps one per event loop and
        may never close it). The pool's own tasks ignore cancellation, and would keep
        asyncio.run() waiting for them forever."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            if self._listener is not None:
                listener, self._listener = self._listener, None
                await postgres_listen.release(listener)
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()

    async def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer.cancel()
            await asyncio.gather(closer, return_exceptions=True)

    # -- producers ------------------------------------------------------------------------

    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        async with self._connection() as conn:
            return await insert(conn, jobs)

    async def _get(self, job_id: str) -> Job | None:
        jobs = readable(await self._rows("get", {"id": job_id}))
        return jobs[0] if jobs else None

    async def _list_jobs(self, listing: Listing) -> tuple[list[Job], int | None]:
        state, queue, task, limit, before = listing
        params = {
            "state": None if state is None else state.value,
            "queue": queue,
            "task": task,
            "before": before,
            "limit": limit + 1,
        }
        rows = await self._rows("list_jobs", params)
        more = len(rows) > limit
        return readable(rows[:limit]), rows[limit - 1][-1] if more else None

    async def _cancel(self, job_id: str) -> Job | None:
        rows = await self._rows("cancel", {"id": job_id, "now": self.clock()})
        if not rows:
            return await self._get(job_id)
        jobs = readable(rows)
        return jobs[0] if jobs else None

    async def _delete(self, job_id: str) -> bool:
        return await self._count("delete", {"id": job_id}) == 1

    # -- workers --------------------------------------------------------------------------

    async def _claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, now: float
    ) -> list[Job]:
        async with self._connection() as conn:
            return await _claim_on(conn, queues, worker_id, limit, lease, now)

    async def _wait(self, queues: list[str], timeout: float) -> None:
        await self._listen(queues, timeout, None)

    async def _wait_and_claim(
        self, order: list[str], worker_id: str, limit: int, lease: float, timeout: float
    ) -> list[Job]:
        taken: list[Job] = []
        gone, running = False, asyncio.get_running_loop().create_future()
        running.set_result(None)

        async def on_the_listener(conn: AsyncConnection[Any]) -> None:
            nonlocal running
            if gone:
                return
            running = asyncio.get_running_loop().create_future()
            try:
                taken.extend(await _claim_on(conn, order, worker_id, limit, lease, self.clock()))
            except psycopg.Error:
                pass  # the waiter, woken, claims on a connection of the pool instead
            finally:
                running.set_result(None)

        async def settled() -> list[Job]:
            """What the listener claimed for us, once no claim of ours is under way."""
            nonlocal gone
            gone = True
            await asyncio.shield(running)
            return taken

        try:
            await self._listen(order, timeout, on_the_listener)
        except asyncio.CancelledError:
            with contextlib.suppress(BackendError):
                await self.hand_back(await settled())
            raise
        return await settled() or await self.claim_to_the_end(
            self.claim(order, worker_id, limit, lease)
        )

    async def _listen(
        self, names: list[str], timeout: float, claim: postgres_listen.Claim | None
    ) -> None:
        """wait(); `claim` runs on the listener's connection when a queue is notified."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._listener is None:
            self._listener = postgres_listen.acquire(self.url)
        listener = self._listener
        wake = asyncio.Event()
        listener.add(wake, names, claim)
        try:
            # Look only once notifications would reach us, unless that takes too long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await listener.listening.wait()
            # What the look below sees need not wake us. (No claim has run since add():
            # the listener runs one only after a notification, which needs a turn of the
            # loop that this task has not given since it was woken by listening.)
            wake.clear()
            next_at = await self._next_run_at(names)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0 or (next_at is not None and next_at <= self.clock()):
                    return
                if next_at is not None:
                    remaining = min(remaining, next_at - self.clock(), CLOCK_CHECK)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await wake.wait()
                if wake.is_set():
                    # A job of these queues was committed (or the listener is back): the
                    # claim that follows looks, which a probe here would only delay.
                    return
        finally:
            listener.remove(wake)

    async def _next_run_at(self, queues: list[str]) -> float | None:
        rows = await self._rows("next_run_at", {"queues": queues, "now": self.clock()})
        return None if rows[0][0] is None else float(rows[0][0])

    async def _heartbeat(self, beat: Heartbeat) -> set[str]:
        worker, held, progress, lease_until = beat
        beats = [
            {"id": job_id, "token": token, "progress": progress.get(job_id)}
            for job_id, token in held.items()
        ]
        params = {
            "worker": worker.id,
            "info": orjson.dumps(worker.to_dict()).decode(),
            "now": worker.last_seen,
            "lease_until": lease_until,
            "held": orjson.dumps(beats).decode(),
        }
        keep = {row[0] for row in await self._rows("heartbeat", params)}
        return set(held) - keep

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        rows = [
            {
                "n": n,
                "id": o.job_id,
                "token": o.token,
                "state": o.state.value,
                "result": None if o.result is None else orjson.Fragment(o.result),
                "error": None if o.error is None else o.error.to_dict(),
                "run_at": now if o.run_at is None else o.run_at,
                "progress": o.progress,
            }
            for n, o in enumerate(outcomes)
        ]
        params = {"now": now, "outcomes": orjson.dumps(rows).decode()}
        applied = {row[0] for row in await self._rows("finish", params)}
        return [n in applied for n in range(len(outcomes))]

    async def _maintain(self, now: float) -> int:
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                QUERIES["expired_leases"], {"now": now, "limit": MAINTAIN_BATCH}
            )
            rescues = []
            expired, bad = sift(await cursor.fetchall(), job)
            quarantined = 0
            if bad:
                params = quarantines(bad, now)
                quarantined = (await conn.execute(QUERIES["quarantine"], params)).rowcount
            for record in expired:
                fate = rescue(record, now)
                rescues.append({
                    "id": record.id,
                    "token": record.token,
                    "state": fate.state.value,
                    "error": fate.error.to_dict(),
                    "run_at": fate.run_at,
                    "finished_at": fate.finished_at,
                })  # fmt: skip
            rescued = 0
            if rescues:
                params = {"now": now, "rescues": orjson.dumps(rescues).decode()}
                cursor = await conn.execute(QUERIES["rescue"], params)
                row = await cursor.fetchone()
                rescued = 0 if row is None else int(row[0])
        params = {"now": now, "limit": MAINTAIN_BATCH, "seen_since": now - WORKER_TTL}
        await self._count("prune", params)
        return rescued + quarantined

    async def unregister_worker(self, worker_id: str) -> None:
        await self._count("unregister_worker", {"worker": worker_id})

    async def list_workers(self) -> list[WorkerInfo]:
        rows = await self._rows("list_workers", {"since": self.clock() - WORKER_TTL})
        return [
            WorkerInfo.from_dict({**decode(info), "last_seen": last_seen})
            for info, last_seen in rows
        ]

    # -- queues and the dead-letter queue ------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        await self._rows("set_paused", {"queue": queue, "paused": paused})

    async def list_queues(self) -> list[QueueInfo]:
        now = self.clock()
        params = {"now": now, "since": now - THROUGHPUT_WINDOW}
        infos: dict[str, QueueInfo] = {}
        for name, paused, settings, *group in await self._rows("list_queues", params):
            if group[0] is None:  # the queue's own row, not a group of its jobs
                info = infos.setdefault(name, QueueInfo(name))
                info.paused, info.settings = paused, decode(settings)
            else:
                fold_counts(infos, name, *group)
        return [infos[name] for name in sorted(infos)]

    async def configure_queue(self, queue: str, settings: Mapping[str, Any]) -> None:
        params = {"queue": queue, "settings": orjson.dumps(dict(settings)).decode()}
        await self._rows("configure_queue", params)

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        return {name: decode(settings) for name, settings in await self._rows("queue_settings", {})}

    async def delete_queue(self, queue: str) -> bool:
        return await self._count("delete_queue", {"queue": queue}) == 1

    async def _requeue(
        self, ids: list[str] | None, queue: str | None, task: str | None, now: float
    ) -> int:
        params = {"now": now, "ids": ids, "queue": queue, "task": task, "corrupt": f"{CORRUPT}%"}
        return await self._count("requeue", params)

    async def _purge(self, state: JobState, queue: str | None, task: str | None) -> int:
        return await self._count("purge", {"state": state.value, "queue": queue, "task": task})

    # -- hooks (see Backend) ------------------------------------------------------------

    async def _enqueue_on(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        if not isinstance(connection, AsyncConnection):
            raise ConfigError(
                "connection= takes a psycopg AsyncConnection in async code, not "
                f"{type(connection).__name__}"
            )
        with _caller_errors():
            return await insert(connection, jobs)

    def _enqueue_on_sync(self, connection: object, jobs: Sequence[Job]) -> list[Job]:
        if not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                "connection= takes a psycopg Connection in sync code, not "
                f"{type(connection).__name__}"
            )
        with _caller_errors():
            return insert_sync(connection, jobs)

    async def migrate(self) -> tuple[list[str], int]:
        with self._errors():
            return await migrate_database(self.url)


class ThreadBackend(PostgresBackend):
    """PostgresBackend for the sync API's single calls (see backends.connect_blocking):
    enqueue, get and cancel run in the calling thread, on an autocommit connection of that
    thread's own, and never suspend, so that the caller drives them with no event loop and
    no hop to the event loop's thread, which a single call would feel (docs/performance.md).
    It has no pool: other calls are not for it.

    A dropped connection is made again, once: the calls made here are idempotent (enqueue
    by id, get, cancel), so the retry does nothing twice."""

    def __init__(self, url: str, clock: Clock = time.time) -> None:
        super().__init__(url, clock)
        self._local = threading.local()
        # Every thread's connection, to close them all; one dies with its thread.
        self._all: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._lock = threading.Lock()

    async def open(self) -> None:
        async def schema() -> None:
            backend = PostgresBackend(self.url, self.clock)
            await backend.open()
            await backend.close()

        # The schema first, as PostgresBackend.open() makes it. That is async I/O, which
        # this coroutine must not await (it never suspends): it runs to its end on a loop
        # of its own, in a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, schema()).result()

    async def close(self) -> None:
        with self._lock:
            conns = list(self._all)
            self._all.clear()
        for conn in conns:
            conn.close()

    def _thread_connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or self._local.pid != os.getpid():
            conn = psycopg.Connection.connect(self.url, autocommit=True)
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._all.add(conn)
        return conn

    def _on_connection(self, call: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._thread_connection()
                return call(conn)
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise _failure(self.url, exc) from exc
                if conn is not None:
                    conn.close()
            except psycopg.Error as exc:
                raise _failure(self.url, exc) from exc
        raise AssertionError("unreachable")

    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        return self._on_connection(lambda conn: insert_sync(conn, jobs))

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        def rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cursor = conn.execute(QUERIES[name], params)
            return cursor.fetchall() if cursor.description else []

        return self._on_connection(rows)
