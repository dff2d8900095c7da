"""What only the PostgreSQL backend has: migrations, enqueue inside the caller's own
transaction, claims that ignore finished jobs, one LISTEN connection per process, and
restarts of the server. The behaviour every backend shares is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from taskmill import App, JobState, Worker
from taskmill.backends import connect
from taskmill.backends.migrations import migrations
from taskmill.backends.postgres import PostgresBackend
from taskmill.backends.postgres_sql import QUERIES, migrate
from taskmill.backends.rules import OUTCOME_STATES, PRUNABLE_STATES
from taskmill.errors import BackendError, ConfigError
from taskmill.job import FINISHED_STATES, WAITING_STATES, Job
from tests import sample_tasks
from tests.conftest import fresh_schema

ROOT = Path(__file__).parent.parent.parent
#: The schema written out for readers, which the migrations, applied in order, must make.
SCHEMA = files("taskmill.backends").joinpath("sql", "postgres", "schema.sql")

# Every table, column, constraint, index, function and trigger of the current schema.
CATALOG = """
SELECT 'column ' || table_name || '.' || column_name || ' #' || ordinal_position || ' '
    || data_type || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
    || coalesce(' default ' || column_default, '')
    || coalesce(' identity ' || identity_generation, '')
FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid)
FROM pg_proc p WHERE pronamespace = current_schema()::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace)
    AND NOT tgisinternal
ORDER BY 1
"""


async def catalog(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(CATALOG.encode())
        schema = (await (await conn.execute("SELECT current_schema()")).fetchone() or [""])[0]
        text = "\n".join(row[0] for row in await cursor.fetchall()) + "\n"
    return text.replace(f"{schema}.", "")  # the test's own schema name


@pytest.fixture
def other_postgres_url(postgres_server: str) -> Iterator[str]:
    """A second fresh schema, beside postgres_url's."""
    with fresh_schema(postgres_server) as url:
        yield url


async def test_migrations_in_order_make_the_schema_written_out(
    postgres_url: str, other_postgres_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        applied = await migrate(conn)
        assert await migrate(conn) == []  # applied once
        cursor = await conn.execute("SELECT version, name FROM taskmill_migrations ORDER BY 1")
        recorded = await cursor.fetchall()
    assert applied == [m.name for m in migrations("postgres")]
    assert recorded == [(m.version, m.name) for m in migrations("postgres")]
    async with await psycopg.AsyncConnection.connect(other_postgres_url, autocommit=True) as conn:
        await conn.execute(SCHEMA.read_text("utf-8").encode())
    assert await catalog(other_postgres_url) == await catalog(postgres_url), (
        "sql/postgres/schema.sql no longer shows what the migrations make: bring it up to date"
    )


def test_the_state_lists_written_in_sql_are_states_the_model_names() -> None:
    """The SQL writes its state lists out, as a partial index and the queries that are to
    use it must: each must still be a set of states job.py or base.py names."""
    text = SCHEMA.read_text("utf-8") + b"\n".join(QUERIES.values()).decode()
    named = {
        frozenset(JobState),  # the CHECK constraint
        WAITING_STATES,
        WAITING_STATES | {JobState.RUNNING},  # what a cancel reaches
        OUTCOME_STATES & FINISHED_STATES,  # outcomes that end the job
        PRUNABLE_STATES,
    }
    lists = re.findall(r"state IN \(([^)]*)\)", text)
    assert len(lists) > 10
    for written in lists:
        assert frozenset(JobState(s) for s in re.findall(r"'(\w+)'", written)) in named, written


async def test_concurrent_migrations_apply_once_and_newer_schemas_are_refused(
    postgres_url: str,
) -> None:
    connections = [
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) for _ in range(4)
    ]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in connections))
        assert sorted(map(len, results)) == [0, 0, 0, len(migrations("postgres"))]
        await connections[0].execute("INSERT INTO taskmill_migrations VALUES (999, 'future')")
    finally:
        for conn in connections:
            await conn.close()
    with pytest.raises(BackendError, match="newer"):
        await connect(postgres_url).open()


@pytest.mark.slow  # three `taskmill migrate` processes
def test_migrate_command_applies_and_reports(postgres_url: str) -> None:
    taskmill = str(Path(sys.executable).parent / "taskmill")
    first = subprocess.run([taskmill, "--url", postgres_url, "migrate"], capture_output=True)
    again = subprocess.run([taskmill, "--url", postgres_url, "migrate"], capture_output=True)
    applied = [f"applied {m.name}" for m in migrations("postgres")]
    latest = migrations("postgres")[-1].version
    assert first.stdout.decode().splitlines() == [*applied, f"schema version {latest}"]
    assert again.stdout.decode() == f"schema version {latest} (up to date)\n"
    other = subprocess.run([taskmill, "--url", "memory://x", "migrate"], capture_output=True)
    assert other.returncode == 2 and b"is for postgresql:// URLs" in other.stderr


def test_urls_are_checked() -> None:
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
        PostgresBackend("mysql://x")


# -- enqueue inside the caller's transaction ---------------------------------------------


async def test_enqueue_on_the_callers_connection_commits_or_rolls_back_with_it(
    postgres_url: str,
) -> None:
    app = App(postgres_url, strict=False)
    backend = await app.backend()
    waiter = asyncio.create_task(backend.wait(["default"], 10.0))
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        async with conn.transaction():
            lost = await app.aenqueue_many([sample_tasks.record.prepare(1)], connection=conn)
            raise psycopg.Rollback  # the business write failed: the job goes with it
        assert await backend.get(lost[0].id) is None
        async with conn.transaction():
            kept = await app.aenqueue("record", [2], connection=conn, metadata={"order": 7})
            await asyncio.sleep(0.3)
            assert not waiter.done()  # not before the commit: workers would find nothing
            assert await backend.get(kept.id) is None  # nor visible to others yet
        await asyncio.wait_for(waiter, 2.0)  # woken by the commit
    stored = await backend.get(kept.id)
    assert stored is not None and stored.state == JobState.PENDING
    assert stored.metadata == {"order": 7}
    await app.aclose()


def test_the_readme_sqlalchemy_example(postgres_url: str) -> None:
    """The README's example: a business row and its job, in one SQLAlchemy transaction."""
    engine = sqlalchemy.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    app = App(postgres_url)

    @app.task(name="welcome")
    def welcome(user_id: int) -> str:
        return f"welcome {user_id}"

    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE users (id serial PRIMARY KEY, name text)"))
    with engine.connect() as conn:
        with pytest.raises(BackendError, match="run `taskmill migrate`"):
            app.enqueue("welcome", [0], connection=conn.connection.driver_connection)
        conn.rollback()
    subprocess.run(
        [str(Path(sys.executable).parent / "taskmill"), "--url", postgres_url, "migrate"],
        check=True,
        capture_output=True,
    )

    def sign_up(name: str, fail: bool) -> str:  # as in the README, plus a failure
        with Session(engine) as session, session.begin():
            user_id = session.execute(
                sqlalchemy.text("INSERT INTO users (name) VALUES (:name) RETURNING id"),
                {"name": name},
            ).scalar_one()
            driver = session.connection().connection.driver_connection
            (handle,) = app.enqueue_many([welcome.prepare(user_id)], connection=driver)
            if fail:
                raise RuntimeError("the sign-up failed after the enqueue")
        return handle.id

    with pytest.raises(RuntimeError):
        sign_up("ann", fail=True)
    kept = sign_up("bob", fail=False)
    asyncio.run(Worker(app, burst=True).run())
    assert app.result(kept, timeout=5) == "welcome 2"
    with engine.begin() as conn:
        users = conn.execute(sqlalchemy.text("SELECT id FROM users")).all()
        with pytest.raises(ConfigError, match="PostgreSQL connection"):
            App("memory://elsewhere", strict=False).enqueue(
                "welcome", connection=conn.connection.driver_connection
            )
    assert users == [(2,)]  # the first sign-up's id (1) was rolled back
    backend = app.run(app.backend())
    assert len(app.run(backend.list_jobs())[0]) == 1  # the failed sign-up left no job
    app.close()
    engine.dispose()


# -- claims that ignore finished jobs --------------------------------------------------


async def claim_buffers(url: str) -> int:
    """Shared buffers the statements of one claim touched, as auto_explain reports them."""
    plans: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            await conn.execute(setting.encode())
        params = {"queues": ["default"], "worker": "w", "limit": 10, "now": time.time(),
                  "lease_until": time.time() + 30}  # fmt: skip
        cursor = await conn.execute(QUERIES["claim"], params)
        assert len(await cursor.fetchall()) == 10
    # The function's own statements: the lock on limited queues, expiry, due, the take.
    inner = [plan for plan in plans if "taskmill_claim(" not in plan]
    assert len(inner) == 4 and not any("Seq Scan on taskmill_jobs" in p for p in inner), inner
    # Each plan's first figure is its root's: what the whole statement touched.
    return sum(int((re.findall(r"shared hit=(\d+)", plan) or ["0"])[0]) for plan in inner)


async def test_claims_cost_the_same_with_many_finished_jobs(postgres_url: str) -> None:
    backend = connect(postgres_url)
    await backend.open()
    await backend.enqueue([Job("t") for _ in range(100)])
    before = await claim_buffers(postgres_url)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO taskmill_jobs (id, task, queue, priority, state, payload, spec, "
            "max_retries, result_ttl, created_at, run_at, due, finished_at) "
            "SELECT 'done' || n, 't', 'default', 1, 'succeeded', '\\x7b7d', '{}', 3, 86400, "
            "0, 0, true, 1 FROM generate_series(1, 200000) AS n"
        )
        await conn.execute("ANALYZE taskmill_jobs")
    after = await claim_buffers(postgres_url)
    # Not the same to the buffer: updated rows enter indexes one level deeper.
    assert after <= before * 2 + 20, (before, after)
    await backend.close()


async def test_a_claim_commits_without_waiting_for_the_disk_and_only_itself(
    postgres_url: str,
) -> None:
    """A claim lost with the server only leaves its jobs waiting, so its commit need not
    wait for the WAL flush; what else runs on the connection afterwards (an enqueue) does."""
    backend = connect(postgres_url)
    await backend.open()
    await backend.enqueue([Job("t")])
    await backend.close()
    now = time.time()
    params = {"queues": ["default"], "worker": "w", "limit": 1, "now": now, "lease_until": now + 30}
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        claimed = await (await conn.execute(QUERIES["claim"], params)).fetchall()
        assert len(claimed) == 1
        show = "SHOW synchronous_commit"
        assert await (await conn.execute(show)).fetchone() == ("off",)
        await conn.commit()
        assert await (await conn.execute(show)).fetchone() == ("on",)


def test_a_script_using_the_sync_api_exits_cleanly_without_closing(postgres_url: str) -> None:
    script = f"from taskmill import App; App({postgres_url!r}, strict=False).enqueue('t')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_sync_api_enqueues_on_a_connection_of_its_thread_and_reconnects(
    postgres_url: str,
) -> None:
    name = f"sync-{os.getpid()}"
    app = App(f"{postgres_url}&application_name={name}", strict=False)

    def stored() -> list[tuple[str, str]]:
        with psycopg.connect(postgres_url) as conn:
            return conn.execute("SELECT id, state FROM taskmill_jobs ORDER BY seq").fetchall()

    try:
        first = app.enqueue("t", id="first")
        assert (first.id, first.job.state) == ("first", JobState.PENDING)
        assert app.enqueue("t", id="first", priority=3).job.priority == 1  # idempotent by id
        # The connection dropped (a restart, a proxy): the next enqueue makes one again.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [name],
            )
        app.enqueue("t", id="second")
        assert stored() == [("first", "pending"), ("second", "pending")]
    finally:
        app.close()


async def test_a_waiting_worker_claims_on_the_listening_connection(postgres_url: str) -> None:
    """Its server process has just sent the notification: no other one need wake."""
    name = f"listen-{os.getpid()}"
    url = f"{postgres_url}&application_name={name}"
    backend, producer = PostgresBackend(url), connect(url)
    await backend.open()
    await producer.open()

    async def last_query(pid: int | None = None) -> list[tuple[int, str]]:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s "
                "AND (%s::int IS NULL OR pid = %s)",
                [name, pid, pid],
            )
            return await cursor.fetchall()

    try:
        waiter = asyncio.create_task(backend.wait_and_claim(["default"], "w1", 5, 30.0, 10.0))
        await asyncio.sleep(0)  # the waiter registers, and starts the listener
        assert backend._listener is not None
        await asyncio.wait_for(backend._listener.listening.wait(), 5.0)
        (listening,) = [pid for pid, q in await last_query() if q == "LISTEN taskmill"]
        (job,) = await producer.enqueue([Job("t")])
        (taken,) = await asyncio.wait_for(waiter, 5.0)
        assert (taken.id, taken.state) == (job.id, JobState.RUNNING)
        ((_, query),) = await last_query(listening)
        assert "taskmill_claim" in query
    finally:
        await backend.close()
        await producer.close()


# -- worker processes: one LISTEN connection each, restarts of the server ------------------


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    taskmill = str(Path(sys.executable).parent / "taskmill")
    command = [taskmill, "worker", "--app", "tests.sample_tasks:app", *extra]
    return subprocess.Popen(command, env=env, cwd=ROOT)


def listeners(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN taskmill' "
            "AND datname = current_database()"
        ).fetchone()
    return 0 if row is None else int(row[0])


@pytest.mark.slow  # a worker process, idle past a poll
def test_an_idle_worker_listens_on_one_connection_and_wakes_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TASKMILL_URL": postgres_url}
    env["TASKMILL_TEST_LOG"] = str(tmp_path / "effects.log")
    before = listeners(postgres_url)
    worker = start_worker(env, "--concurrency", "100", "--queues", "a,b,default")
    try:
        app = App(postgres_url)
        app.enqueue_many([sample_tasks.record.prepare(0)])[0].result(timeout=20)  # it is up
        assert listeners(postgres_url) == before + 1  # not one per slot, nor per queue
        time.sleep(1.5)  # idle past its first poll
        started = time.monotonic()
        (handle,) = app.enqueue_many([sample_tasks.record.prepare(7)])
        assert handle.result(timeout=5) == 7
        assert time.monotonic() - started < 0.5  # woken at once, not at its next poll
        app.close()
    finally:
        worker.terminate()
        assert worker.wait(20) == 0
