-- The SQLite backend's schema. Times are UNIX seconds (REAL).
-- The lists of waiting and prunable states in partial indexes are repeated literally in the
-- queries of sqlite.py: SQLite uses a partial index only when the query's WHERE repeats it.

CREATE TABLE jobs (
    -- Enqueue order: the tie-breaker among equal priorities and the key of list cursors.
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    -- Job.spec() as JSON; result_ttl is also kept as a column so pruning can use an index.
    spec BLOB NOT NULL,
    max_retries INTEGER NOT NULL,
    result_ttl REAL NOT NULL,
    expires_at REAL,
    created_at REAL NOT NULL,
    run_at REAL NOT NULL,
    -- 1 once run_at has come (set when a job starts waiting, or by claim when run_at
    -- passes), so the claim index holds only due jobs and jobs scheduled far ahead cost
    -- claim nothing.
    due INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- JSON list of AttemptError.to_dict(); TEXT so json_insert() can append to it.
    errors TEXT NOT NULL DEFAULT '[]',
    worker TEXT,
    token TEXT,
    lease_until REAL,
    result BLOB,
    progress REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);

-- claim: the next due jobs of a queue, by priority then enqueue order.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, seq, run_at)
    WHERE due = 1 AND state IN ('pending', 'scheduled', 'retrying');
-- claim marks jobs due as their run_at passes; wait sleeps until the earliest run_at.
CREATE INDEX jobs_timer ON jobs (queue, run_at)
    WHERE due = 0 AND state IN ('pending', 'scheduled', 'retrying');
CREATE INDEX jobs_expiry ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('pending', 'scheduled', 'retrying');
-- maintain: expired leases, and finished jobs past their result_ttl.
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_prune ON jobs (finished_at + result_ttl)
    WHERE state IN ('succeeded', 'cancelled', 'expired');
-- The filters of list_jobs, requeue and purge; seq is the rowid, so each index is also in
-- seq order. No index on state, nor on (queue, state): it would change at every claim and
-- finish, which slows the drain (docs/performance.md), so list_queues counts by scanning
-- the table, and the newest jobs, which list_jobs shows first, are found by walking back
-- from the newest row.
CREATE INDEX jobs_task ON jobs (task);
CREATE INDEX jobs_dead ON jobs (seq) WHERE state = 'dead';

-- Queues with a row here are listed even when empty; paused ones hand out no jobs.
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    -- WorkerInfo.to_dict() as JSON.
    info TEXT NOT NULL,
    last_seen REAL NOT NULL
) WITHOUT ROWID;
