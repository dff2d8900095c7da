"""What only the SQLite backend has: its URL, its migrations, and OS processes sharing a file.

The behaviour every backend shares is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from taskmill.backends import Outcome, connect, sqlite_sql
from taskmill.backends.rules import OUTCOME_STATES, PRUNABLE_STATES
from taskmill.backends.sqlite import SQLiteBackend
from taskmill.errors import BackendError, ConfigError
from taskmill.job import WAITING_STATES, Job, JobState
from tests.conftest import FakeClock

MIGRATIONS = sorted(
    f.name
    for f in files("taskmill.backends").joinpath("sql", "sqlite").iterdir()
    if f.name.endswith(".sql")
)

CLAIM_INDEX = (
    "SELECT count(*) FROM jobs INDEXED BY jobs_claim "
    "WHERE due = 1 AND state IN ('pending', 'scheduled', 'retrying')"
)

# Run by each child process: open the file at an agreed instant (so that the processes
# really overlap), then do one thing and print what it got as JSON.
CHILD = """
import asyncio, json, sys, time
from taskmill.backends import Outcome, connect
from taskmill.job import Job, JobState

async def main(url, start, action):
    backend = connect(url)
    time.sleep(max(0.0, start - time.time()))
    await backend.open()
    got = []
    if action == "enqueue":
        got = [job.id for job in await backend.enqueue([Job("t")])]
    elif action == "claim":
        while jobs := await backend.claim(["default"], "w", 7, 30.0):
            got += [job.id for job in jobs]
            await backend.finish([Outcome(j.id, j.token, JobState.SUCCEEDED) for j in jobs])
    else:
        await asyncio.sleep(0.3)
        await backend.enqueue([Job("t", queue="elsewhere"), Job("t", queue="late")])
    await backend.close()
    print(json.dumps(got))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
"""


def children(url: str, action: str, count: int) -> list[list[str]]:
    """What `count` processes running CHILD at the same instant printed."""
    start = time.time() + 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(start), action], stdout=subprocess.PIPE
        )
        for _ in range(count)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * count
    return [json.loads(output) for output in outputs]


def versions(path: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()


def test_url_is_a_relative_or_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert SQLiteBackend("sqlite:///jobs.db").path == str(tmp_path / "jobs.db")
    assert SQLiteBackend(f"sqlite:///{tmp_path}/a.db").path == str(tmp_path / "a.db")
    for url in ("sqlite:///:memory:", "sqlite://host/jobs.db", "sqlite:///", "sqlite:///a.db?x=1"):
        with pytest.raises(ConfigError):
            SQLiteBackend(url)


def test_the_states_written_out_in_sql_are_those_of_the_rules() -> None:
    """The queries repeat the state lists of the partial indexes, or SQLite would not use
    them; the lists must still be the states base.py names."""
    init = files("taskmill.backends").joinpath("sql", "sqlite", "0001_init.sql").read_text()
    written_out = ((sqlite_sql.WAITING, WAITING_STATES), (sqlite_sql.PRUNABLE, PRUNABLE_STATES))
    for written, states in written_out:
        assert f"state IN {written}" in init
        assert {JobState(name) for name in re.findall(r"'(\w+)'", written)} == states
    assert set(sqlite_sql.FINISH) == OUTCOME_STATES


async def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    for _ in range(2):
        backend = connect(f"sqlite:///{tmp_path / 'jobs.db'}")
        await backend.open()
        await backend.close()
    assert [name for _, name in versions(tmp_path / "jobs.db")] == MIGRATIONS
    assert [version for version, _ in versions(tmp_path / "jobs.db")] == list(
        range(1, len(MIGRATIONS) + 1)
    )


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    backend = connect(f"sqlite:///{tmp_path / 'jobs.db'}")
    await backend.open()
    await backend.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as conn, conn:
        conn.execute("INSERT INTO schema_version VALUES (9999, '9999_future.sql', 0)")
    with pytest.raises(BackendError, match="newer"):
        await backend.open()


async def test_a_file_that_is_not_a_database_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "jobs.db").write_bytes(b"not a database, " * 512)
    backend = connect(f"sqlite:///{tmp_path / 'jobs.db'}")
    with pytest.raises(BackendError, match="not a database"):
        await backend.open()
    with pytest.raises(BackendError, match="not open"):
        await backend.get("x")


async def test_claims_skip_jobs_scheduled_ahead_by_index(tmp_path: Path, clock: FakeClock) -> None:
    """Jobs scheduled ahead stay out of the claim index until due, so they cost claim nothing."""
    path = tmp_path / "jobs.db"
    backend = connect(f"sqlite:///{path}", clock=clock)
    await backend.open()
    await backend.enqueue([Job("t", run_at=clock() + 60, priority=9) for _ in range(100)])
    (now,) = await backend.enqueue([Job("t")])
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute(CLAIM_INDEX).fetchone() == (1,)
    assert [job.id for job in await backend.claim(["default"], "w", 10, 30.0)] == [now.id]
    clock.advance(60)
    assert len(await backend.claim(["default"], "w", 200, 30.0)) == 100
    await backend.close()


@pytest.mark.slow
def test_processes_creating_one_file_at_once_all_succeed(tmp_path: Path) -> None:
    got = children(f"sqlite:///{tmp_path / 'jobs.db'}", "enqueue", 4)
    assert len({job_id for ids in got for job_id in ids}) == 4
    assert [name for _, name in versions(tmp_path / "jobs.db")] == MIGRATIONS


@pytest.mark.slow
async def test_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    backend = connect(url)
    await backend.open()
    enqueued = {job.id for job in await backend.enqueue([Job("t") for _ in range(3000)])}
    claimed = [job_id for ids in children(url, "claim", 3) for job_id in ids]
    assert len(claimed) == len(set(claimed)) == len(enqueued)
    assert set(claimed) == enqueued
    jobs, _ = await backend.list_jobs(limit=5000)
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    await backend.close()


@pytest.mark.slow
async def test_wait_wakes_on_a_commit_by_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    backend = connect(url)
    await backend.open()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, str(time.time()), "later", stdout=subprocess.PIPE
    )
    started = time.perf_counter()
    await backend.wait(["late"], timeout=20.0)
    assert time.perf_counter() - started < 10.0
    (job,) = await backend.claim(["late"], "w", 10, 30.0)
    await backend.finish([Outcome(job.id, job.token or "", JobState.SUCCEEDED)])
    await child.communicate()
    await backend.close()


async def test_concurrent_writes_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'group.db'}")
    await backend.open()
    transactions = 0
    run_transaction = backend._db._transaction

    def counted(batch: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return run_transaction(batch)

    backend._db._transaction = counted  # type: ignore[method-assign]
    try:

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO jobs (id) VALUES ('violates NOT NULL')")

        writes = [backend.enqueue([Job(task="t")]) for _ in range(20)]
        results = await asyncio.gather(
            *writes[:10], backend._db.write(broken), *writes[10:], return_exceptions=True
        )
        failed = results.pop(10)
        assert isinstance(failed, BackendError)
        assert "NOT NULL" in str(failed)
        assert all(isinstance(r, list) and len(r) == 1 for r in results)
        assert transactions <= 2  # not 21: the writes queued behind the first shared one
        jobs, _ = await backend.list_jobs(limit=100)
        assert len(jobs) == 20  # the failed write undid only itself
    finally:
        await backend.close()


async def test_a_database_of_an_earlier_version_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    backend = connect(url)
    await backend.open()
    (job,) = await backend.enqueue([Job(task="t")])
    await backend.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as conn, conn:
        conn.execute("DROP TABLE schedules")  # as the version before schedules left it
        conn.execute("DROP TABLE leases")
        conn.execute("DELETE FROM schema_version WHERE version > 2")
    backend = connect(url)
    await backend.open()
    assert await backend.get(job.id) is not None
    assert await backend.list_schedules() == []
    assert (await backend.acquire_lease("l", "me", 5.0)).holder == "me"
    await backend.close()
    assert [name for _, name in versions(tmp_path / "jobs.db")] == MIGRATIONS
