"""What only the PostgreSQL backend has: migrations, enqueue inside the caller's own
transaction, claims that ignore finished jobs, one LISTEN connection per process, and
restarts of the server. The behaviour every backend shares is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from psycopg.rows import tuple_row

from taskmill import App, JobState, Worker
from taskmill.backends import connect
from taskmill.backends.postgres import PostgresBackend
from taskmill.backends.postgres_sql import migrate, migrations
from taskmill.errors import BackendError, ConfigError
from taskmill.job import Job
from tests import sample_tasks
from tests.conftest import PostgresCluster, in_schema

ROOT = Path(__file__).parent.parent.parent
#: The schema that the migrations, applied in order, must produce (see catalog()).
DECLARED = Path(__file__).parent / "postgres_schema.txt"

# Every table, column, constraint, index, function and trigger of the current schema.
CATALOG = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
    || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
    || coalesce(' default ' || column_default, '')
FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
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


async def test_migrations_in_order_produce_the_declared_schema(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        applied = await migrate(conn)
        assert await migrate(conn) == []  # applied once
        cursor = await conn.execute("SELECT version, name FROM taskmill_migrations ORDER BY 1")
        recorded = await cursor.fetchall()
    assert applied == [name for _, name, _ in migrations()]
    assert recorded == [(version, name) for version, name, _ in migrations()]
    if os.environ.get("TASKMILL_WRITE_SCHEMA") == "1":
        DECLARED.write_text(await catalog(postgres_url))
    assert await catalog(postgres_url) == DECLARED.read_text(), (
        "the migrations no longer produce tests/backends/postgres_schema.txt: if the change "
        "is meant, run this test with TASKMILL_WRITE_SCHEMA=1 and review the diff"
    )


async def test_concurrent_migrations_apply_once_and_newer_schemas_are_refused(
    postgres_url: str,
) -> None:
    connections = [
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) for _ in range(4)
    ]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in connections))
        assert sorted(map(len, results)) == [0, 0, 0, len(migrations())]
        await connections[0].execute("INSERT INTO taskmill_migrations VALUES (999, 'future')")
    finally:
        for conn in connections:
            await conn.close()
    with pytest.raises(BackendError, match="newer"):
        await connect(postgres_url).open()


def test_migrate_command_applies_and_reports(postgres_url: str) -> None:
    taskmill = str(Path(sys.executable).parent / "taskmill")
    first = subprocess.run([taskmill, "--url", postgres_url, "migrate"], capture_output=True)
    again = subprocess.run([taskmill, "--url", postgres_url, "migrate"], capture_output=True)
    assert first.stdout.decode().splitlines() == ["applied 0001_init.sql", "schema version 1"]
    assert again.stdout.decode() == "schema version 1 (up to date)\n"
    other = subprocess.run([taskmill, "--url", "memory://x", "migrate"], capture_output=True)
    assert other.returncode == 1 and b"is for postgresql:// URLs" in other.stderr


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
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                lost = await app.aenqueue_many([sample_tasks.record.prepare(1)], connection=conn)
                1 / 0  # noqa: B018 - the business write fails: the job goes with it
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
        conn.execute(sqlalchemy.text("CREATE TABLE users (id integer PRIMARY KEY, name text)"))
    with engine.connect() as conn:
        with pytest.raises(BackendError, match="run `taskmill migrate`"):
            app.enqueue("welcome", [0], connection=conn.connection.driver_connection)
        conn.rollback()
    subprocess.run(
        [str(Path(sys.executable).parent / "taskmill"), "--url", postgres_url, "migrate"],
        check=True,
        capture_output=True,
    )

    def sign_up(user_id: int, name: str, fail: bool) -> str:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text("INSERT INTO users VALUES (:id, :name)"),
                {"id": user_id, "name": name},
            )
            handle = app.enqueue("welcome", [user_id], connection=conn.connection.driver_connection)
            if fail:
                raise RuntimeError("the sign-up failed after the enqueue")
        return handle.id

    with pytest.raises(RuntimeError):
        sign_up(1, "ann", fail=True)
    kept = sign_up(2, "bob", fail=False)
    asyncio.run(Worker(app, burst=True).run())
    assert app.result(kept, timeout=5) == "welcome 2"
    with engine.begin() as conn:
        users = conn.execute(sqlalchemy.text("SELECT id FROM users")).all()
        with pytest.raises(ConfigError, match="PostgreSQL connection"):
            App("memory://elsewhere", strict=False).enqueue(
                "welcome", connection=conn.connection.driver_connection
            )
    assert users == [(2,)]
    backend = app.run(app.backend())
    assert len(app.run(backend.list_jobs())[0]) == 1  # the failed sign-up left no job
    app.close()
    engine.dispose()
