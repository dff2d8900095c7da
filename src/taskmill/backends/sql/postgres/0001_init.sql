-- The PostgreSQL backend's schema. Times are UNIX seconds (double precision), from the
-- backend's clock, never the server's: tests move time by hand.
-- Tables live in the connection's search_path (usually public), prefixed taskmill_.
-- Results and options are `json`, stored as sent (key order kept) and queryable; errors are
-- `jsonb`, so that finishing an attempt appends to them on the server. Arguments are the
-- bytes the producer encoded, kept as they are even when they are no JSON (the worker,
-- not the queue, rejects them): convert_from(payload, 'UTF8')::jsonb reads them.

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
    payload bytea NOT NULL,
    -- Job.spec(); result_ttl is also a column so that pruning can use an index.
    spec json NOT NULL,
    max_retries integer NOT NULL,
    result_ttl double precision NOT NULL,
    expires_at double precision,
    created_at double precision NOT NULL,
    run_at double precision NOT NULL,
    -- True once run_at has come (set when a job starts waiting, or by a claim once run_at
    -- passes), so that the claim index holds only due jobs: jobs scheduled far ahead, or
    -- waiting out a retry backoff, cost a claim nothing.
    due boolean NOT NULL,
    started_at double precision,
    finished_at double precision,
    attempts integer NOT NULL DEFAULT 0,
    errors jsonb NOT NULL DEFAULT '[]',
    worker text,
    token text,
    lease_until double precision,
    result json,
    progress double precision,
    cancel_requested boolean NOT NULL DEFAULT false
);

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
-- The filters of list_jobs, requeue and purge, newest first. As in the SQLite backend, no
-- index on state or (queue, state): it would change at every claim and finish.
CREATE INDEX taskmill_jobs_task ON taskmill_jobs (task, seq);
CREATE INDEX taskmill_jobs_dead ON taskmill_jobs (seq) WHERE state = 'dead';

-- Queues with a row here are listed even when empty; paused ones hand out no jobs.
CREATE TABLE taskmill_queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

CREATE TABLE taskmill_workers (
    id text PRIMARY KEY,
    -- WorkerInfo.to_dict().
    info json NOT NULL,
    last_seen double precision NOT NULL
);

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

-- Take up to _limit due jobs of _queues for a worker, in one transaction: expire waiting
-- jobs past their expires_at, mark due those whose run_at has come, then take the best,
-- the queues in the order given, each by priority then enqueue order. Every step skips
-- rows another claim holds, so that concurrent claims never wait on one another.
-- Each statement of a function sees the rows the statements before it changed.
CREATE FUNCTION taskmill_claim(
    _queues text[], _worker text, _limit integer, _now double precision,
    _lease_until double precision
) RETURNS SETOF taskmill_jobs LANGUAGE plpgsql AS $$
BEGIN
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
            SELECT c.seq FROM unnest(_queues) WITH ORDINALITY AS q (name, rank)
            CROSS JOIN LATERAL (
                SELECT seq, priority FROM taskmill_jobs
                WHERE queue = q.name AND due AND state IN ('pending', 'scheduled', 'retrying')
                    -- one skipped by the expiry above, held by another claim meanwhile
                    AND (expires_at IS NULL OR expires_at > _now)
                ORDER BY priority DESC, seq
                LIMIT _limit
                FOR UPDATE SKIP LOCKED) AS c
            WHERE NOT EXISTS (SELECT FROM taskmill_queues WHERE name = q.name AND paused)
            ORDER BY q.rank, c.priority DESC, c.seq
            LIMIT _limit) AS picked
        WHERE j.seq = picked.seq
        RETURNING j.*)
    SELECT * FROM taken;
END
$$;
