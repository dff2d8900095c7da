"""The SQLite backend's statements, and the job record's columns they read and write
(sqlite.py runs them)."""

from __future__ import annotations

import operator

from taskmill.job import JobState

# WAITING_STATES and PRUNABLE_STATES, written out as in the partial indexes of 0001_init.sql
# (test_sqlite checks both): SQLite uses a partial index only when the query repeats its
# WHERE clause, so they cannot be bound as parameters.
WAITING = "('pending', 'scheduled', 'retrying')"
PRUNABLE = "('succeeded', 'cancelled', 'expired')"


def marks(count: int) -> str:
    return ", ".join("?" * count)


# Job fields stored as they are, one column each.
PLAIN = (
    "id", "task", "queue", "priority", "payload", "max_retries", "result_ttl", "expires_at",
    "created_at", "run_at", "started_at", "finished_at", "attempts", "worker", "token",
    "lease_until", "progress", "cancel_requested",
)  # fmt: skip
plain_values = operator.attrgetter(*PLAIN)
# What _job() reads: PLAIN, then the stored forms of state, errors, result, spec; then seq.
COLUMNS = ", ".join((*PLAIN, "state", "errors", "result", "spec", "seq"))
SELECT = f"SELECT {COLUMNS} FROM jobs"
INSERT = (
    f"INSERT INTO jobs ({', '.join((*PLAIN, 'state', 'errors', 'result', 'spec', 'due'))}) "
    f"VALUES ({marks(len(PLAIN) + 5)}) ON CONFLICT (id) DO NOTHING"
)
CLAIM = f"""
UPDATE jobs SET state = 'running', attempts = attempts + 1, token = lower(hex(randomblob(8))),
    worker = ?, started_at = ?, lease_until = ?, cancel_requested = 0
WHERE seq IN (
    SELECT seq FROM jobs WHERE queue = ? AND due = 1 AND state IN {WAITING} AND run_at <= ?
    ORDER BY priority DESC, seq LIMIT ?)
RETURNING {COLUMNS}"""
# Running jobs of a queue, through the partial index on running jobs: a handful.
RUNNING = "SELECT count(*) FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND queue = ?"
# A queue's next job is due now if one is in the claim index (almost always due), else at
# the earliest run_at among the rest. The planner would scan the table for the first part.
NEXT_RUN_AT = f"""
SELECT coalesce(
    (SELECT ? FROM jobs INDEXED BY jobs_claim WHERE queue = ? AND due = 1 AND state IN {WAITING}
     LIMIT 1),
    (SELECT run_at FROM jobs WHERE queue = ? AND due = 0 AND state IN {WAITING}
     ORDER BY run_at LIMIT 1))"""
# finish() takes a whole batch in one statement per kind of outcome: the outcomes arrive
# as one JSON array of [id, token, result, error, run_at, progress], joined to jobs by id.
OUTCOMES = (
    "(SELECT value ->> 0 AS oid, value ->> 1 AS otoken, value -> 2 AS oresult, "
    "value -> 3 AS oerror, value ->> 4 AS orun_at, value ->> 5 AS oprogress "
    "FROM json_each(:outcomes)) AS o"
)
APPEND_ERROR = (
    "errors = CASE WHEN oerror = 'null' THEN errors "
    "ELSE json_insert(errors, '$[#]', json(oerror)) END"
)
FINISH = {
    state: f"UPDATE jobs SET {sets}, token = NULL, lease_until = NULL, "
    f"progress = coalesce(oprogress, progress) FROM {OUTCOMES} "
    "WHERE jobs.id = oid AND jobs.state = 'running' AND jobs.token = otoken RETURNING jobs.id"
    for state, sets in {
        JobState.SUCCEEDED: "state = 'succeeded', result = oresult, finished_at = :now",
        JobState.RETRYING: f"state = 'retrying', {APPEND_ERROR}, run_at = orun_at, "
        "due = orun_at <= :now",
        JobState.DEAD: f"state = 'dead', {APPEND_ERROR}, finished_at = :now",
        JobState.CANCELLED: f"state = 'cancelled', {APPEND_ERROR}, finished_at = :now",
        JobState.PENDING: "attempts = attempts - 1, due = jobs.run_at <= :now, "
        "state = CASE WHEN cancel_requested THEN 'cancelled' "
        "WHEN jobs.run_at > :now THEN 'scheduled' ELSE 'pending' END, "
        "finished_at = CASE WHEN cancel_requested THEN :now END",
    }.items()
}
# A record a claim or upkeep cannot read goes to the dead-letter queue (rules.Quarantine).
QUARANTINE = (
    "UPDATE jobs SET state = 'dead', finished_at = ?, token = NULL, lease_until = NULL, "
    "due = 0, errors = ?, spec = coalesce(?, spec) WHERE id = ?"
)
# The columns of COLUMNS a quarantine reads: id, attempts, errors, spec.
ID, ATTEMPTS, ERRORS, SPEC = 0, PLAIN.index("attempts"), len(PLAIN) + 1, len(PLAIN) + 3
RESCUE = (
    "UPDATE jobs SET state = ?, finished_at = ?, run_at = coalesce(?, run_at), due = ?, "
    "token = NULL, lease_until = NULL, errors = json_insert(errors, '$[#]', json(?)) "
    "WHERE id = ?"
)
