"""What only the Redis backend has: its scripts, cluster slots, restarts of the server, and
idle workers that block on it. The behaviour every backend shares is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from taskmill import App, JobState
from taskmill.backends import Outcome, connect, drive
from taskmill.backends.redis import IDS, QUEUES, RedisBackend
from taskmill.backends.redis_client import BlockingClient, Client
from taskmill.backends.redis_records import job_of, pairs
from taskmill.backends.redis_scripts import GLOBAL_SCRIPTS, LIBRARY, QUEUE_SCRIPTS, queue_keys
from taskmill.backends.rules import rescue
from taskmill.errors import BackendError
from taskmill.job import DEFAULT_MAX_RETRIES, DEFAULT_PRIORITY, DEFAULT_RESULT_TTL, Job
from taskmill.retry import DEFAULT_RETRY
from tests import sample_tasks
from tests.conftest import FakeClock, free_port, fresh_redis

ROOT = Path(__file__).parent.parent.parent


def lua(name: str) -> str:
    return files("taskmill.backends").joinpath("lua", f"{name}.lua").read_text("utf-8")


def test_every_script_documents_its_keys_and_arguments() -> None:
    for name in QUEUE_SCRIPTS:
        source = lua(name)
        assert source.startswith("-- ") and "KEYS: the queue's keys" in source, name
        assert "redis_scripts.QueueKeys" in source, name
        documented = {int(n) for n in re.findall(r"^-- ARGV\[(\d+)", source, re.MULTILINE)}
        used = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", source)}
        assert used <= documented, f"{name}.lua uses ARGV {sorted(used - documented)} undocumented"
    for name in GLOBAL_SCRIPTS:
        source = lua(name)
        for i in {int(n) for n in re.findall(r"KEYS\[(\d+)\]", source)}:
            assert re.search(rf"^-- KEYS\[{i}\] -> taskmill:{{@}}:", source, re.MULTILINE)


@pytest.mark.parametrize("server", ["redis_server", "redis_cluster"])
async def test_default_options_are_left_out_of_a_hash_and_read_as_defaults(
    server: str, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock()
    backend = connect(fresh_redis(request.getfixturevalue(server)), clock=clock)
    await backend.open()
    assert isinstance(backend, RedisBackend)
    try:
        jobs = [Job(task="t"), Job(task="t", priority=3), Job(task="t", run_at=clock() + 5)]
        await backend.enqueue(jobs)
        fields = await backend._exec([("HKEYS", f"taskmill:{{default}}:job:{j.id}") for j in jobs])
        optional = {b"priority", b"retries", b"spec", b"ttl", b"run_at", b"rank", b"id", b"lseq"}
        left = [optional & set(f) for f in fields]
        assert left == [set(), {b"priority", b"retries", b"spec", b"ttl"}, {b"run_at", b"rank"}]
        got = await backend.get(jobs[0].id)
        assert got is not None
        assert (got.priority, got.max_retries, got.retry, got.result_ttl, got.timeout) == (
            DEFAULT_PRIORITY, DEFAULT_MAX_RETRIES, DEFAULT_RETRY, DEFAULT_RESULT_TTL, None,
        )  # fmt: skip
        # The id is the key's, the listing seq the job's score in the queue's list of all,
        # the run_at of a job due at once its creation time.
        assert (got.id, got.run_at, got.created_at) == (jobs[0].id, clock(), clock())
        listed, _ = await backend.list_jobs()
        assert {j.id: j.run_at for j in listed} == {
            jobs[0].id: clock(),
            jobs[1].id: clock(),
            jobs[2].id: clock() + 5,
        }
        clock.advance(5)  # the scheduled one is due: counted at the default priority
        (info,) = await backend.list_queues()
        assert info.ready_by_priority == {3: 1, DEFAULT_PRIORITY: 2}
        # Lost leases: the rescue reads the default retries and spec, and places the job of
        # default priority behind the one of priority 3 again.
        first, lost = await backend.claim(["default"], "w1", 2, 1.0)
        assert (first.id, lost.id) == (jobs[1].id, jobs[0].id)
        clock.advance(2)
        assert await backend.maintain() == 2
        clock.advance(2)  # past their backoff (the default policy's: 1 s)
        again = await backend.claim(["default"], "w1", 3, 30.0)
        assert [j.id for j in again] == [jobs[1].id, jobs[0].id, jobs[2].id]
        assert again[1].state == JobState.RUNNING and again[1].attempts == 2
        # It succeeds: kept for the default result_ttl.
        token = again[1].token or ""
        assert await backend.finish([Outcome(jobs[0].id, token, JobState.SUCCEEDED)]) == [True]
        (done,) = await backend._exec([("ZSCORE", "taskmill:{default}:done", jobs[0].id)])
        assert float(done) == clock() + DEFAULT_RESULT_TTL
    finally:
        await backend.close()


async def test_a_cancel_requested_after_an_expired_lease_was_listed_wins(
    redis_server: str,
) -> None:
    """maintain.lua lists an expired lease, Python decides its rescue, rescue.lua applies
    it: a cancel requested between the two calls still stops the job from running again."""
    clock = FakeClock()
    backend = connect(fresh_redis(redis_server), clock=clock)
    await backend.open()
    assert isinstance(backend, RedisBackend)
    try:
        (job,) = await backend.enqueue([Job(task="t")])
        (claimed,) = await backend.claim(["default"], "w1", 1, 1.0)
        clock.advance(2)
        keys = queue_keys("default")
        _, (record,), _ = await backend._script("maintain", keys, [clock(), 10])
        listed = job_of("default", pairs(record))
        assert (listed.id, listed.token, listed.attempts) == (job.id, claimed.token, 1)
        fate = rescue(listed, clock())
        assert fate.state == JobState.RETRYING
        await backend.cancel(job.id)
        args = [clock(), job.id, claimed.token, fate.state.value, fate.run_at]
        assert await backend._script("rescue", keys, [*args, orjson.dumps(fate.error.to_dict())])
        stored = await backend.get(job.id)
        assert stored is not None and stored.state == JobState.CANCELLED
        assert stored.errors == [fate.error]
    finally:
        await backend.close()


async def test_a_queue_and_its_jobs_live_in_one_cluster_slot(redis_cluster: str) -> None:
    url = fresh_redis(redis_cluster)
    backend = connect(url)
    await backend.open()
    try:
        queues = [f"q{i}" for i in range(8)]
        jobs = await backend.enqueue([Job(task="t", queue=q) for q in queues for _ in range(3)])
        await backend.claim(queues, "w1", 4, 30.0)
        slots_of: dict[str, set[int]] = {}
        for node in url.split("://")[1].split(","):
            client = Redis(port=int(node.rpartition(":")[2]))
            async for key in client.scan_iter(match="taskmill:*"):
                tag = key.decode().split("{")[1].split("}")[0]
                slots_of.setdefault(tag, set()).add(key_slot(key))
            await client.aclose()
        assert {q: slots_of[q] for q in queues} == {q: {key_slot(q.encode())} for q in queues}
        assert slots_of["@"] == {key_slot(IDS.encode())} == {key_slot(QUEUES.encode())}
        assert len({key_slot(q.encode()) for q in queues}) > 1  # spread over the cluster
        assert [await backend.get(j.id) for j in jobs[:2]] != [None, None]
    finally:
        await backend.close()


def test_cluster_urls_are_checked() -> None:
    with pytest.raises(Exception, match="invalid Redis Cluster URL"):
        RedisBackend("redis+cluster://nohost")


async def test_a_wait_cancelled_after_its_claim_ran_hands_the_job_back(
    redis_server: str,
) -> None:
    """The claim that rides behind BLPOP runs on the server the moment a job is stored;
    a waiter cancelled before it reads the reply must not leave that job running for
    nobody until its lease expires."""
    url = fresh_redis(redis_server)
    waiting, producer = RedisBackend(url), RedisBackend(url, blocking=True)
    await waiting.open()
    await producer.open()
    try:
        for _ in range(3):
            waiter = asyncio.create_task(waiting.wait_and_claim(["default"], "w1", 5, 30.0, 10.0))
            await asyncio.sleep(0.05)
            # Stored from this thread with the event loop held: the server runs the claim
            # before it answers, and the waiter is cancelled before it can read its reply.
            (job,) = drive(producer.enqueue([Job(task="t")]))
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            stored = await waiting.get(job.id)
            assert stored is not None and (stored.state, stored.attempts) == ("pending", 0)
            (again,) = await waiting.claim(["default"], "w2", 5, 30.0)
            assert (again.id, again.attempts) == (job.id, 1)
            await waiting.delete(job.id)
    finally:
        await waiting.close()
        await producer.close()


async def test_a_workers_claims_keep_one_replay_record_per_queue(redis_server: str) -> None:
    url = fresh_redis(redis_server)
    backend = RedisBackend(url)
    await backend.open()
    try:
        await backend.enqueue([Job(task="t") for _ in range(50)])
        for _ in range(10):
            assert len(await backend.claim(["default"], "w1", 5, 30.0)) == 5
        (lists,) = await backend._exec([("KEYS", "taskmill:{default}:claim:*")])
        assert len(lists) == 1
    finally:
        await backend.close()


async def test_a_server_without_the_scripts_is_given_them_again(redis_server: str) -> None:
    """A server restarted without its data, or a new primary, has no library of functions:
    a call that finds none loads it and runs again, the claim behind BLPOP included."""
    url = fresh_redis(redis_server)
    backend = RedisBackend(url)
    await backend.open()
    try:
        await backend._exec([("FUNCTION", "FLUSH")])
        (job,) = await backend.enqueue([Job(task="t")])
        await backend._exec([("FUNCTION", "FLUSH")])
        assert [j.id for j in await backend.claim(["default"], "w1", 5, 30.0)] == [job.id]

        waiter = asyncio.create_task(backend.wait_and_claim(["default"], "w1", 5, 30.0, 1.0))
        await asyncio.sleep(0.2)  # blocked in BLPOP, with its claim queued behind
        await backend._exec([("FUNCTION", "FLUSH"), ("LPUSH", "taskmill:{default}:wake", 1)])
        assert await waiter == []  # woken, its claim found no function, ran again: none due
        (libraries,) = await backend._exec([("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY)])
        assert len(libraries) == 1
    finally:
        await backend.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    taskmill = str(Path(sys.executable).parent / "taskmill")
    command = [taskmill, "worker", "--app", "tests.sample_tasks:app", *extra]
    return subprocess.Popen(command, env=env, cwd=ROOT)


@pytest.mark.slow  # watches an idle worker's CPU for 5 s
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_an_idle_worker_blocks_on_the_server(redis_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "TASKMILL_URL": fresh_redis(redis_server)}
    env["TASKMILL_TEST_LOG"] = str(tmp_path / "effects.log")
    worker = start_worker(env, "--concurrency", "100")
    try:
        time.sleep(2.0)  # past start-up (imports)
        before = cpu_seconds(worker.pid)
        time.sleep(5.0)
        used = cpu_seconds(worker.pid) - before
        assert used / 5.0 < 0.01, f"an idle worker used {used / 5.0:.1%} of a core"
        app = App(env["TASKMILL_URL"])
        started = time.monotonic()
        (handle,) = app.enqueue_many([sample_tasks.record.prepare(7)])
        assert handle.result(timeout=5) == 7
        assert time.monotonic() - started < 0.5  # woken at once, not at its next poll
        app.close()
    finally:
        worker.terminate()
        assert worker.wait(20) == 0


def test_the_sync_api_runs_in_the_calling_thread_and_reconnects(redis_server: str) -> None:
    url = fresh_redis(redis_server)
    app = App(url, strict=False)
    try:
        handle = app.enqueue("t", [1])
        assert app.get(handle.id).state == JobState.PENDING
        assert handle.cancel().state == JobState.CANCELLED
        # No event loop thread was needed: the calls blocked on this thread's own socket.
        assert "taskmill-portal" not in {t.name for t in threading.enumerate()}
        kill_clients(url)
        assert app.get(handle.id).state == JobState.CANCELLED  # a fresh connection
    finally:
        app.close()


async def test_the_shared_connection_is_made_again_when_dropped(redis_server: str) -> None:
    url = fresh_redis(redis_server)
    backend = connect(url)
    await backend.open()
    try:
        jobs = await asyncio.gather(*(backend.enqueue([Job(task="t")]) for _ in range(20)))
        kill_clients(url)
        found = await asyncio.gather(*(backend.get(job.id) for (job,) in jobs))
        assert [j.id for j in found if j is not None] == [job.id for (job,) in jobs]
    finally:
        await backend.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_uses_a_connection_of_its_own(redis_server: str) -> None:
    app = App(fresh_redis(redis_server), strict=False)
    try:
        parent_job = app.enqueue("t").id  # the parent's socket now exists
        pid = os.fork()
        if pid == 0:  # the child: its answers must be its own, not the parent's
            code = 0 if [app.enqueue("t").id for _ in range(50)] and app.get(parent_job) else 1
            os._exit(code)
        for _ in range(50):
            assert app.get(parent_job).id == parent_job
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(app.enqueue_many([{"task": "t"}])) == 1
    finally:
        app.close()


def kill_clients(url: str) -> None:
    """Drop every normal client connection of the server at `url`, as a network fault would."""
    server = urlsplit(url)
    with socket.create_connection((server.hostname, server.port)) as sock:
        sock.sendall(b"*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$4\r\nTYPE\r\n$6\r\nnormal\r\n")
        sock.recv(100)  # CLIENT KILL skips the connection that sends it


@pytest.mark.parametrize("server", ["redis_server", "redis_cluster"])
async def test_finished_history_is_bounded_by_keep_finished(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = fresh_redis(request.getfixturevalue(server))
    backend = connect(f"{url}?keep_finished=5")
    await backend.open()
    try:
        jobs = await backend.enqueue([Job(task="t") for _ in range(30)])
        await backend.enqueue([Job(task="t", queue="other")])
        for _ in range(3):
            claimed = await backend.claim(["default"], "w1", 10, 30.0)
            outcomes = [Outcome(j.id, j.token or "", JobState.SUCCEEDED) for j in claimed]
            assert await backend.finish(outcomes) == [True] * len(claimed)
        (info,) = [q for q in await backend.list_queues() if q.name == "default"]
        assert info.counts["succeeded"] == 5
        kept = [j.id for j in jobs if await backend.get(j.id) is not None]
        # Five of the last batch finished are kept; the older batches were pruned.
        assert len(kept) == 5 and set(kept) <= {j.id for j in jobs[20:]}
        listed, _ = await backend.list_jobs(queue="default")
        assert sorted(j.id for j in listed) == sorted(kept)
        assert isinstance(backend, RedisBackend)
        ids = await backend._exec([("HLEN", IDS)])
        assert ids == [6]  # five kept and the other queue's job
    finally:
        await backend.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never answers: a half-open peer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.05)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(listener.accept()[0])

        thread = threading.Thread(target=accept)
        thread.start()
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()


async def test_a_server_that_stops_answering_is_an_error_not_a_hang(silent_server: str) -> None:
    client = Client(silent_server, retries=1, reply_timeout=0.2, connect_timeout=0.2)
    blocking = BlockingClient(silent_server, retries=1, reply_timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await client.execute([("PING",)])
        with pytest.raises(TimeoutError):
            await client.blocking([("BLPOP", "k", 0.1)], 0.1)
        with pytest.raises(TimeoutError):
            await blocking.execute([("PING",)])
    finally:
        await client.close()
        await blocking.close()


def test_a_sync_call_reads_replies_slower_and_faster_than_its_spin(redis_server: str) -> None:
    blocking = BlockingClient(fresh_redis(redis_server))
    try:
        began = time.monotonic()
        # The server answers after 50 ms: past the spin, the thread sleeps in recv.
        assert drive(blocking.execute([("BLPOP", "nothing", 0.05), ("PING",)])) == [None, b"PONG"]
        assert time.monotonic() - began >= 0.05
        assert drive(blocking.execute([("PING",)] * 3)) == [b"PONG"] * 3
    finally:
        drive(blocking.close())


@pytest.mark.slow
def test_connect_opens_the_sync_api_up_front(redis_server: str) -> None:
    app = App(fresh_redis(redis_server), strict=False)
    try:
        app.connect()
        kill_clients(redis_server)  # connected: both sides reconnect on their own
        assert app.get(app.enqueue("t").id).state == JobState.PENDING
        assert len(app.enqueue_many([{"task": "t"}])) == 1
    finally:
        app.close()
    down = App(f"redis://127.0.0.1:{free_port()}", strict=False)
    with pytest.raises(BackendError):
        down.connect()
    down.close()
