"""The Redis backend's claims, and the waits of idle workers: a mixin of RedisBackend, kept
apart so that redis.py stays about the other state changes of a job.

Each claim of a queue is one call of lua/claim.lua with a random nonce, by which a call run
twice (the client's retry after a reply was lost) returns the jobs the first run took
instead of taking more. An idle worker runs peek.lua and then blocks in BLPOP on the
queues' wake lists; on one server its claim is pipelined behind the BLPOP, so the reply
that wakes it carries the job. A waiter cancelled meanwhile has the server kill its
connection, then replays the claim to hand back whatever it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson

from taskmill.backends.base import Backend
from taskmill.backends.redis_client import BlockingClient, Client, ReplyError
from taskmill.backends.redis_records import job_of, pairs
from taskmill.backends.redis_scripts import PREFIX, Op, command, noscript, queue_keys
from taskmill.backends.rules import CLOCK_CHECK, lost, quarantine, why
from taskmill.errors import BackendError
from taskmill.job import Job, JobState

#: A record a script returned that cannot be read: its fields, its token, and why.
Unread = tuple[dict[bytes, bytes], bytes | str | None, str]

if TYPE_CHECKING:
    from taskmill.backends.redis_cluster import Cluster


class Claim:
    """One call of lua/claim.lua: its nonce, by which a replay finds the jobs it took."""

    def __init__(self, queue: str, worker_id: str, limit: int, lease: float) -> None:
        self.queue, self.worker_id, self.limit, self.lease = queue, worker_id, limit, lease
        self.nonce = os.urandom(8).hex()
        # The queue's keys, then the worker's replay record (see lua/claim.lua).
        self.keys = (*queue_keys(queue), f"{PREFIX}:{{{queue}}}:claim:{worker_id}")
        #: The caller's clock minus the server's (see claim.lua's ARGV[6]).
        self.offset = 0.0

    def op(self, now: float, *, offset: bool = False) -> Op:
        args = [now, self.limit, self.worker_id, self.lease, self.nonce]
        return ("script", "claim", self.keys, [*args, self.offset] if offset else args)

    def jobs(self, reply: Sequence[Any]) -> tuple[list[Job], list[Unread]]:
        """The jobs claimed, and apart the records that cannot be read."""
        fresh, records, stamp, gone = reply
        if gone:
            lost(self.queue, gone)
        now, jobs, unread = float(stamp), [], list[Unread]()
        for i, fields in enumerate(records, start=1):
            record = pairs(fields)
            try:
                job = job_of(self.queue, record)
            except Exception as exc:  # any error: the record cannot be read (rules.sift)
                token = f"{self.nonce}:{i}" if fresh else record.get(b"token")
                unread.append((record, token, why(exc)))
                continue
            if fresh:  # read before the claim changed it
                job.state, job.attempts = JobState.RUNNING, job.attempts + 1
                job.token, job.worker, job.started_at = f"{self.nonce}:{i}", self.worker_id, now
                job.lease_until, job.cancel_requested = now + self.lease, False
            jobs.append(job)
        return jobs, unread


class RedisClaims(Backend):
    if TYPE_CHECKING:  # provided by RedisBackend
        cluster: bool
        _redis: Client | BlockingClient | Cluster
        _queue_of: dict[str, str]

        def _errors(self) -> AbstractContextManager[None]: ...
        async def _exec(self, ops: Sequence[Op]) -> list[Any]: ...
        async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def _claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, now: float
    ) -> list[Job]:
        taken = list[Job]()
        for queue in queues:
            if len(taken) >= limit:
                break
            taken += await self._take(Claim(queue, worker_id, limit - len(taken), lease), now)
        return taken

    async def _wait(self, queues: list[str], timeout: float) -> None:
        await self._idle(queues, timeout, None)

    async def _wait_and_claim(
        self, queues: list[str], worker_id: str, limit: int, lease: float, timeout: float
    ) -> list[Job]:
        if self.cluster:  # the wake lists and the claim may be on different nodes
            return await super()._wait_and_claim(queues, worker_id, limit, lease, timeout)
        # The first queue's claim rides on the wake-up; the worker asks the others next.
        claim = Claim(queues[0], worker_id, limit, lease)
        return await self._idle(queues, timeout, claim)

    async def _idle(self, names: list[str], timeout: float, claim: Claim | None) -> list[Job]:
        """wait(), and with `claim`, its jobs as the wait ends: run on the blocking
        connection right behind BLPOP, it takes a job the moment one is stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = self.clock()
            ops: list[Op] = [("script", "peek", queue_keys(q), [now]) for q in names]
            if claim is not None:
                ops.append(("TIME",))
            replies = await self._exec(ops)
            if claim is not None:
                seconds, micros = replies.pop()
                # The caller's clock minus the server's, to within half a round trip.
                claim.offset = (now + self.clock()) / 2 - (int(seconds) + int(micros) / 1e6)
            upcoming = [float(r) for r in replies if r]
            if any(t <= now for t in upcoming):
                return [] if claim is None else await self._take_to_the_end(claim)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if upcoming:
                due_in = min(upcoming) - now
                if due_in <= CLOCK_CHECK:
                    # The server ends a blocking call only at its next tick (100 ms): a
                    # job due sooner is waited for here.
                    await asyncio.sleep(min(due_in, remaining))
                    return [] if claim is None else await self._take_to_the_end(claim)
                remaining = min(remaining, CLOCK_CHECK)
            wakes = [queue_keys(q).wake for q in names]
            woken, jobs = await self._block(wakes, remaining, claim)
            if jobs or (woken and claim is None):
                return jobs

    async def _take(self, claim: Claim, now: float) -> list[Job]:
        return await self._claimed(claim, await self._script(*claim.op(now)[1:]))

    async def _take_to_the_end(self, claim: Claim) -> list[Job]:
        return await self.claim_to_the_end(self._take(claim, self.clock()))

    async def _claimed(self, claim: Claim, reply: Any) -> list[Job]:
        jobs, unread = claim.jobs(reply)
        if unread:
            await self._quarantine(claim.queue, unread)
        for job in jobs:
            self._queue_of[job.id] = claim.queue
        return jobs

    async def _quarantine(self, queue: str, unread: Sequence[Unread]) -> None:
        """Send records that cannot be read, still held on their tokens, to the dead-letter
        queue (lua/quarantine.lua)."""
        now = self.clock()
        args: list[Any] = [now]
        for record, token, reason in unread:
            job_id = record.get(b"id", b"").decode(errors="replace")
            attempts = record.get(b"attempts", b"0")
            q = quarantine(
                job_id,
                reason,
                now,
                int(attempts) if attempts.isdigit() else 0,
                spec=record.get(b"spec"),
                errors=record.get(b"errors"),
            )
            spec = b"" if q.spec is None else q.spec
            args += [record.get(b"id", b""), token or b"", orjson.dumps(q.errors), spec]
        await self._script("quarantine", queue_keys(queue), args)

    async def _block(
        self, keys: list[str], timeout: float, claim: Claim | None
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
                    commands.append(command(claim.op(self.clock(), offset=True)))
                try:
                    replies = await client.blocking(commands, seconds)
                except asyncio.CancelledError:
                    if claim is not None:
                        await self._hand_back_claim(claim)
                    raise
                if isinstance(replies[0], ReplyError):
                    raise replies[0]
                if claim is None:
                    return replies[0] is not None, []
                if noscript(replies[1]):  # a restarted server: the claim did not run
                    return replies[0] is not None, await self._take_to_the_end(claim)
                if isinstance(replies[1], ReplyError):
                    raise replies[1]
                return replies[0] is not None, await self._claimed(claim, replies[1])
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

    async def _hand_back_claim(self, claim: Claim) -> None:
        """After a cancelled wait: the claim behind it may have run. Replayed with no room
        for more, it returns the jobs it took, if any, and they go back to their queue."""
        claim.limit = 0
        with contextlib.suppress(BackendError):
            await self.hand_back(await self._take(claim, self.clock()))
