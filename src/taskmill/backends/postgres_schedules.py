"""The PostgreSQL backend's schedules and leases (tables in sql/postgres/0003_schedules.sql).

A mixin of PostgresBackend, kept apart so that postgres.py stays about jobs. Each method is
one statement, or one transaction (record_tick), like the backend's others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from psycopg import AsyncConnection

from taskmill.backends.base import Clock
from taskmill.backends.postgres_sql import QUERIES
from taskmill.backends.rules import Lease
from taskmill.schedule import Schedule, recorded


def _schedule(row: tuple[Any, ...]) -> Schedule:
    definition, last_tick, recent = row
    return Schedule.from_stored(orjson.loads(definition), last_tick, orjson.loads(recent))


class PostgresSchedules:
    if TYPE_CHECKING:  # provided by PostgresBackend
        clock: Clock

        def _connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]: ...
        async def _rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...
        async def _count(self, name: str, params: Mapping[str, Any]) -> int: ...

    async def put_schedule(self, schedule: Schedule) -> None:
        definition = orjson.dumps(schedule.definition()).decode()
        await self._rows("put_schedule", {"name": schedule.name, "definition": definition})

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._rows("get_schedule", {"name": name})
        return _schedule(rows[0]) if rows else None

    async def list_schedules(self) -> list[Schedule]:
        return [_schedule(row) for row in await self._rows("list_schedules", {})]

    async def delete_schedule(self, name: str) -> bool:
        return await self._count("delete_schedule", {"name": name}) == 1

    async def record_tick(self, name: str, tick: float, job_id: str) -> bool:
        params: dict[str, Any] = {"name": name, "tick": tick}
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute(QUERIES["tick_due"], params)).fetchone()
            if row is None:
                return False
            params["recent"] = orjson.dumps(recorded(orjson.loads(row[0]), job_id)).decode()
            await conn.execute(QUERIES["record_tick"], params)
            return True

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease:
        now = self.clock()
        params = {"name": name, "holder": holder, "until": now + ttl, "now": now}
        while True:
            rows = await self._rows("acquire_lease", params)
            if rows:
                ((current, expires_at),) = rows
                return Lease(name, current, expires_at)
            # A contender inserted the lease after this statement's snapshot was taken: the
            # insert met its row, yet the read could not see it. The next statement can.

    async def release_lease(self, name: str, holder: str) -> None:
        await self._rows("release_lease", {"name": name, "holder": holder})

    async def get_lease(self, name: str) -> Lease | None:
        rows = await self._rows("get_lease", {"name": name, "now": self.clock()})
        return Lease(name, rows[0][0], rows[0][1]) if rows else None
