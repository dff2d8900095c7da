"""What only some backends can do, as the app reaches it through Backend's hooks: enqueue
on the caller's own connection, and migrations run ahead (the command line's `migrate`)."""

from __future__ import annotations

import os

import psycopg
import pytest

from taskmill import App, ConfigError, JobState
from taskmill.backends import connect
from tests.conftest import FakeClock


@pytest.mark.parametrize("url", ["memory://hooks", "sqlite:///hooks.db", "redis://127.0.0.1:1"])
async def test_only_postgresql_enqueues_on_a_callers_connection(url: str) -> None:
    app = App(url, strict=False)  # refused without a connection: none of those is up
    with pytest.raises(ConfigError, match="PostgreSQL connection"):
        await app.aenqueue("t", connection=object())
    with pytest.raises(ConfigError, match="PostgreSQL connection"):
        app.enqueue_many([{"task": "t"}], connection=object())


async def test_a_callers_connection_gets_jobs_prepared_as_enqueue_prepares_them(
    postgres_url: str, clock: FakeClock
) -> None:
    name = f"hooks-{os.getpid()}"
    await connect(postgres_url).migrate()
    app = App(f"{postgres_url}&application_name={name}", strict=False, clock=clock)
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        now, later = await app.aenqueue_many(
            [{"task": "t"}, {"task": "t", "delay": 60}], connection=conn
        )
        opened = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
        )
        assert await opened.fetchone() == (0,)  # the jobs went on the caller's connection
    assert (now.job.state, now.job.created_at, now.job.run_at) == (
        JobState.PENDING, clock(), clock(),
    )  # fmt: skip
    assert (later.job.state, later.job.run_at) == (JobState.SCHEDULED, clock() + 60)
    with pytest.raises(ConfigError, match="AsyncConnection in async code"):
        await app.aenqueue("t", connection=object())


def test_the_sync_form_takes_a_sync_connection(postgres_url: str) -> None:
    app = App(postgres_url, strict=False)
    try:
        app.connect()  # the schema
        with psycopg.connect(postgres_url) as conn:
            (handle,) = app.enqueue_many([{"task": "t"}], connection=conn)
            conn.rollback()
        assert app.run(_get(app, handle.id)) is None
        with pytest.raises(ConfigError, match="Connection in sync code"):
            app.enqueue("t", connection=object())
    finally:
        app.close()


async def _get(app: App, job_id: str) -> object:
    return await (await app.backend()).get(job_id)


async def test_postgresql_migrates_ahead_and_the_others_say_why_not(
    url: str, request: pytest.FixtureRequest
) -> None:
    backend = connect(url)  # never opened
    if request.node.callspec.params["url"] != "postgres":
        with pytest.raises(ConfigError, match="migrate is for postgresql"):
            await backend.migrate()
        return
    applied, version = await backend.migrate()
    assert applied and version == len(applied)
    assert await backend.migrate() == ([], version)
