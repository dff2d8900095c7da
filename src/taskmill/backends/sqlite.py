"""The SQLite backend: one database file shared by the worker processes of one machine.

Every method that changes state is one `BEGIN IMMEDIATE` transaction, so it is atomic
across processes; all queries of an instance run on the thread that owns its connection
(sqlite_writer). A commit wakes the waiters of this process at once, and those of others
soon after (sqlite_watch).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from taskmill.backends.base import Backend, Clock
from taskmill.backends.migrations import pending
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
    quarantine,
    rescue,
    sift,
    skipped,
)
from taskmill.backends.sqlite_schedules import SQLiteSchedules
from taskmill.backends.sqlite_sql import (
    ATTEMPTS,
    CLAIM,
    ERRORS,
    FINISH,
    ID,
    INSERT,
    NEXT_RUN_AT,
    PLAIN,
    PRUNABLE,
    QUARANTINE,
    RESCUE,
    RUNNING,
    SELECT,
    SPEC,
    WAITING,
    marks,
    plain_values,
)
from taskmill.backends.sqlite_watch import watcher
from taskmill.backends.sqlite_writer import Writer
from taskmill.errors import ConfigError
from taskmill.job import (
    AttemptError,
    Job,
    JobState,
    decode,
    decode_spec,
    encode,
    encode_spec,
)

#: The queries use RETURNING (3.35) and the JSON operators -> and ->> (3.38).
MIN_SQLITE = (3, 38, 0)
#: Finished jobs deleted per `maintain` at most, so that one call never holds the lock long.
PRUNE_BATCH = 10_000


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _job(row: Sequence[Any]) -> Job:
    """A Job from a row selected as COLUMNS."""
    *plain, state, errors, result, spec, _seq = row
    job = Job(
        **dict(zip(PLAIN, plain, strict=True)),
        state=JobState(state),
        errors=[AttemptError.from_dict(e) for e in decode(errors)] if errors != "[]" else [],
        result=None if result is None else decode(result),
    )
    job.cancel_requested = bool(job.cancel_requested)
    job.retry, job.timeout, job.result_ttl, metadata = decode_spec(spec)
    job.metadata = dict(metadata) if metadata else {}
    return job


def _row(job: Job) -> tuple[Any, ...]:
    """The INSERT parameters of a new job record."""
    return (
        *plain_values(job),
        job.state.value,
        _dumps([e.to_dict() for e in job.errors]) if job.errors else "[]",
        None if job.result is None else encode(job.result),
        encode_spec(job),
        job.state is JobState.PENDING,
    )


def _claimed(row: Sequence[Any]) -> tuple[Job, int]:
    return _job(row), row[-1]


def _select_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    jobs = _readable(conn.execute(f"{SELECT} WHERE id = ?", (job_id,)).fetchall())
    return jobs[0] if jobs else None


def _readable(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """The rows' jobs, leaving out (and logging) records that cannot be read: a reader is
    shown the others; the claim or upkeep that meets one quarantines it."""
    jobs, bad = sift(rows, _job)
    for row, reason in bad:
        skipped(row[ID], reason)
    return jobs


def _quarantine(conn: sqlite3.Connection, bad: list[tuple[Any, str]], now: float) -> None:
    """Send the records that could not be read to the dead-letter queue, in the caller's
    transaction."""
    rows = []
    for row, reason in bad:
        q = quarantine(row[ID], reason, now, row[ATTEMPTS], spec=row[SPEC], errors=row[ERRORS])
        rows.append((now, _dumps(q.errors), q.spec, q.job_id))
    conn.executemany(QUARANTINE, rows)


def _gates(conn: sqlite3.Connection, queues: list[str]) -> tuple[set[str], dict[str, int]]:
    """Of these queues, the paused ones, and the concurrency limit of those that have one."""
    sql = (
        "SELECT name, paused, settings ->> '$.concurrency' FROM queues WHERE name IN "
        f"({marks(len(queues))}) AND (paused OR settings ->> '$.concurrency' IS NOT NULL)"
    )
    paused, caps = set(), {}
    for name, is_paused, cap in conn.execute(sql, queues):
        if is_paused:
            paused.add(name)
        elif cap is not None:
            caps[name] = int(cap)
    return paused, caps


def _paused(conn: sqlite3.Connection, queues: list[str]) -> set[str]:
    sql = f"SELECT name FROM queues WHERE paused AND name IN ({marks(len(queues))})"
    return {name for (name,) in conn.execute(sql, queues)}


def _next_run_at(conn: sqlite3.Connection, queues: list[str], now: float) -> float | None:
    """When a job waiting in these queues, unless paused, is due: now, or its run_at."""
    paused = _paused(conn, queues)
    times = [
        conn.execute(NEXT_RUN_AT, (now, queue, queue)).fetchone()[0]
        for queue in queues
        if queue not in paused
    ]
    return min((t for t in times if t is not None), default=None)


def _filters(**filters: str | None) -> tuple[list[str], list[Any]]:
    """WHERE terms and their parameters for the filters given (column=value or None)."""
    given = {column: value for column, value in filters.items() if value is not None}
    return [f"{column} = ?" for column in given], list(given.values())


def _where(terms: list[str]) -> str:
    return f"WHERE {' AND '.join(terms)}" if terms else ""


def _path(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    if path == url or not path or "?" in path:
        raise ConfigError(
            f"invalid SQLite URL {url!r}; use sqlite:///relative.db or sqlite:////abs.db"
        )
    if path == ":memory:":
        # Each connection to :memory: is a database of its own; workers must share one.
        raise ConfigError("sqlite:///:memory: is not supported; use a file (or memory://)")
    return os.path.abspath(path)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one by one.

    executescript() would commit the open transaction, so each statement runs on its own."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        yield statement  # trailing comments; a partial statement fails loudly here


class SQLiteBackend(SQLiteSchedules, Backend):
    """Jobs in a SQLite file (`sqlite:///relative.db`, `sqlite:////absolute.db`)."""

    def __init__(self, url: str, clock: Clock = time.time) -> None:
        super().__init__(clock)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigError(
                f"the SQLite backend needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer "
                f"(JSON operators, RETURNING); this Python has {sqlite3.sqlite_version}"
            )
        self.path = _path(url)
        self._watcher = watcher(self.path)
        self._db = Writer(self.path)

    # -- plumbing -------------------------------------------------------------------------

    async def _change(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement as a write of its own; returns how many rows it changed."""
        return await self._db.write(lambda conn: conn.execute(sql, params).rowcount)

    async def open(self) -> None:
        now = self.clock()
        try:
            await self._db.open()
            await self._db.write(lambda conn: self._migrate(conn, now))
        except BaseException:
            await self._db.close()
            raise

    def _migrate(self, conn: sqlite3.Connection, now: float) -> None:
        """Apply the migrations not yet recorded in schema_version."""
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        (current,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        for migration in pending("sqlite", current, f"SQLite database {self.path}"):
            for statement in _statements(migration.script):
                conn.execute(statement)
            sql = "INSERT INTO schema_version VALUES (?, ?, ?)"
            conn.execute(sql, (migration.version, migration.name, now))

    async def close(self) -> None:
        await self._db.close()

    # -- producers ------------------------------------------------------------------------

    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        rows = [_row(job) for job in jobs]

        def run(conn: sqlite3.Connection) -> dict[str, Job]:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM jobs").fetchone()
            changes = conn.total_changes
            conn.executemany(INSERT, rows)
            if conn.total_changes - changes == len(rows):
                return {}
            # Some ids were taken: by rows stored before this call, or earlier in the batch.
            ids = _dumps([job.id for job in jobs])
            sql = f"{SELECT} WHERE seq <= ? AND id IN (SELECT value FROM json_each(?))"
            return {job.id: job for job in map(_job, conn.execute(sql, (last, ids)))}

        stored = await self._db.write(run)
        self._watcher.notify()
        return [stored.setdefault(job.id, job) for job in jobs]

    async def _get(self, job_id: str) -> Job | None:
        return await self._db.run(lambda conn: _select_job(conn, job_id))

    async def _list_jobs(self, listing: Listing) -> tuple[list[Job], int | None]:
        state, queue, task, limit, before = listing
        where, params = _filters(state=state, queue=queue, task=task)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = f"{SELECT} {_where(where)} ORDER BY seq DESC LIMIT ?"

        def run(conn: sqlite3.Connection) -> tuple[list[Job], int | None]:
            rows = conn.execute(sql, (*params, limit + 1)).fetchall()
            more = len(rows) > limit
            return _readable(rows[:limit]), rows[limit - 1][-1] if more else None

        return await self._db.run(run)

    async def _cancel(self, job_id: str) -> Job | None:
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Job | None:
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ? "
                f"WHERE id = ? AND state IN {WAITING}",
                (now, job_id),
            )
            sql = "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'"
            conn.execute(sql, (job_id,))
            return _select_job(conn, job_id)

        return await self._db.write(run)

    async def _delete(self, job_id: str) -> bool:
        sql = "DELETE FROM jobs WHERE id = ? AND state != 'running'"
        return await self._change(sql, (job_id,)) == 1

    # -- workers --------------------------------------------------------------------------

    async def _claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, now: float
    ) -> list[Job]:
        places = marks(len(queues))

        def run(conn: sqlite3.Connection) -> list[Job]:
            conn.execute(
                # Left to itself, the planner scans every waiting job of the queue instead.
                "UPDATE jobs INDEXED BY jobs_expiry SET state = 'expired', finished_at = ? "
                f"WHERE state IN {WAITING} AND expires_at <= ? AND queue IN ({places})",
                (now, now, *queues),
            )
            conn.execute(
                "UPDATE jobs SET due = 1 "
                f"WHERE due = 0 AND state IN {WAITING} AND run_at <= ? AND queue IN ({places})",
                (now, *queues),
            )
            paused, caps = _gates(conn, queues)
            rows: list[Any] = []
            for queue in queues:
                if queue in paused:
                    continue
                room = limit - len(rows)
                if queue in caps:
                    # The write transaction makes count and claim one step for every process.
                    (running,) = conn.execute(RUNNING, (queue,)).fetchone()
                    room = min(room, caps[queue] - running)
                if room > 0:
                    params = (worker_id, now, now + lease, queue, now, room)
                    rows += conn.execute(CLAIM, params).fetchall()
                    if len(rows) >= limit:
                        break
            taken, bad = sift(rows, _claimed)
            if bad:
                _quarantine(conn, bad, now)
            # RETURNING yields rows in no particular order.
            return in_claim_order(queues, taken)

        return await self._db.write(run)

    async def _wait(self, queues: list[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wake = asyncio.Event()
        waiter = (loop, wake)
        self._watcher.add(waiter)
        try:
            next_at = None
            woken = True
            while True:
                if woken:
                    # Look before returning: the commit may concern other queues, and a
                    # claim (a write) on every commit would keep idle workers busy.
                    wake.clear()
                    look = functools.partial(_next_run_at, queues=queues, now=self.clock())
                    next_at = await self._db.run(look)
                remaining = deadline - loop.time()
                if remaining <= 0 or (next_at is not None and next_at <= self.clock()):
                    return
                if next_at is not None:
                    remaining = min(remaining, next_at - self.clock(), CLOCK_CHECK)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await wake.wait()
                woken = wake.is_set()
        finally:
            self._watcher.remove(waiter)

    async def _heartbeat(self, beat: Heartbeat) -> set[str]:
        worker, held, progress, lease_until = beat
        info = _dumps(worker.to_dict())

        def run(conn: sqlite3.Connection) -> set[str]:
            conn.execute(
                "INSERT INTO workers (id, info, last_seen) VALUES (?, ?, ?) ON CONFLICT (id) "
                "DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen",
                (worker.id, info, worker.last_seen),
            )
            stop = set()
            for job_id, token in held.items():
                rows = conn.execute(
                    "UPDATE jobs SET lease_until = ?, progress = coalesce(?, progress) "
                    "WHERE id = ? AND state = 'running' AND token = ? RETURNING cancel_requested",
                    (lease_until, progress.get(job_id), job_id, token),
                ).fetchall()
                if not rows or rows[0][0]:
                    stop.add(job_id)
            return stop

        return await self._db.write(run)

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        # Outcomes for one job (a stale token beside the current one) go in separate rounds,
        # so that each statement's RETURNING tells which of them applied.
        rounds: list[int] = []
        seen: dict[str, int] = {}
        batches: dict[tuple[int, JobState], list[list[Any]]] = {}
        for o in outcomes:
            rounds.append(seen.get(o.job_id, 0))
            seen[o.job_id] = rounds[-1] + 1
            batches.setdefault((rounds[-1], o.state), []).append([
                o.job_id,
                o.token,
                None if o.result is None else orjson.Fragment(o.result),
                None if o.error is None else o.error.to_dict(),
                now if o.run_at is None else o.run_at,
                o.progress,
            ])  # fmt: skip
        statements = [
            (turn, FINISH[state], {"outcomes": orjson.dumps(rows).decode(), "now": now})
            for (turn, state), rows in sorted(batches.items(), key=lambda item: item[0][0])
        ]

        def run(conn: sqlite3.Connection) -> set[tuple[int, str]]:
            return {
                (turn, job_id)
                for turn, sql, params in statements
                for (job_id,) in conn.execute(sql, params)
            }

        done = await self._db.write(run)
        if done:
            self._watcher.notify()
        return [(turn, o.job_id) in done for turn, o in zip(rounds, outcomes, strict=True)]

    async def _maintain(self, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"{SELECT} WHERE state = 'running' AND lease_until < ?", (now,)
            ).fetchall()
            expired, bad = sift(rows, _job)
            if bad:
                _quarantine(conn, bad, now)
            rescues: list[tuple[Any, ...]] = []
            for job in expired:
                fate = rescue(job, now)
                run_at, error = fate.run_at, _dumps(fate.error.to_dict())
                due = run_at is not None and run_at <= now
                rescues.append((fate.state.value, fate.finished_at, run_at, due, error, job.id))
            conn.executemany(RESCUE, rescues)
            conn.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs "
                f"WHERE state IN {PRUNABLE} AND finished_at + result_ttl < ? LIMIT ?)",
                (now, PRUNE_BATCH),
            )
            conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - WORKER_TTL,))
            return len(rescues) + len(bad)

        rescued = await self._db.write(run)
        if rescued:
            self._watcher.notify()
        return rescued

    async def unregister_worker(self, worker_id: str) -> None:
        await self._change("DELETE FROM workers WHERE id = ?", (worker_id,))

    async def list_workers(self) -> list[WorkerInfo]:
        since = self.clock() - WORKER_TTL

        def run(conn: sqlite3.Connection) -> list[WorkerInfo]:
            sql = "SELECT info, last_seen FROM workers WHERE last_seen >= ? ORDER BY id"
            return [
                WorkerInfo.from_dict({**decode(info), "last_seen": last_seen})
                for info, last_seen in conn.execute(sql, (since,))
            ]

        return await self._db.run(run)

    # -- queues and the dead-letter queue ------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        sql = (
            "INSERT INTO queues (name, paused) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused"
        )
        await self._change(sql, (queue, paused))
        if not paused:
            self._watcher.notify()

    async def list_queues(self) -> list[QueueInfo]:
        now = self.clock()

        def run(conn: sqlite3.Connection) -> list[QueueInfo]:
            infos = {
                name: QueueInfo(name, paused=bool(paused), settings=decode(settings))
                for name, paused, settings in conn.execute(
                    "SELECT name, paused, settings FROM queues"
                )
            }
            # One pass over the table gives the counts, the oldest due job, the due jobs per
            # priority and the recently finished alike.
            rows = conn.execute(
                "SELECT queue, state, priority, count(*), "
                "min(CASE WHEN run_at <= :now THEN created_at END), "
                "count(CASE WHEN run_at <= :now THEN 1 END), "
                "count(CASE WHEN finished_at > :since THEN 1 END) "
                "FROM jobs GROUP BY queue, state, priority",
                {"now": now, "since": now - THROUGHPUT_WINDOW},
            )
            for row in rows:
                fold_counts(infos, *row)
            return [infos[name] for name in sorted(infos)]

        return await self._db.run(run)

    async def configure_queue(self, queue: str, settings: Mapping[str, Any]) -> None:
        sql = (
            "INSERT INTO queues (name, settings) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET settings = excluded.settings"
        )
        await self._change(sql, (queue, _dumps(dict(settings))))

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            sql = "SELECT name, settings FROM queues WHERE settings != '{}'"
            return {name: decode(settings) for name, settings in conn.execute(sql)}

        return await self._db.run(run)

    async def delete_queue(self, queue: str) -> bool:
        removed = await self._change("DELETE FROM queues WHERE name = ?", (queue,))
        if removed:
            self._watcher.notify()  # it may have been paused
        return removed == 1

    async def _requeue(
        self, ids: list[str] | None, queue: str | None, task: str | None, now: float
    ) -> int:
        where, params = _filters(state=JobState.DEAD, queue=queue, task=task)
        # A quarantined record stays dead (rules.Quarantine), and so does one whose errors
        # cannot be read.
        where.append("json_valid(errors) AND coalesce(errors ->> '$[#-1].error', '') NOT LIKE ?")
        params.append(f"{CORRUPT}%")
        if ids is not None:
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(_dumps(ids))
        sql = (
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at = ?, due = 1, "
            f"finished_at = NULL {_where(where)}"
        )
        moved = await self._change(sql, (now, *params))
        if moved:
            self._watcher.notify()
        return moved

    async def _purge(self, state: JobState, queue: str | None, task: str | None) -> int:
        where, params = _filters(state=state, queue=queue, task=task)
        return await self._change(f"DELETE FROM jobs {_where(where)}", params)
