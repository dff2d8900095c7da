"""The Redis backend's schedules and leases: a mixin of RedisBackend, kept apart so that
redis.py stays about jobs.

Keys, all in the `{@}` slot of the keys shared by every queue (so each script touches one
slot of a cluster):
  taskmill:{@}:schedules             hash: name -> Schedule.definition() as JSON
  taskmill:{@}:schedule-ticks        hash: name -> last tick (the state: lua/tick.lua)
  taskmill:{@}:schedule-jobs:<name>  list: recent job ids, newest first (lua/tick.lua)
  taskmill:{@}:lease:<name>          hash: holder, expires (lua/lease.lua, release.lua)
The definition and the state are apart, so put_schedule replaces the one and keeps the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from taskmill.backends.base import Clock
from taskmill.backends.redis_scripts import PREFIX
from taskmill.backends.rules import Lease
from taskmill.schedule import RECENT_JOBS, Schedule

SCHEDULES = f"{PREFIX}:{{@}}:schedules"
TICKS = f"{PREFIX}:{{@}}:schedule-ticks"


def _jobs_key(name: str) -> str:
    return f"{PREFIX}:{{@}}:schedule-jobs:{name}"


def _lease_key(name: str) -> str:
    return f"{PREFIX}:{{@}}:lease:{name}"


def _schedule(definition: bytes, tick: bytes | None, jobs: list[bytes]) -> Schedule:
    last = None if tick is None else float(tick)
    return Schedule.from_stored(orjson.loads(definition), last, [j.decode() for j in jobs])


class RedisSchedules:
    if TYPE_CHECKING:  # provided by RedisBackend
        clock: Clock

        async def _exec(self, ops: Sequence[tuple[Any, ...]]) -> list[Any]: ...
        async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def put_schedule(self, schedule: Schedule) -> None:
        await self._exec([("HSET", SCHEDULES, schedule.name, orjson.dumps(schedule.definition()))])

    async def get_schedule(self, name: str) -> Schedule | None:
        definition, tick, jobs = await self._exec(
            [("HGET", SCHEDULES, name), ("HGET", TICKS, name), ("LRANGE", _jobs_key(name), 0, -1)]
        )
        return None if definition is None else _schedule(definition, tick, jobs)

    async def list_schedules(self) -> list[Schedule]:
        flat, ticks = await self._exec([("HGETALL", SCHEDULES), ("HGETALL", TICKS)])
        definitions = dict(zip(flat[::2], flat[1::2], strict=True))
        last = dict(zip(ticks[::2], ticks[1::2], strict=True))
        names = sorted(definitions)
        jobs = await self._exec([("LRANGE", _jobs_key(n.decode()), 0, -1) for n in names])
        return [_schedule(definitions[n], last.get(n), j) for n, j in zip(names, jobs, strict=True)]

    async def delete_schedule(self, name: str) -> bool:
        # The definition goes first: tick.lua records nothing for a schedule without one.
        deleted, *_ = await self._exec(
            [("HDEL", SCHEDULES, name), ("HDEL", TICKS, name), ("DEL", _jobs_key(name))]
        )
        return bool(deleted)

    async def record_tick(self, name: str, tick: float, job_id: str) -> bool:
        keys = [SCHEDULES, TICKS, _jobs_key(name)]
        return bool(await self._script("tick", keys, [name, repr(tick), job_id, RECENT_JOBS]))

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease:
        now = self.clock()
        args = [repr(now), holder, repr(now + ttl)]
        taker, expires = await self._script("lease", [_lease_key(name)], args)
        return Lease(name, taker.decode(), float(expires))

    async def release_lease(self, name: str, holder: str) -> None:
        await self._script("release", [_lease_key(name)], [holder])

    async def get_lease(self, name: str) -> Lease | None:
        (fields,) = await self._exec([("HMGET", _lease_key(name), "holder", "expires")])
        holder, expires = fields
        if holder is None or float(expires) <= self.clock():
            return None
        return Lease(name, holder.decode(), float(expires))
