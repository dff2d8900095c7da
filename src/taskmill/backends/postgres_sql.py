"""The PostgreSQL backend's SQL: its named queries, its migrations, and the job records
they read and write. The insert of enqueue is here too, in a sync and an async form: it
also runs on callers' own connections, inside their transactions.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import orjson
from psycopg import AsyncConnection, Connection
from psycopg.rows import tuple_row

from taskmill.backends.migrations import pending
from taskmill.backends.rules import PRUNABLE_STATES, quarantine, sift, skipped
from taskmill.job import AttemptError, Job, JobState, decode, decode_spec, encode_spec

SQL = files("taskmill.backends").joinpath("sql", "postgres")
#: The key of the advisory lock that migrations run under ("taskmill" in ASCII).
MIGRATION_LOCK = 0x7461736B6D696C6C

# Job fields stored as they are, one column each.
_PLAIN = (
    "id", "task", "queue", "priority", "max_retries", "result_ttl", "expires_at",
    "created_at", "run_at", "started_at", "finished_at", "attempts", "worker", "token",
    "lease_until", "progress", "cancel_requested",
)  # fmt: skip
#: What job() reads: _PLAIN, state, payload, the JSON columns as text, then seq.
COLUMNS = ", ".join(
    (*_PLAIN, "state", "payload", "errors::text", "result::text", "spec::text", "seq")
)
#: The states maintain() prunes, as an SQL list: literal, so that the planner can match
#: the partial index on them.
PRUNABLE = ", ".join(f"'{state.value}'" for state in sorted(PRUNABLE_STATES))


def _queries() -> dict[str, bytes]:
    # bytes: psycopg takes str queries only as literals (LiteralString), for safety's sake.
    text = SQL.joinpath("queries.sql").read_text("utf-8")
    _, *parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {
        name: body.strip().format(columns=COLUMNS, prunable=PRUNABLE).encode()
        for name, body in zip(parts[::2], parts[1::2], strict=True)
    }


#: Statements by name, from sql/postgres/queries.sql.
QUERIES = _queries()


def job(row: Sequence[Any]) -> Job:
    """A Job from a row selected as COLUMNS."""
    *plain, state, payload, errors, result, spec, _seq = row
    record = Job(
        **dict(zip(_PLAIN, plain, strict=True)),
        state=JobState(state),
        payload=payload,
        errors=[AttemptError.from_dict(e) for e in decode(errors)] if errors != "[]" else [],
        result=None if result is None else decode(result),
    )
    record.retry, record.timeout, record.result_ttl, metadata = decode_spec(spec)
    record.metadata = dict(metadata) if metadata else {}
    return record


def claimed(row: Sequence[Any]) -> tuple[Job, int]:
    """A claimed job and its enqueue sequence (the row's last column)."""
    return job(row), row[-1]


def readable(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """The rows' jobs, leaving out (and logging) records that cannot be read: a reader is
    shown the others; the claim or upkeep that meets one quarantines it."""
    jobs, bad = sift(rows, job)
    for row, reason in bad:
        skipped(row[0], reason)
    return jobs


# Where job() finds what a quarantine reads: id and token, attempts, errors and spec.
_TOKEN, _ATTEMPTS = _PLAIN.index("token"), _PLAIN.index("attempts")
_ERRORS, _SPEC = len(_PLAIN) + 2, len(_PLAIN) + 4


def quarantines(bad: Sequence[tuple[Sequence[Any], str]], now: float) -> dict[str, Any]:
    """The parameters of the quarantine query for rows selected as COLUMNS that job()
    could not read, each with why."""
    records = []
    for row, reason in bad:
        q = quarantine(row[0], reason, now, row[_ATTEMPTS], spec=row[_SPEC], errors=row[_ERRORS])
        spec = None if q.spec is None else orjson.Fragment(q.spec)
        records.append({"id": q.job_id, "token": row[_TOKEN], "errors": q.errors, "spec": spec})
    return {"now": now, "records": orjson.dumps(records).decode()}


_INSERTED = (
    "id", "task", "queue", "priority", "max_retries", "result_ttl", "expires_at",
    "created_at", "run_at",
)  # fmt: skip
_inserted = operator.attrgetter(*_INSERTED)


def _insert_params(jobs: Sequence[Job]) -> dict[str, Any]:
    """The parameters of the insert query, for records prepare() made."""
    rows = []
    for record in jobs:
        row = dict(zip(_INSERTED, _inserted(record), strict=True))
        row["state"] = record.state.value
        # bytea's text form: the payload is stored as given, even when it is no JSON.
        row["payload"] = "\\x" + record.payload.hex()
        row["spec"] = orjson.Fragment(encode_spec(record))
        rows.append(row)
    return {"jobs": orjson.dumps(rows).decode()}


def _stored(jobs: Sequence[Job], inserted: set[str], existing: list[Any]) -> list[Job]:
    """The records enqueue returns: each job stored now, or the record that held its id
    (stored before, or earlier in the same call)."""
    found = {row[0]: job(row) for row in existing}
    for record in jobs:
        if record.id in inserted:
            found.setdefault(record.id, record)
    return [found[record.id] for record in jobs]


async def insert(connection: AsyncConnection[Any], jobs: Sequence[Job]) -> list[Job]:
    """Store prepared jobs with one statement on `connection`; the records (enqueue's)."""
    params = _insert_params(jobs)
    async with connection.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(QUERIES["insert"], params)
        inserted = {row[0] for row in await cursor.fetchall()}
        existing: list[Any] = []
        if len(inserted) < len(jobs):
            missing = [record.id for record in jobs if record.id not in inserted]
            await cursor.execute(QUERIES["existing"], {"ids": missing})
            existing = await cursor.fetchall()
    return _stored(jobs, inserted, existing)


def insert_sync(connection: Connection[Any], jobs: Sequence[Job]) -> list[Job]:
    """insert() on a sync connection."""
    params = _insert_params(jobs)
    with connection.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(QUERIES["insert"], params)
        inserted = {row[0] for row in cursor.fetchall()}
        existing: list[Any] = []
        if len(inserted) < len(jobs):
            missing = [record.id for record in jobs if record.id not in inserted]
            cursor.execute(QUERIES["existing"], {"ids": missing})
            existing = cursor.fetchall()
    return _stored(jobs, inserted, existing)


# -- migrations ----------------------------------------------------------------------------


async def schema_version(connection: AsyncConnection[Any]) -> int:
    """The last migration applied to the database, 0 if none."""
    cursor = await connection.execute("SELECT to_regclass('taskmill_migrations') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await connection.execute("SELECT coalesce(max(version), 0) FROM taskmill_migrations")
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def migrate(connection: AsyncConnection[Any]) -> list[str]:
    """Apply the migrations the database lacks, in one transaction under an advisory lock
    (processes starting together apply them once), recording each. Returns their names.

    Refuses a database migrated by a newer taskmill than this one."""
    applied = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS taskmill_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(connection)
        database = f"PostgreSQL database {connection.info.dbname}"
        for migration in pending("postgres", current, database):
            # No parameters: the script is several statements.
            await connection.execute(migration.script.encode())
            await connection.execute(
                "INSERT INTO taskmill_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.name)
    return applied


async def migrate_database(url: str) -> tuple[list[str], int]:
    """migrate() on a connection of its own to `url`: (names applied, version now)."""
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        applied = await migrate(connection)
        return applied, await schema_version(connection)
