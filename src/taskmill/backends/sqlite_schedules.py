"""The SQLite backend's schedules and leases (tables in sql/sqlite/0003_schedules.sql).

A mixin of SQLiteBackend, kept apart so that sqlite.py stays about jobs. Each method is one
statement or one transaction, like the backend's others.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import orjson

from taskmill.backends.base import Clock
from taskmill.backends.rules import Lease
from taskmill.backends.sqlite_writer import Writer
from taskmill.schedule import Schedule, recorded

_SELECT = "SELECT definition, last_tick, recent_jobs FROM schedules"


def _schedule(row: tuple[str, float | None, str]) -> Schedule:
    definition, last_tick, recent = row
    return Schedule.from_stored(orjson.loads(definition), last_tick, orjson.loads(recent))


class SQLiteSchedules:
    if TYPE_CHECKING:  # provided by SQLiteBackend
        clock: Clock
        _db: Writer

    async def put_schedule(self, schedule: Schedule) -> None:
        sql = (
            "INSERT INTO schedules (name, definition) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition"
        )
        params = (schedule.name, orjson.dumps(schedule.definition()).decode())
        await self._db.write(lambda conn: conn.execute(sql, params))

    async def get_schedule(self, name: str) -> Schedule | None:
        def run(conn: sqlite3.Connection) -> Schedule | None:
            row = conn.execute(f"{_SELECT} WHERE name = ?", (name,)).fetchone()
            return None if row is None else _schedule(row)

        return await self._db.run(run)

    async def list_schedules(self) -> list[Schedule]:
        def run(conn: sqlite3.Connection) -> list[Schedule]:
            return [_schedule(row) for row in conn.execute(f"{_SELECT} ORDER BY name")]

        return await self._db.run(run)

    async def delete_schedule(self, name: str) -> bool:
        sql = "DELETE FROM schedules WHERE name = ?"
        deleted: int = await self._db.write(lambda conn: conn.execute(sql, (name,)).rowcount)
        return deleted == 1

    async def record_tick(self, name: str, tick: float, job_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT recent_jobs FROM schedules "
                "WHERE name = ? AND (last_tick IS NULL OR last_tick < ?)",
                (name, tick),
            ).fetchone()
            if row is None:
                return False
            recent = orjson.dumps(recorded(orjson.loads(row[0]), job_id)).decode()
            sql = "UPDATE schedules SET last_tick = ?, recent_jobs = ? WHERE name = ?"
            conn.execute(sql, (tick, recent, name))
            return True

        return await self._db.write(run)

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease:
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Lease:
            row: Any = conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at WHERE expires_at <= ? OR holder = ? "
                "RETURNING holder, expires_at",
                (name, holder, now + ttl, now, holder),
            ).fetchone()
            if row is None:  # held by another: the upsert changed nothing
                row = conn.execute(
                    "SELECT holder, expires_at FROM leases WHERE name = ?", (name,)
                ).fetchone()
            return Lease(name, row[0], row[1])

        return await self._db.write(run)

    async def release_lease(self, name: str, holder: str) -> None:
        sql = "DELETE FROM leases WHERE name = ? AND holder = ?"
        await self._db.write(lambda conn: conn.execute(sql, (name, holder)))

    async def get_lease(self, name: str) -> Lease | None:
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT holder, expires_at FROM leases WHERE name = ? AND expires_at > ?",
                (name, now),
            ).fetchone()
            return None if row is None else Lease(name, row[0], row[1])

        return await self._db.run(run)
