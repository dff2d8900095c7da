-- A queue's stored `concurrency` is enforced: at most that many of its jobs run at once,
-- across every worker. The claim below is 0001's, with two additions that cost queues
-- without a limit nothing: the rows of the limited queues among _queues are locked first,
-- so that claims of one limited queue take turns (each sees what the last took: every
-- statement of the function reads the rows committed before it began), and each such
-- queue gives at most its limit less its running jobs.
CREATE OR REPLACE FUNCTION taskmill_claim(
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
