"""The Redis backend: each change of a job's state is one Lua script (see lua/*.lua).

URLs: `redis://[:password@]host:port/db` and `rediss://...` (TLS) for one server;
`redis+cluster://host:port,host:port` (or `rediss+cluster://`) for Redis Cluster, the
nodes given being where discovery starts.

Keys. A queue's keys all carry its name as hash tag, `taskmill:{queue}:...` (the layout is
in lua/common.lua), so each per-queue script touches one cluster slot, and every key it
touches is in its KEYS (job hashes as KEYS[1] .. id, a prefix in that slot). Jobs wait in a
`ready` zset scored by priority then a per-queue sequence, or in `scheduled` by run_at
(claim promotes them); running ones hold a lease in `leases` by lease_until, with a token
made fresh by each claim.

Ids. get, cancel and delete take an id alone, so the queue of each id is kept in one hash,
`taskmill:{@}:ids` (`@` is no queue name's tag), beside the set of queue names. Enqueue
first records ids there (register.lua, which keeps the first queue of an id: ids make
enqueue idempotent across queues), and only then runs the queue's enqueue.lua: no reader
finds a job whose id it cannot look up. Both are pipelined per call; on a cluster they are
two round trips, since a pipeline does not order commands across nodes. Pruning and
deleting remove the job first, then its id: an id without a job reads as no job.

Waiting. An idle worker runs peek.lua (is a job due? when is the next one?) and then
blocks in BLPOP on the queues' `wake` lists, which every script that makes a job due pushes
to (capped); peek.lua empties a list when nothing is due, so stale tokens cost nothing.
On one server, the worker's claim is pipelined behind its BLPOP (wait_and_claim): the
server runs it as soon as BLPOP returns, so the reply that wakes the worker carries the
job. A waiter cancelled meanwhile has the server kill its connection, then replays the
claim (by its nonce) to hand back whatever it took.

Times come from the backend's clock and are passed to scripts, so tests may move time by
hand. The one exception is that pipelined claim, which may run long after it was sent: it
reads the server's TIME and shifts it by the offset between the clocks, measured at the
peek just before. Connection errors are retried with backoff by the
client, then raised as BackendError; the client reconnects on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from taskmill.backends.base import (
    LEASE_EXPIRED,
    WORKER_TTL,
    Backend,
    Clock,
    Outcome,
    QueueInfo,
    WorkerInfo,
    cancellable,
)
from taskmill.backends.redis_client import BlockingClient, Client, ReplyError
from taskmill.backends.redis_schedules import RedisSchedules
from taskmill.backends.redis_scripts import FUNCTIONS, SOURCE, queue_keys
from taskmill.errors import BackendError, ConfigError
from taskmill.job import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_RESULT_TTL,
    AttemptError,
    Job,
    JobState,
    decode,
    decode_spec,
    encode_spec,
)

PREFIX = "taskmill"
IDS = f"{PREFIX}:{{@}}:ids"
QUEUES = f"{PREFIX}:{{@}}:queues"
WORKERS = f"{PREFIX}:{{@}}:workers"
#: The most succeeded, cancelled and expired jobs a queue keeps (the URL's ?keep_finished=N):
#: past it the oldest go, even before their result_ttl, so memory stays flat under load.
KEEP_FINISHED = 100_000
#: Jobs pruned, and expired leases listed, per queue per maintain call.
MAINTAIN_BATCH = 5_000
#: How often `wait` rereads the clock while a job is scheduled (an injected clock may jump).
CLOCK_CHECK = 0.25
#: Retries of a command after a connection error, with backoff capped at 1 s: a worker
#: rides out a restart of Redis; past them the error reaches the caller, which retries.
RETRIES = 6

Op = tuple[Any, ...]
_OUTCOMES = frozenset(
    {JobState.SUCCEEDED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED, JobState.PENDING}
)

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


def _command(op: Op) -> Op:
    """The command of an op: ("script", name, keys, args) calls that script's function."""
    if op[0] != "script":
        return op
    _, name, keys, args = op
    return ("FCALL", FUNCTIONS[name], len(keys), *keys, *args)


def _noscript(result: Any) -> bool:
    """A call of a function the server does not have (a new server, or one restarted
    without its data): it did not run."""
    return isinstance(result, ReplyError) and str(result).endswith("Function not found")


def _options(job: Job, spec: bytes) -> bytes:
    """An option set's values for enqueue.lua: empty when all are defaults, which the job's
    hash then leaves out (_job reads them back)."""
    values = (
        b"" if job.priority == DEFAULT_PRIORITY else b"%d" % job.priority,
        b"" if job.max_retries == DEFAULT_MAX_RETRIES else b"%d" % job.max_retries,
        b"" if job.result_ttl == DEFAULT_RESULT_TTL else repr(job.result_ttl).encode(),
        b"" if spec == b"{}" else spec,
    )
    return b"|".join(values) if any(values) else b""


def _opt(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


_STATES = {state.value.encode(): state for state in JobState}
#: What a call to Redis may raise; the backend raises it again as BackendError.
_FAILURES = (RedisError, ReplyError, OSError)


def _job(queue: str, f: Mapping[bytes, bytes]) -> Job:
    """A Job from its hash and id (as lua/common.lua's record() gives them: the fields
    written by lua/enqueue.lua and the others, plus "id"; a priority, retries or spec left
    out holds the default, a run_at left out is the creation time)."""
    errors, result = f.get(b"errors"), f.get(b"result")
    worker, token = f.get(b"worker"), f.get(b"token")
    created, run_at = float(f[b"created"]), f.get(b"run_at")
    retry, timeout, result_ttl, metadata = decode_spec(f.get(b"spec", b"{}"))
    # Positional, in Job's field order: a claim reads every job it takes through here.
    return Job(
        f[b"task"].decode(), f[b"payload"], f[b"id"].decode(), queue,
        int(f.get(b"priority", DEFAULT_PRIORITY)), _STATES[f[b"state"]],
        int(f.get(b"retries", DEFAULT_MAX_RETRIES)), retry, timeout, result_ttl,
        _opt(f.get(b"expires")), dict(metadata) if metadata else {},
        created, created if run_at is None else float(run_at),
        _opt(f.get(b"started")), _opt(f.get(b"finished")), int(f.get(b"attempts", 0)),
        [AttemptError.from_dict(e) for e in decode(errors)] if errors else [],
        None if worker is None else worker.decode(), None if token is None else token.decode(),
        _opt(f.get(b"lease")), None if result is None else decode(result),
        _opt(f.get(b"progress")), f.get(b"cancel") == b"1",
    )  # fmt: skip


def _raw(reply: Any) -> Any:
    """A reply of redis-py's as the server sent it (as redis_client.Client gives it)."""
    if isinstance(reply, ResponseError):
        return ReplyError(str(reply))
    if isinstance(reply, dict):  # HGETALL
        return [value for pair in reply.items() for value in pair]
    if isinstance(reply, set):  # SMEMBERS
        return list(reply)
    return reply


class _Claim:
    """One call of lua/claim.lua: its nonce, by which a replay finds the jobs it took."""

    def __init__(self, queue: str, worker_id: str, limit: int, lease: float) -> None:
        self.queue, self.worker_id, self.limit, self.lease = queue, worker_id, limit, lease
        self.nonce = os.urandom(8).hex()
        # The queue's keys, then the worker's replay record (see lua/claim.lua).
        self.keys = queue_keys(PREFIX, queue, f"{PREFIX}:{{{queue}}}:claim:{worker_id}")
        #: The caller's clock minus the server's (see claim.lua's ARGV[6]).
        self.offset = 0.0

    def op(self, now: float, *, offset: bool = False) -> Op:
        args = [now, self.limit, self.worker_id, self.lease, self.nonce]
        return ("script", "claim", self.keys, [*args, self.offset] if offset else args)

    def jobs(self, reply: Sequence[Any]) -> list[Job]:
        fresh, records, stamp = reply
        now, jobs = float(stamp), []
        for i, fields in enumerate(records, start=1):
            job = _job(self.queue, _pairs(fields))
            if fresh:  # read before the claim changed it
                job.state, job.attempts = JobState.RUNNING, job.attempts + 1
                job.token, job.worker, job.started_at = f"{self.nonce}:{i}", self.worker_id, now
                job.lease_until, job.cancel_requested = now + self.lease, False
            jobs.append(job)
        return jobs


class _Cluster:
    """Redis Cluster through redis-py's cluster client, which knows the slots and follows
    MOVED/ASK; it offers what the backend uses of redis_client.Client."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        nodes = []
        for node in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"invalid Redis Cluster URL {url!r}; use {parts.scheme}://h:p,h:p"
                )
            nodes.append(ClusterNode(host, int(port)))
        self._redis = RedisCluster(
            startup_nodes=nodes,
            password=parts.password,
            username=parts.username,
            ssl=parts.scheme == "rediss+cluster",
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
            socket_connect_timeout=5.0,
            socket_keepalive=True,
        )

    async def execute(self, commands: Sequence[Op]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        with cancellable():
            results = await pipe.execute(raise_on_error=False)
        return [_raw(r) for r in results]

    async def blocking(self, commands: Sequence[Op], seconds: float) -> list[Any]:
        # The backend sends a cluster one command at a time (the slots differ).
        ((command,)) = commands
        with cancellable():
            return [await self._redis.execute_command(*command)]

    async def load(self, library: str) -> None:
        await self._redis.function_load(library, replace=True)  # to every primary

    async def close(self) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.aclose()


class RedisBackend(RedisSchedules, Backend):
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
        self._redis: Client | BlockingClient | _Cluster = (
            _Cluster(url)
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
        return BackendError(f"Redis {self._where()}: {type(exc).__name__}: {exc}")

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    async def _exec(self, ops: Sequence[Op]) -> list[Any]:
        """Run commands in one pipeline (one round trip); ("script", name, keys, args)
        calls a script's function, loading the library first if the server has not got it."""
        if not ops:
            return []
        commands = [_command(op) for op in ops]
        # Not self._errors(): that context manager costs about 1 us, and every call comes here.
        try:
            results = await self._redis.execute(commands)
            for result in results:
                if isinstance(result, ReplyError):
                    break
            else:
                return results
            lost = [i for i, r in enumerate(results) if _noscript(r)]
            if lost:  # a restarted or new server: those did not run, so run them again
                await self._load_scripts()
                again = await self._redis.execute([commands[i] for i in lost])
                for i, result in zip(lost, again, strict=True):
                    results[i] = result
        except _FAILURES as exc:
            raise self._failure(exc) from exc
        for result in results:
            if isinstance(result, ReplyError):
                raise BackendError(f"Redis {self._where()}: {result}")
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

    def _keys(self, queue: str) -> tuple[str, ...]:
        return queue_keys(PREFIX, queue)

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

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        if not jobs:
            return []
        now = self.clock()
        # The jobs given become the records (as in the SQLite backend): a copy costs.
        records = list(jobs)
        for job in records:
            job.created_at, job.run_at = now, job.run_at or now
            job.state = JobState.SCHEDULED if job.run_at > now else JobState.PENDING
        out: list[Job | str]
        if self.cluster:  # ids first, in their own slot; see the module docstring
            ids = [value for job in records for value in (job.id, job.queue)]
            out = [o.decode() for o in await self._script("register", [IDS, QUEUES], ids)]
            mine = [i for i, job in enumerate(records) if out[i] == job.queue]
            stored = await self._store(now, [records[i] for i in mine])
            for i, record in zip(mine, stored, strict=True):
                out[i] = record
        else:
            out = await self._store(now, records)
        # Ids that belong to another queue: that queue's job is the answer.
        theirs = [(i, owner) for i, owner in enumerate(out) if isinstance(owner, str)]
        if theirs:
            ops = [("HGETALL", self._keys(q)[0] + records[i].id) for i, q in theirs]
            stale = []
            for (i, owner), fields in zip(theirs, await self._exec(ops), strict=True):
                if fields:
                    out[i] = _job(owner, {**_pairs(fields), b"id": records[i].id.encode()})
                else:  # the id outlived its job (pruned, deleted): it is free again
                    stale.append(i)
            if stale:
                await self._exec([("HSET", IDS, records[i].id, records[i].queue) for i in stale])
                await self._exec([("SADD", QUEUES, *{records[i].queue for i in stale})])
                again = await self._store(now, [records[i] for i in stale])
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
                    options += (job.task, _options(job, spec))
                due_now = job.run_at == now
                each += (
                    job.id, job.payload, first + i,
                    "" if number == 1 and due_now and job.expires_at is None else
                    f"{number}|{'' if due_now else repr(job.run_at)}|"
                    f"{'' if job.expires_at is None else repr(job.expires_at)}",
                )  # fmt: skip
            keys = queue_keys(PREFIX, queue, *(() if self.cluster else (IDS, QUEUES)))
            ops.append(("script", "enqueue", keys, [now, queue, len(sets), *options, *each]))
        stored: list[Job | str] = list(jobs)
        for (queue, group), missed in zip(groups.items(), await self._exec(ops), strict=True):
            for k in range(0, len(missed), 2):  # the jobs not stored, by position
                existing = missed[k + 1]
                stored[group[missed[k] - 1]] = (
                    existing.decode()
                    if isinstance(existing, bytes)
                    else _job(queue, _pairs(existing))
                )
        return stored

    async def get(self, job_id: str) -> Job | None:
        queue = await self._owner(job_id)
        if queue is None:
            return None
        (fields,) = await self._exec([("HGETALL", self._keys(queue)[0] + job_id)])
        return _job(queue, {**_pairs(fields), b"id": job_id.encode()}) if fields else None

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        if limit <= 0:
            return [], None
        if cursor is not None and not cursor.isdigit():
            raise ConfigError(f"invalid cursor {cursor!r}")
        queues = [queue] if queue is not None else await self._queues()
        args = [self.clock(), cursor or "+inf", limit, state or "", task or ""]
        results = await self._exec([("script", "list", self._keys(q), args) for q in queues])
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
        jobs = [_job(q, _pairs(fields)) for _, q, fields in page]
        return jobs, str(page[-1][0]) if more and page else None

    async def cancel(self, job_id: str) -> Job | None:
        queue = await self._owner(job_id)
        if queue is None:
            return None
        fields = await self._script("cancel", self._keys(queue), [self.clock(), job_id])
        return _job(queue, _pairs(fields)) if fields else None

    async def delete(self, job_id: str) -> bool:
        queue = await self._owner(job_id)
        if queue is None:
            return False
        if not await self._script("delete", self._keys(queue), [self.clock(), job_id]):
            return False
        await self._exec([("HDEL", IDS, job_id)])
        return True

    # -- workers --------------------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        taken = list[Job]()
        for queue in dict.fromkeys(queues):
            if len(taken) >= limit:
                break
            claim = _Claim(queue, worker_id, limit - len(taken), lease)
            taken += await self._take(claim)
        return taken

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        await self._wait(list(dict.fromkeys(queues)), timeout, None)

    async def wait_and_claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float, timeout: float
    ) -> list[Job]:
        if self.cluster:  # the wake lists and the claim may be on different nodes
            return await super().wait_and_claim(queues, worker_id, limit, lease, timeout)
        # The first queue's claim rides on the wake-up; the worker asks the others next.
        claim = _Claim(queues[0], worker_id, limit, lease)
        return await self._wait(list(dict.fromkeys(queues)), timeout, claim)

    async def _wait(self, names: list[str], timeout: float, claim: _Claim | None) -> list[Job]:
        """wait(), and with `claim`, its jobs as the wait ends: run on the blocking
        connection right behind BLPOP, it takes a job the moment one is stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = self.clock()
            ops: list[Op] = [("script", "peek", self._keys(q), [now]) for q in names]
            if claim is not None:
                ops.append(("TIME",))
            replies = await self._exec(ops)
            if claim is not None:
                seconds, micros = replies.pop()
                # The caller's clock minus the server's, to within half a round trip.
                claim.offset = (now + self.clock()) / 2 - (int(seconds) + int(micros) / 1e6)
            upcoming = [float(r) for r in replies if r]
            if any(t <= now for t in upcoming):
                return [] if claim is None else await self.claim_to_the_end(self._take(claim))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if upcoming:
                due_in = min(upcoming) - now
                if due_in <= CLOCK_CHECK:
                    # The server ends a blocking call only at its next tick (100 ms): a
                    # job due sooner is waited for here.
                    await asyncio.sleep(min(due_in, remaining))
                    return [] if claim is None else await self.claim_to_the_end(self._take(claim))
                remaining = min(remaining, CLOCK_CHECK)
            woken, jobs = await self._block([self._keys(q)[-1] for q in names], remaining, claim)
            if jobs or (woken and claim is None):
                return jobs

    async def _take(self, claim: _Claim) -> list[Job]:
        return self._claimed(claim, await self._script(*claim.op(self.clock())[1:]))

    def _claimed(self, claim: _Claim, reply: Any) -> list[Job]:
        jobs = claim.jobs(reply)
        for job in jobs:
            self._queue_of[job.id] = claim.queue
        return jobs

    async def _block(
        self, keys: list[str], timeout: float, claim: _Claim | None
    ) -> tuple[bool, list[Job]]:
        """BLPOP on the wake lists, then `claim` on the same connection as soon as it
        returns: (woken, the jobs claimed). A cluster serves one slot per call."""
        # BLPOP takes a timeout in seconds, where 0 would mean forever.
        seconds = max(round(timeout, 3), 0.001)
        client = self._redis
        assert not isinstance(client, BlockingClient), "workers wait on an event loop"
        with self._errors():
            if not self.cluster or len(keys) == 1:
                commands: list[Op] = [("BLPOP", *keys, seconds)]
                if claim is not None:
                    commands.append(_command(claim.op(self.clock(), offset=True)))
                try:
                    replies = await client.blocking(commands, seconds)
                except asyncio.CancelledError:
                    if claim is not None:
                        await self._hand_back(claim)
                    raise
                if isinstance(replies[0], ReplyError):
                    raise replies[0]
                if claim is None:
                    return replies[0] is not None, []
                if _noscript(replies[1]):  # a restarted server: the claim did not run
                    return replies[0] is not None, await self.claim_to_the_end(self._take(claim))
                if isinstance(replies[1], ReplyError):
                    raise replies[1]
                return replies[0] is not None, self._claimed(claim, replies[1])
            calls = [
                asyncio.ensure_future(client.blocking([("BLPOP", key, seconds)], seconds))
                for key in keys
            ]
            try:
                done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                return any(call.result()[0] is not None for call in done), []
            finally:
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)

    async def _hand_back(self, claim: _Claim) -> None:
        """After a cancelled wait: the claim behind it may have run. Replayed with no room
        for more, it returns the jobs it took, if any, and they go back to their queue."""
        claim.limit = 0
        with contextlib.suppress(BackendError):
            await self.hand_back(await self._take(claim))

    async def heartbeat(
        self,
        worker: WorkerInfo,
        held: Mapping[str, str],
        lease: float,
        progress: Mapping[str, float],
    ) -> set[str]:
        now = self.clock()
        info = orjson.dumps({**worker.to_dict(), "last_seen": now})
        owners = await self._owners(list(held))
        by_queue: dict[str, list[Any]] = {}
        for job_id, token in held.items():
            if job_id in owners:
                args = by_queue.setdefault(owners[job_id], [now, now + lease])
                args += [job_id, token, progress.get(job_id, "")]
        ops: list[Op] = [("HSET", WORKERS, worker.id, info)]
        ops += [("script", "heartbeat", self._keys(q), args) for q, args in by_queue.items()]
        _, *stops = await self._exec(ops)
        return {i.decode() for stop in stops for i in stop} | (set(held) - set(owners))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        owners = await self._owners(list(dict.fromkeys(o.job_id for o in outcomes)))
        now = self.clock()
        by_queue: dict[str, list[int]] = {}
        for i, o in enumerate(outcomes):
            if o.state not in _OUTCOMES:
                raise BackendError(f"an attempt cannot end as {o.state.value}")
            if o.job_id in owners:
                by_queue.setdefault(owners[o.job_id], []).append(i)
        ops = [
            (
                "script",
                "finish",
                self._keys(q) if self.cluster else [*self._keys(q), IDS],
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

    async def maintain(self) -> int:
        now = self.clock()
        queues = await self._queues()
        ops: list[Op] = [("HGETALL", WORKERS)]
        ops += [("script", "maintain", self._keys(q), [now, MAINTAIN_BATCH]) for q in queues]
        workers, *results = await self._exec(ops)
        cleanup: list[Op] = []
        gone = [
            w for w, info in _pairs(workers).items() if decode(info)["last_seen"] + WORKER_TTL < now
        ]
        if gone:
            cleanup.append(("HDEL", WORKERS, *gone))
        rescues: list[Op] = []
        for queue, (pruned, expired) in zip(queues, results, strict=True):
            if pruned:
                cleanup.append(("HDEL", IDS, *pruned))
            args: list[Any] = [now]
            for i in range(0, len(expired), 5):
                job_id, token, attempts, spec, worker = expired[i : i + 5]
                policy = decode_spec(spec)[0]
                error = AttemptError(
                    int(attempts), LEASE_EXPIRED, None, worker.decode() or None, now
                )
                run_at = now + policy.backoff(int(attempts))
                args += [job_id, token, run_at, orjson.dumps(error.to_dict())]
            if len(args) > 1:
                rescues.append(("script", "rescue", self._keys(queue), args))
        rescued = await self._exec(rescues)
        await self._exec(cleanup)
        return sum(rescued)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._exec([("HDEL", WORKERS, worker_id)])

    async def list_workers(self) -> list[WorkerInfo]:
        since = self.clock() - WORKER_TTL
        (workers,) = await self._exec([("HGETALL", WORKERS)])
        infos = [WorkerInfo.from_dict(decode(info)) for info in _pairs(workers).values()]
        return sorted((w for w in infos if w.last_seen >= since), key=lambda w: w.id)

    # -- queues and the dead-letter queue ------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        keys = self._keys(queue)
        ops: list[Op] = [("SADD", QUEUES, queue), ("HSET", keys[8], "paused", int(paused))]
        ops.append(("HSET", keys[8], "configured", 1))
        if not paused:
            ops += [("LPUSH", keys[9], 1), ("LTRIM", keys[9], 0, 15)]
        await self._exec(ops)

    async def list_queues(self) -> list[QueueInfo]:
        queues = await self._queues()
        ops = [("script", "stats", self._keys(q), [self.clock()]) for q in queues]
        infos = []
        for queue, result in zip(queues, await self._exec(ops), strict=True):
            flat, oldest, by_priority, recent = result
            fields = {k.decode(): v for k, v in _pairs(flat).items()}
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
        stats = self._keys(queue)[8]
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
        found = await self._exec([("HGET", self._keys(q)[8], "settings") for q in queues])
        return {q: decode(data) for q, data in zip(queues, found, strict=True) if data}

    async def delete_queue(self, queue: str) -> bool:
        keys = self._keys(queue)
        # One HDEL: atomic. The wake-up lets workers see a queue that may have been paused.
        removed, *_ = await self._exec([
            ("HDEL", keys[8], "configured", "paused", "settings", "concurrency"),
            ("LPUSH", keys[9], 1),
            ("LTRIM", keys[9], 0, 15),
        ])  # fmt: skip
        return bool(removed)

    async def requeue(
        self, *, ids: Sequence[str] | None = None, queue: str | None = None, task: str | None = None
    ) -> int:
        by_queue: dict[str, list[str]] = {}
        if ids is not None:
            for job_id, owner in (await self._owners(list(ids))).items():
                by_queue.setdefault(owner, []).append(job_id)
        else:
            by_queue = {q: [] for q in ([queue] if queue is not None else await self._queues())}
        if queue is not None:
            by_queue = {q: v for q, v in by_queue.items() if q == queue}
        args = [self.clock(), task or ""]
        ops = [("script", "requeue", self._keys(q), [*args, *v]) for q, v in by_queue.items()]
        return sum(await self._exec(ops))

    async def purge(
        self,
        *,
        state: JobState = JobState.DEAD,
        queue: str | None = None,
        task: str | None = None,
    ) -> int:
        if not state.finished:
            return 0
        queues = [queue] if queue is not None else await self._queues()
        args = [self.clock(), state.value, task or ""]
        results = await self._exec([("script", "purge", self._keys(q), args) for q in queues])
        ids = [job_id for result in results for job_id in result]
        if ids:
            await self._exec([("HDEL", IDS, *ids)])
        return len(ids)
