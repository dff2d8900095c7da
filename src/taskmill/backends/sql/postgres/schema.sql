-- The PostgreSQL backend's schema as it stands after every migration: tables, indexes,
-- functions and the trigger, in one place for a reader.
--
-- Documentation, never run: the numbered migrations beside this file (NNNN_*.sql, which
-- `taskmill migrate` and every backend's open() apply in order) are the truth. A test
-- (tests/backends/test_postgres.py) applies this file to an empty schema and holds its
-- catalog equal to what the migrations make; a migration that changes the schema changes
-- this file with it.
--
-- Times are UNIX seconds (double precision), from the backend's clock, never the
-- server's: tests move time by hand. Tables live in the connection's search_path, prefixed
-- taskmill_.

-- -- tables ---------------------------------------------------------------------------------

CREATE TABLE taskmill_jobs (
    -- Enqueue order: the tie-breaker among equal priorities and the key of list cursors.
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    task text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    state text NOT NULL CHECK (state IN (
        'pending', 'scheduled', 'running', 'succeeded', 'retrying', 'dead', 'cancelled',
        'expired')),
    -- The arguments as the producer encoded them, kept even when they are no JSON (the
    -- worker, not the queue, rejects them): convert_from(payload, 'UTF8')::jsonb reads them.
    payload bytea NOT NULL,
    -- Job.spec(); result_ttl is also a column so that pruning can use an index.
    spec json NOT NULL,
    max_retries integer NOT NULL,
    result_ttl double precision NOT NULL,
    expires_at double precision,
    created_at double precision NOT NULL,
    run_at double precision NOT NULL,
    -- True once run_at has come (set when a job starts waiting, or by a claim once run_at
    -- passes), so that the claim index holds only due jobs.
    due boolean NOT NULL,
    started_at double precision,
    finished_at double precision,
    attempts integer NOT NULL DEFAULT 0,
    -- jsonb, so that finishing an attempt appends to them on the server.
    errors jsonb NOT NULL DEFAULT '[]',
    worker text,
    token text,
    lease_until double precision,
    -- Stored as sent (key order kept).
    result json,
    progress double precision,
    cancel_requested boolean NOT NULL DEFAULT false
);

-- Queues with a row here are listed even when empty; paused ones hand out no jobs.
CREATE TABLE taskmill_queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    -- What configure_queue stored (weight, concurrency, retry defaults); claims enforce
    -- `concurrency`.
    settings jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE taskmill_workers (
    id text PRIMARY KEY,
    -- WorkerInfo.to_dict().
    info json NOT NULL,
    last_seen double precision NOT NULL
);

CREATE TABLE taskmill_schedules (
    name text PRIMARY KEY,
    -- Schedule.definition(): what put_schedule replaces.
    definition jsonb NOT NULL,
    -- The state, written by record_tick only.
    last_tick double precision,
    -- Job ids, newest first.
    recent_jobs jsonb NOT NULL DEFAULT '[]'
);

-- Named leases; the scheduler's leader holds one.
CREATE TABLE taskmill_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at double precision NOT NULL
);

-- The migrations applied, one row each (made by the migration runner, postgres_sql.py).
CREATE TABLE taskmill_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- -- indexes --------------------------------------------------------------------------------
-- Every index on waiting or running jobs is partial: finished jobs, however many, are in
-- none of them, so claiming, waiting and rescuing cost the same with a million of them.

-- claim: the next due jobs of a queue, by priority then enqueue order.
CREATE INDEX taskmill_jobs_claim ON taskmill_jobs (queue, priority DESC, seq)
    WHERE due AND state IN ('pending', 'scheduled', 'retrying');
-- claim marks jobs due as their run_at passes; wait sleeps until the earliest run_at.
CREATE INDEX taskmill_jobs_timer ON taskmill_jobs (queue, run_at)
    WHERE NOT due AND state IN ('pending', 'scheduled', 'retrying');
CREATE INDEX taskmill_jobs_expiry ON taskmill_jobs (queue, expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('pending', 'scheduled', 'retrying');
-- maintain: expired leases, and finished jobs past their result_ttl.
CREATE INDEX taskmill_jobs_lease ON taskmill_jobs (lease_until) WHERE state = 'running';
CREATE INDEX taskmill_jobs_prune ON taskmill_jobs ((finished_at + result_ttl))
    WHERE state IN ('succeeded', 'cancelled', 'expired');
-- The filters of list_jobs, requeue and purge, newest first. No index on state or
-- (queue, state): it would change at every claim and finish.
CREATE INDEX taskmill_jobs_task ON taskmill_jobs (task, seq);
CREATE INDEX taskmill_jobs_dead ON taskmill_jobs (seq) WHERE state = 'dead';

-- -- functions and the trigger --------------------------------------------------------------

-- Take up to _limit due jobs of _queues for a worker, in one transaction (from
-- 0004_queue_concurrency.sql, which replaced 0001's):
-- 1. lock the rows of the queues among _queues that have a `concurrency` setting, so that
--    claims of one limited queue take turns (each sees what the last took: every statement
--    of the function reads the rows committed before it began);
-- 2. expire waiting jobs past their expires_at;
-- 3. mark due the waiting jobs whose run_at has come;
-- 4. take the best due jobs of the queues not paused, the queues in the order given, each
--    by priority then enqueue order, a limited queue at most its limit less its running
--    jobs.
-- Every step but the first skips rows another claim holds, so that concurrent claims never
-- wait on one another. The rows come back in no order: the backend sorts them.
CREATE FUNCTION taskmill_claim(
    _queues text[], _worker text, _limit integer, _now double precision,
    _lease_until double precision
) RETURNS SETOF taskmill_jobs LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM taskmill_queues
    WHERE name = ANY (_queues) AND settings ->> 'concurrency' IS NOT NULL AND NOT paused
    ORDER BY name
    FOR UPDATE;
    UPDATE taskmill_jobs SET state = 'expired', finished_at = _now
    WHERE seq IN (
        SELECT seq FROM taskmill_jobs
        WHERE queue = ANY (_queues) AND expires_at <= _now
            AND state IN ('pending', 'scheduled', 'retrying')
        FOR UPDATE SKIP LOCKED);
    UPDATE taskmill_jobs SET due = true
    WHERE seq IN (
        SELECT seq FROM taskmill_jobs
        WHERE queue = ANY (_queues) AND NOT due AND run_at <= _now
            AND state IN ('pending', 'scheduled', 'retrying')
        FOR UPDATE SKIP LOCKED);
    RETURN QUERY
    WITH taken AS (
        UPDATE taskmill_jobs AS j
        SET state = 'running', attempts = j.attempts + 1,
            token = translate(gen_random_uuid()::text, '-', ''), worker = _worker,
            started_at = _now, lease_until = _lease_until, cancel_requested = false
        FROM (
            SELECT c.seq FROM (
                SELECT q.name, q.rank, CASE
                    WHEN s.settings ->> 'concurrency' IS NOT NULL THEN least(_limit, greatest(0,
                        (s.settings ->> 'concurrency')::integer - (
                            SELECT count(*) FROM taskmill_jobs
                            WHERE queue = q.name AND state = 'running')::integer))
                    ELSE _limit END AS room
                FROM unnest(_queues) WITH ORDINALITY AS q (name, rank)
                LEFT JOIN taskmill_queues AS s ON s.name = q.name
                WHERE s.paused IS NOT true) AS q
            CROSS JOIN LATERAL (
                SELECT seq, priority FROM taskmill_jobs
                WHERE queue = q.name AND due AND state IN ('pending', 'scheduled', 'retrying')
                    -- one skipped by the expiry above, held by another claim meanwhile
                    AND (expires_at IS NULL OR expires_at > _now)
                ORDER BY priority DESC, seq
                LIMIT q.room
                FOR UPDATE SKIP LOCKED) AS c
            ORDER BY q.rank, c.priority DESC, c.seq
            LIMIT _limit) AS picked
        WHERE j.seq = picked.seq
        RETURNING j.*)
    SELECT * FROM taken;
END
$$;

-- Every insert wakes the idle workers of its queues (the payload is the queue's name), at
-- the commit of the inserting transaction: also when the caller enqueued on a connection
-- of its own, in its own transaction.
CREATE FUNCTION taskmill_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskmill', queue) FROM (SELECT DISTINCT queue FROM inserted) AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER taskmill_jobs_inserted AFTER INSERT ON taskmill_jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION taskmill_notify_inserted();
