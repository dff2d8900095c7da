"""The Redis backend: each change of a job's state is one Lua script (see lua/*.lua).

URLs: `redis://[:password@]host:port/db` and `rediss://...` (TLS) for one server;
`redis+cluster://host:port,host:port` (or `rediss+cluster://`) for Redis Cluster, the
nodes given being where discovery starts (redis_cluster.py).

Keys. A queue's keys all carry its name as hash tag, `taskmill:{queue}:...` (their layout
is redis_scripts.QueueKeys, which the scripts share), so each per-queue script touches one
cluster slot, and every key it touches is in its KEYS (a job's hash is the `job` key
followed by the job's id: in that slot too). Jobs wait in a `ready` zset scored by
priority then a per-queue sequence, or in `scheduled` by run_at (claim promotes them);
running ones hold a lease in `leases` by lease_until, with a token made fresh by each
claim. How a job's hash reads back as a Job is in redis_records.py.

Ids. get, cancel and delete take an id alone, so the queue of each id is kept in one hash,
`taskmill:{@}:ids` (`@` is no queue name's tag), beside the set of queue names. Enqueue
first records ids there (register.lua, which keeps the first queue of an id: ids make
enqueue idempotent across queues), and only then runs the queue's enqueue.lua: no reader
finds a job whose id it cannot look up. Both are pipelined per call; on a cluster they are
two round trips, since a pipeline does not order commands across nodes. Pruning and
deleting remove the job first, then its id: an id without a job reads as no job.

Claims and waiting are in redis_claim.py: an idle worker blocks in BLPOP on the queues'
`wake` lists, which every script that makes a job due pushes to, and on one server its
claim rides behind the BLPOP. Schedules and leases are in redis_schedules.py.

The rules every backend keeps are Backend's (base.py); this module stores. The rescue of
an expired lease takes two steps: maintain.lua lists the jobs' records, and rescue.lua
applies base.rescue()'s decision to those still running on that lease. A record that
Python cannot read (after a claim or that listing) goes to quarantine.lua instead.

Times come from the backend's clock and are passed to scripts, so tests may move time by
hand. The one exception is the claim pipelined behind BLPOP, which may run long after it
was sent: it reads the server's TIME and shifts it by the offset between the clocks,
measured at the peek just before. Connection errors are retried with backoff by the
client, then raised as BackendError; the client reconnects on the next call.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson
from redis.exceptions import (
    ClusterDownError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskmill.backends.base import Clock
from taskmill.backends.redis_claim import RedisClaims
from taskmill.backends.redis_client import BlockingClient, Client, ReplyError
from taskmill.backends.redis_cluster import Cluster
from taskmill.backends.redis_records import job_of, packed_options, pairs
from taskmill.backends.redis_schedules import RedisSchedules
from taskmill.backends.redis_scripts import (
    PREFIX,
    SOURCE,
    WAKE_CAP,
    Op,
    QueueKeys,
    command,
    noscript,
    queue_keys,
)
from taskmill.backends.rules import (
    WORKER_TTL,
    Heartbeat,
    Listing,
    Outcome,
    QueueInfo,
    WorkerInfo,
    lost,
    rescue,
    sift,
    skipped,
)
from taskmill.errors import BackendError, BackendUnavailable, ConfigError
from taskmill.job import Job, JobState, decode, encode_spec

IDS = f"{PREFIX}:{{@}}:ids"
QUEUES = f"{PREFIX}:{{@}}:queues"
WORKERS = f"{PREFIX}:{{@}}:workers"
#: The most succeeded, cancelled and expired jobs a queue keeps (the URL's ?keep_finished=N):
#: past it the oldest go, even before their result_ttl, so memory stays flat under load.
KEEP_FINISHED = 100_000
#: Jobs pruned, and expired leases listed, per queue per maintain call.
MAINTAIN_BATCH = 5_000
#: Retries of a command after a connection error, with backoff capped at 1 s: a worker
#: rides out a restart of Redis; past them the error reaches the caller, which retries.
RETRIES = 6

_last_lseq = 0
_lseq_lock = threading.Lock()


def _lseqs(now: float, count: int) -> int:
    """The first of `count` consecutive listing seqs for new jobs: microseconds of the
    clock, strictly increasing within a process (so a batch keeps its order, and threads
    enqueueing at once never share one), and exact in a zset score (a double)."""
    global _last_lseq
    with _lseq_lock:
        first = max(_last_lseq + 1, int(now * 1_000_000))
        _last_lseq = first + count - 1
    return first


def _wake(keys: QueueKeys) -> list[Op]:
    """Wake a queue's idle workers, keeping at most WAKE_CAP tokens (as common.lua's wake)."""
    return [("LPUSH", keys.wake, 1), ("LTRIM", keys.wake, 0, WAKE_CAP - 1)]


def _readable(queue: str, fields: Sequence[bytes], job_id: str) -> Job | None:
    """The job of a hash read by id; None (logged) if it has none or cannot be read."""
    if not fields:
        return None
    jobs, bad = sift([{**pairs(fields), b"id": job_id.encode()}], functools.partial(job_of, queue))
    for _, reason in bad:
        skipped(job_id, reason)
    return jobs[0] if jobs else None


def _rescue(job: Job, now: float) -> tuple[Any, ...]:
    """rescue.lua's arguments for a job whose lease expired."""
    fate = rescue(job, now)
    run_at = "" if fate.run_at is None else fate.run_at
    return job.id, job.token, fate.state.value, run_at, orjson.dumps(fate.error.to_dict())


#: What a call to Redis may raise; the backend raises it again as BackendError.
_FAILURES = (RedisError, ReplyError, OSError)
#: What says the server is away rather than refusing: no connection, or a server that is
#: loading, failing over or busy with a script, which answers again in a while.
_AWAY = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError, OSError)
_AWAY_REPLIES = ("LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY")


class RedisBackend(RedisSchedules, RedisClaims):
    """Jobs in Redis or Redis Cluster; see the module docstring."""

    def __init__(self, url: str, clock: Clock = time.time, *, blocking: bool = False) -> None:
        """blocking: run commands over blocking sockets in the calling thread, so that the
        coroutines never suspend (see redis_client.BlockingClient); one server only."""
        super().__init__(clock)
        self.url = url
        scheme = urlsplit(url).scheme
        self.cluster = scheme.endswith("+cluster")
        self.blocking = blocking
        if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ConfigError(f"not a Redis URL: {url!r}")
        if blocking and self.cluster:
            raise ConfigError("blocking mode needs one Redis server, not a cluster")
        options = parse_qs(urlsplit(url).query)
        try:
            self.keep_finished = int(options.get("keep_finished", [KEEP_FINISHED])[-1])
        except ValueError:
            raise ConfigError(f"keep_finished must be an integer in {url!r}") from None
        self._redis: Client | BlockingClient | Cluster = (
            Cluster(url, retries=RETRIES)
            if self.cluster
            else BlockingClient(url, retries=RETRIES)
            if blocking
            else Client(url, retries=RETRIES)
        )
        # The queue of each job this instance claimed and has not finished yet, so that
        # heartbeat and finish need no lookup.
        self._queue_of: dict[str, str] = {}
        self._closer: AsyncIterator[None] | None = None

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _FAILURES as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> BackendError:
        away = isinstance(exc, _AWAY) or (
            isinstance(exc, ReplyError) and str(exc).startswith(_AWAY_REPLIES)
        )
        error = BackendUnavailable if away else BackendError
        return error(f"Redis {self._where()}: {type(exc).__name__}: {exc}")

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    async def _exec(self, ops: Sequence[Op]) -> list[Any]:
        """Run commands in one pipeline (one round trip); ("script", name, keys, args)
        calls a script's function, loading the library first if the server has not got it."""
        if not ops:
            return []
        commands = [command(op) for op in ops]
        # Not self._errors(): every call comes here, and a context manager's cost shows on
        # the hot path (docs/performance.md).
        try:
            results = await self._redis.execute(commands)
            for result in results:
                if isinstance(result, ReplyError):
                    break
            else:
                return results
            lost = [i for i, r in enumerate(results) if noscript(r)]
            if lost:  # a restarted or new server: those did not run, so run them again
                await self._load_scripts()
                again = await self._redis.execute([commands[i] for i in lost])
                for i, result in zip(lost, again, strict=True):
                    results[i] = result
        except _FAILURES as exc:
            raise self._failure(exc) from exc
        for result in results:
            if isinstance(result, ReplyError):
                raise self._failure(result)
        return results

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        (result,) = await self._exec([("script", name, keys, args)])
        return result

    async def _load_scripts(self) -> None:
        await self._redis.load(SOURCE)

    async def _queues(self) -> list[str]:
        (members,) = await self._exec([("SMEMBERS", QUEUES)])
        return sorted(m.decode() for m in members)

    async def _owners(self, ids: Sequence[str]) -> dict[str, str]:
        """The queue of each id, from this instance's claims or else from the ids hash."""
        owners = {i: self._queue_of[i] for i in ids if i in self._queue_of}
        missing = [i for i in ids if i not in owners]
        if missing:
            (found,) = await self._exec([("HMGET", IDS, *missing)])
            owners |= {i: q.decode() for i, q in zip(missing, found, strict=True) if q}
        return owners

    async def _owner(self, job_id: str) -> str | None:
        return (await self._owners([job_id])).get(job_id)

    async def open(self) -> None:
        with self._errors():
            await self._load_scripts()
        if self.blocking:  # no event loop to close with: the owner closes it
            return
        # App keeps a backend per event loop and may never close it: this generator, left
        # suspended, is closed by the loop's shutdown (asyncio.run), and closes the client,
        # which would otherwise warn of unclosed connections.
        self._closer = self._close_with_loop()
        await anext(self._closer)

    async def _close_with_loop(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.close()

    async def close(self) -> None:
        await self._redis.close()

    # -- producers ------------------------------------------------------------------------

    async def _enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        out: list[Job | str]
        if self.cluster:  # ids first, in their own slot; see the module docstring
            ids = [value for job in jobs for value in (job.id, job.queue)]
            out = [o.decode() for o in await self._script("register", [IDS, QUEUES], ids)]
            mine = [i for i, job in enumerate(jobs) if out[i] == job.queue]
            stored = await self._store(now, [jobs[i] for i in mine])
            for i, record in zip(mine, stored, strict=True):
                out[i] = record
        else:
            out = await self._store(now, jobs)
        # Ids that belong to another queue: that queue's job is the answer.
        theirs = [(i, owner) for i, owner in enumerate(out) if isinstance(owner, str)]
        if theirs:
            ops = [("HGETALL", queue_keys(q).job + jobs[i].id) for i, q in theirs]
            stale = []
            for (i, owner), fields in zip(theirs, await self._exec(ops), strict=True):
                if fields:
                    out[i] = job_of(owner, {**pairs(fields), b"id": jobs[i].id.encode()})
                else:  # the id outlived its job (pruned, deleted): it is free again
                    stale.append(i)
            if stale:
                await self._exec([("HSET", IDS, jobs[i].id, jobs[i].queue) for i in stale])
                await self._exec([("SADD", QUEUES, *{jobs[i].queue for i in stale})])
                again = await self._store(now, [jobs[i] for i in stale])
                for i, record in zip(stale, again, strict=True):
                    out[i] = record
        # Every id now has its record.
        return cast(list[Job], out)

    async def _store(self, now: float, jobs: Sequence[Job]) -> list[Job | str]:
        """Run enqueue.lua: per job, the record, or the queue its id belongs to."""
        # Listing seqs in call order: grouping by queue must not reorder the newest-first list.
        first = _lseqs(now, len(jobs))
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.queue, []).append(i)
        ops = []
        for queue, group in groups.items():
            # enqueue.lua's arguments: the options that jobs share, once, then each job.
            sets: dict[tuple[Any, ...], int] = {}
            options: list[Any] = []
            each: list[Any] = []
            for i in group:
                job = jobs[i]
                spec = encode_spec(job)
                shared = (job.task, job.priority, job.max_retries, spec, job.result_ttl)
                number = sets.get(shared)
                if number is None:
                    number = sets[shared] = len(sets) + 1
                    options += (job.task, packed_options(job, spec))
                due_now = job.run_at == now
                each += (
                    job.id, job.payload, first + i,
                    "" if number == 1 and due_now and job.expires_at is None else
                    f"{number}|{'' if due_now else repr(job.run_at)}|"
                    f"{'' if job.expires_at is None else repr(job.expires_at)}",
                )  # fmt: skip
            keys = queue_keys(queue) if self.cluster else (*queue_keys(queue), IDS, QUEUES)
            ops.append(("script", "enqueue", keys, [now, queue, len(sets), *options, *each]))
        stored: list[Job | str] = list(jobs)
        for (queue, group), missed in zip(groups.items(), await self._exec(ops), strict=True):
            for k in range(0, len(missed), 2):  # the jobs not stored, by position
                existing = missed[k + 1]
                stored[group[missed[k] - 1]] = (
                    existing.decode()
                    if isinstance(existing, bytes)
                    else job_of(queue, pairs(existing))
                )
        return stored

    async def _get(self, job_id: str) -> Job | None:
        queue = await self._owner(job_id)
        if queue is None:
            return None
        (fields,) = await self._exec([("HGETALL", queue_keys(queue).job + job_id)])
        return _readable(queue, fields, job_id)

    async def _list_jobs(self, listing: Listing) -> tuple[list[Job], int | None]:
        state, queue, task, limit, before = listing
        queues = [queue] if queue is not None else await self._queues()
        args = ["+inf" if before is None else before, limit, state or "", task or ""]
        results = []
        for q, (records, gone) in zip(queues, await self._exec(
            [("script", "list", queue_keys(q), args) for q in queues]), strict=True):  # fmt: skip
            if gone:
                lost(q, gone)
            results.append(records)
        # Each queue gave its newest `limit` matches: the newest `limit` of them all are the
        # page. A queue that gave `limit` may hold more.
        found = [
            (int(result[i + 1]), q, result[i])
            for q, result in zip(queues, results, strict=True)
            for i in range(0, len(result), 2)
        ]
        found.sort(key=lambda item: item[0], reverse=True)
        page = found[:limit]
        more = len(found) > limit or any(len(result) == 2 * limit for result in results)
        jobs, bad = sift(page, lambda item: job_of(item[1], pairs(item[2])))
        for (_, _, fields), reason in bad:
            skipped(pairs(fields).get(b"id"), reason)
        return jobs, page[-1][0] if more and page else None

    async def _cancel(self, job_id: str) -> Job | None:
        queue = await self._owner(job_id)
        if queue is None:
            return None
        fields = await self._script("cancel", queue_keys(queue), [self.clock(), job_id])
        return _readable(queue, fields, job_id)

    async def _delete(self, job_id: str) -> bool:
        queue = await self._owner(job_id)
        if queue is None:
            return False
        if not await self._script("delete", queue_keys(queue), [job_id]):
            return False
        await self._exec([("HDEL", IDS, job_id)])
        return True

    # -- workers (claims and waits: redis_claim.py) ---------------------------------------

    async def _heartbeat(self, beat: Heartbeat) -> set[str]:
        worker, held, progress, lease_until = beat
        info = orjson.dumps(worker.to_dict())
        owners = await self._owners(list(held))
        by_queue: dict[str, list[Any]] = {}
        for job_id, token in held.items():
            if job_id in owners:
                args = by_queue.setdefault(owners[job_id], [lease_until])
                args += [job_id, token, progress.get(job_id, "")]
        ops: list[Op] = [("HSET", WORKERS, worker.id, info)]
        ops += [("script", "heartbeat", queue_keys(q), args) for q, args in by_queue.items()]
        _, *stops = await self._exec(ops)
        return {i.decode() for stop in stops for i in stop} | (set(held) - set(owners))

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        owners = await self._owners(list(dict.fromkeys(o.job_id for o in outcomes)))
        by_queue: dict[str, list[int]] = {}
        for i, o in enumerate(outcomes):
            if o.job_id in owners:
                by_queue.setdefault(owners[o.job_id], []).append(i)
        ops = [
            (
                "script",
                "finish",
                queue_keys(q) if self.cluster else (*queue_keys(q), IDS),
                [now, self.keep_finished, *self._finish_args(outcomes, indexes)],
            )
            for q, indexes in by_queue.items()
        ]
        applied = [False] * len(outcomes)
        pruned: list[bytes] = []
        for indexes, (results, gone) in zip(by_queue.values(), await self._exec(ops), strict=True):
            for i, ok in zip(indexes, results, strict=True):
                applied[i] = ok == 1
            pruned += gone
        if pruned:  # a cluster's ids live in their own slot
            await self._exec([("HDEL", IDS, *pruned)])
        for o in outcomes:
            self._queue_of.pop(o.job_id, None)
        return applied

    @staticmethod
    def _finish_args(outcomes: Sequence[Outcome], indexes: list[int]) -> Iterator[Any]:
        for i in indexes:
            o = outcomes[i]
            yield from (
                o.job_id, o.token, o.state.value, b"" if o.result is None else o.result,
                b"" if o.error is None else orjson.dumps(o.error.to_dict()),
                "" if o.run_at is None else o.run_at, "" if o.progress is None else o.progress,
            )  # fmt: skip

    async def _maintain(self, now: float) -> int:
        queues = await self._queues()
        ops: list[Op] = [("HGETALL", WORKERS)]
        ops += [("script", "maintain", queue_keys(q), [now, MAINTAIN_BATCH]) for q in queues]
        workers, *results = await self._exec(ops)
        cleanup: list[Op] = []
        gone = [
            w for w, info in pairs(workers).items() if decode(info)["last_seen"] + WORKER_TTL < now
        ]
        if gone:
            cleanup.append(("HDEL", WORKERS, *gone))
        rescues: list[Op] = []
        quarantined = 0
        for queue, (pruned, expired, gone) in zip(queues, results, strict=True):
            if pruned:
                cleanup.append(("HDEL", IDS, *pruned))
            if gone:
                lost(queue, gone)
            records = [pairs(fields) for fields in expired]
            jobs, bad = sift(records, functools.partial(job_of, queue))
            if bad:
                await self._quarantine(queue, [(r, r.get(b"token"), why) for r, why in bad])
                quarantined += len(bad)
            if jobs:
                args = [now, *(value for job in jobs for value in _rescue(job, now))]
                rescues.append(("script", "rescue", queue_keys(queue), args))
        rescued = await self._exec(rescues)
        await self._exec(cleanup)
        return int(sum(rescued)) + quarantined

    async def unregister_worker(self, worker_id: str) -> None:
        await self._exec([("HDEL", WORKERS, worker_id)])

    async def list_workers(self) -> list[WorkerInfo]:
        since = self.clock() - WORKER_TTL
        (workers,) = await self._exec([("HGETALL", WORKERS)])
        infos = [WorkerInfo.from_dict(decode(info)) for info in pairs(workers).values()]
        return sorted((w for w in infos if w.last_seen >= since), key=lambda w: w.id)

    # -- queues and the dead-letter queue ------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        keys = queue_keys(queue)
        ops: list[Op] = [
            ("SADD", QUEUES, queue),
            ("HSET", keys.stats, "paused", int(paused), "configured", 1),
        ]
        if not paused:
            ops += _wake(keys)
        await self._exec(ops)

    async def list_queues(self) -> list[QueueInfo]:
        queues = await self._queues()
        ops = [("script", "stats", queue_keys(q), [self.clock()]) for q in queues]
        infos = []
        for queue, result in zip(queues, await self._exec(ops), strict=True):
            flat, oldest, by_priority, recent = result
            fields = {k.decode(): v for k, v in pairs(flat).items()}
            settings = fields.get("settings")
            info = QueueInfo(
                queue,
                paused=fields.get("paused") == b"1",
                oldest_pending=float(oldest) if oldest else None,
                ready_by_priority={
                    int(p): int(n) for p, n in zip(by_priority[::2], by_priority[1::2], strict=True)
                },
                finished_recently=int(recent),
                settings=decode(settings) if settings else {},
            )
            for state in JobState:
                info.counts[state.value] = int(fields.get(state.value, 0))
            if any(info.counts.values()) or fields.get("configured") == b"1":
                infos.append(info)
        return infos

    async def configure_queue(self, queue: str, settings: Mapping[str, Any]) -> None:
        stats = queue_keys(queue).stats
        data = orjson.dumps(dict(settings))
        # The limit also in a field of its own, which claim.lua reads without decoding JSON.
        limit = settings.get("concurrency")
        cap: Op = ("HDEL", stats, "concurrency") if limit is None else (
            "HSET", stats, "concurrency", int(limit))  # fmt: skip
        await self._exec(
            [("SADD", QUEUES, queue), ("HSET", stats, "settings", data, "configured", 1), cap]
        )

    async def queue_settings(self) -> dict[str, dict[str, Any]]:
        queues = await self._queues()
        found = await self._exec([("HGET", queue_keys(q).stats, "settings") for q in queues])
        return {q: decode(data) for q, data in zip(queues, found, strict=True) if data}

    async def delete_queue(self, queue: str) -> bool:
        keys = queue_keys(queue)
        # One HDEL: atomic. The wake-up lets workers see a queue that may have been paused.
        removed, *_ = await self._exec(
            [("HDEL", keys.stats, "configured", "paused", "settings", "concurrency"), *_wake(keys)]
        )
        return bool(removed)

    async def _requeue(
        self, ids: list[str] | None, queue: str | None, task: str | None, now: float
    ) -> int:
        by_queue: dict[str, list[str]] = {}
        if ids is not None:
            for job_id, owner in (await self._owners(ids)).items():
                by_queue.setdefault(owner, []).append(job_id)
        else:
            by_queue = {q: [] for q in ([queue] if queue is not None else await self._queues())}
        if queue is not None:
            by_queue = {q: v for q, v in by_queue.items() if q == queue}
        args = [now, task or ""]
        ops = [("script", "requeue", queue_keys(q), [*args, *v]) for q, v in by_queue.items()]
        return sum(await self._exec(ops))

    async def _purge(self, state: JobState, queue: str | None, task: str | None) -> int:
        queues = [queue] if queue is not None else await self._queues()
        args = [state.value, task or ""]
        results = await self._exec([("script", "purge", queue_keys(q), args) for q in queues])
        ids = [job_id for result in results for job_id in result]
        if ids:
            await self._exec([("HDEL", IDS, *ids)])
        return len(ids)
