-- The PostgreSQL backend's statements, each under `-- name: NAME` (postgres_sql.py reads
-- them). Parameters are psycopg's %(name)s; {columns} is the job record's select list
-- (COLUMNS in postgres_sql.py). Batches travel as one JSON array, unpacked by
-- json_to_recordset on the server: one parameter, whatever the batch size. Each statement
-- is one state change, atomic on its own.

-- name: insert
-- Records as prepare() made them: a pending one is due now, a scheduled one later. Ids
-- already taken are skipped here and read back by `existing`.
INSERT INTO taskmill_jobs (id, task, queue, priority, state, payload, spec, max_retries,
    result_ttl, expires_at, created_at, run_at, due)
SELECT id, task, queue, priority, state, payload, spec, max_retries, result_ttl,
    expires_at, created_at, run_at, state = 'pending'
FROM json_to_recordset(%(jobs)s::json) AS j (id text, task text, queue text,
    priority integer, state text, payload bytea, spec json, max_retries integer,
    result_ttl double precision, expires_at double precision,
    created_at double precision, run_at double precision)
ON CONFLICT (id) DO NOTHING
RETURNING id

-- name: existing
SELECT {columns} FROM taskmill_jobs WHERE id = ANY (%(ids)s::text[])

-- name: get
SELECT {columns} FROM taskmill_jobs WHERE id = %(id)s

-- name: list_jobs
-- Newest first; each filter applies when given.
SELECT {columns} FROM taskmill_jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    AND (%(task)s::text IS NULL OR task = %(task)s)
    AND (%(before)s::bigint IS NULL OR seq < %(before)s)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: cancel
-- A waiting job is cancelled now, a running one is asked to stop; a finished one is left
-- alone (no row: the caller reads it).
UPDATE taskmill_jobs SET
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE %(now)s END,
    cancel_requested = cancel_requested OR state = 'running'
WHERE id = %(id)s AND state IN ('pending', 'scheduled', 'retrying', 'running')
RETURNING {columns}

-- name: delete
DELETE FROM taskmill_jobs WHERE id = %(id)s AND state <> 'running'

-- name: claim
-- Committed without waiting for the WAL flush, a good part of a claim's time: a claim that
-- a crash of the server loses only leaves its jobs waiting, to run again, and it cannot be
-- lost once a later change (the outcome) was flushed after it.
SELECT {columns}
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed,
    taskmill_claim(%(queues)s::text[], %(worker)s, %(limit)s, %(now)s, %(lease_until)s)

-- name: quarantine
-- Records a claim or upkeep took but could not read (rules.Quarantine), still held by it.
UPDATE taskmill_jobs AS j SET state = 'dead', finished_at = %(now)s, token = NULL,
    lease_until = NULL, due = false, errors = q.errors, spec = coalesce(q.spec, j.spec)
FROM json_to_recordset(%(records)s::json) AS q (id text, token text, errors jsonb, spec json)
WHERE j.id = q.id AND j.state = 'running' AND j.token = q.token

-- name: next_run_at
-- When a job waiting in these queues (not paused) is due: now if one is, else the
-- earliest run_at; NULL when none waits.
SELECT min(t) FROM unnest(%(queues)s::text[]) AS q (name)
CROSS JOIN LATERAL (
    (SELECT %(now)s::double precision AS t FROM taskmill_jobs
     WHERE queue = q.name AND due AND state IN ('pending', 'scheduled', 'retrying') LIMIT 1)
    UNION ALL
    (SELECT run_at FROM taskmill_jobs
     WHERE queue = q.name AND NOT due AND state IN ('pending', 'scheduled', 'retrying')
     ORDER BY run_at LIMIT 1)) AS next
WHERE NOT EXISTS (SELECT FROM taskmill_queues WHERE name = q.name AND paused)

-- name: heartbeat
-- Returns the held jobs the worker may keep running: still its own, no cancel requested.
WITH seen AS (
    INSERT INTO taskmill_workers (id, info, last_seen) VALUES (%(worker)s, %(info)s, %(now)s)
    ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen),
renewed AS (
    UPDATE taskmill_jobs AS j
    SET lease_until = %(lease_until)s, progress = coalesce(h.progress, j.progress)
    FROM json_to_recordset(%(held)s::json) AS h (id text, token text,
        progress double precision)
    WHERE j.id = h.id AND j.state = 'running' AND j.token = h.token
    RETURNING j.id, j.cancel_requested)
SELECT id FROM renewed WHERE NOT cancel_requested

-- name: finish
-- Outcomes whose job is still running with their token, applied; returns the index `n` of
-- each applied one. Those that leave the job waiting wake the queue's idle workers.
WITH done AS (
    UPDATE taskmill_jobs AS j SET
        state = CASE WHEN o.state <> 'pending' THEN o.state
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.run_at > %(now)s THEN 'scheduled' ELSE 'pending' END,
        attempts = j.attempts - (o.state = 'pending')::integer,
        result = CASE WHEN o.state = 'succeeded' THEN o.result ELSE j.result END,
        errors = CASE WHEN o.error IS NULL THEN j.errors
            ELSE j.errors || jsonb_build_array(o.error) END,
        run_at = CASE WHEN o.state = 'retrying' THEN o.run_at ELSE j.run_at END,
        due = CASE WHEN o.state = 'retrying' THEN o.run_at <= %(now)s
            ELSE j.run_at <= %(now)s END,
        finished_at = CASE
            WHEN o.state IN ('succeeded', 'dead', 'cancelled')
                OR (o.state = 'pending' AND j.cancel_requested) THEN %(now)s
            ELSE j.finished_at END,
        token = NULL, lease_until = NULL, progress = coalesce(o.progress, j.progress)
    FROM json_to_recordset(%(outcomes)s::json) AS o (n integer, id text, token text,
        state text, result json, error jsonb, run_at double precision,
        progress double precision)
    WHERE j.id = o.id AND j.state = 'running' AND j.token = o.token
    RETURNING o.n, j.queue, j.state),
woken AS (
    SELECT pg_notify('taskmill', queue) FROM (
        SELECT DISTINCT queue FROM done
        WHERE state IN ('pending', 'scheduled', 'retrying')) AS q)
SELECT n FROM done CROSS JOIN (SELECT count(*) FROM woken) AS w

-- name: expired_leases
-- Locked until the rescue below commits; other upkeep runs skip them.
SELECT {columns} FROM taskmill_jobs
WHERE state = 'running' AND lease_until < %(now)s
ORDER BY lease_until
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: rescue
WITH rescued AS (
    UPDATE taskmill_jobs AS j SET
        state = r.state, finished_at = r.finished_at, run_at = coalesce(r.run_at, j.run_at),
        due = coalesce(r.run_at <= %(now)s, false), token = NULL, lease_until = NULL,
        errors = j.errors || jsonb_build_array(r.error)
    FROM json_to_recordset(%(rescues)s::json) AS r (id text, token text, state text,
        finished_at double precision, run_at double precision, error jsonb)
    WHERE j.id = r.id AND j.token = r.token
    RETURNING j.queue, j.state),
woken AS (
    SELECT pg_notify('taskmill', queue) FROM (
        SELECT DISTINCT queue FROM rescued WHERE state = 'retrying') AS q)
SELECT count(*) FROM rescued CROSS JOIN (SELECT count(*) FROM woken) AS w

-- name: prune
-- Finished jobs past their result_ttl (a batch at most per call), and workers gone quiet.
-- Nothing reads `pruned`, and nothing need: a DELETE in a WITH runs to its end all the
-- same, so the one statement does both.
WITH pruned AS (
    DELETE FROM taskmill_jobs WHERE seq IN (
        SELECT seq FROM taskmill_jobs
        WHERE state IN ({prunable})
            AND finished_at + result_ttl < %(now)s
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
DELETE FROM taskmill_workers WHERE last_seen < %(seen_since)s

-- name: unregister_worker
DELETE FROM taskmill_workers WHERE id = %(worker)s

-- name: list_workers
SELECT info::text, last_seen FROM taskmill_workers WHERE last_seen >= %(since)s ORDER BY id

-- name: set_paused
-- Resuming wakes the queue's idle workers.
WITH queue AS (
    INSERT INTO taskmill_queues (name, paused) VALUES (%(queue)s, %(paused)s)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused)
SELECT pg_notify('taskmill', %(queue)s) WHERE NOT %(paused)s

-- name: list_queues
-- Queues configured (paused, resumed or given settings), then per queue, state and
-- priority: jobs, the created_at of the oldest due one, the due ones, and those finished
-- within the throughput window. One pass over the table.
SELECT name, paused, settings::text, NULL, NULL, 0, NULL, 0, 0 FROM taskmill_queues
UNION ALL
SELECT queue, NULL, NULL, state, priority, count(*),
    min(created_at) FILTER (WHERE run_at <= %(now)s),
    count(*) FILTER (WHERE run_at <= %(now)s),
    count(*) FILTER (WHERE finished_at > %(since)s)
FROM taskmill_jobs GROUP BY queue, state, priority

-- name: configure_queue
INSERT INTO taskmill_queues (name, settings) VALUES (%(queue)s, %(settings)s)
ON CONFLICT (name) DO UPDATE SET settings = excluded.settings

-- name: queue_settings
SELECT name, settings::text FROM taskmill_queues WHERE settings <> '{{}}'

-- name: delete_queue
-- Its idle workers are woken: the queue may have been paused.
WITH gone AS (DELETE FROM taskmill_queues WHERE name = %(queue)s RETURNING name)
SELECT (SELECT count(*) FROM gone), pg_notify('taskmill', %(queue)s)

-- name: requeue
WITH moved AS (
    UPDATE taskmill_jobs SET state = 'pending', attempts = 0, run_at = %(now)s, due = true,
        finished_at = NULL
    WHERE state = 'dead'
        -- A quarantined record stays dead (rules.Quarantine).
        AND coalesce(CASE WHEN jsonb_typeof(errors) = 'array' THEN errors -> -1 ->> 'error' END,
            '') NOT LIKE %(corrupt)s
        AND (%(ids)s::text[] IS NULL OR id = ANY (%(ids)s::text[]))
        AND (%(queue)s::text IS NULL OR queue = %(queue)s)
        AND (%(task)s::text IS NULL OR task = %(task)s)
    RETURNING queue),
woken AS (SELECT pg_notify('taskmill', queue) FROM (SELECT DISTINCT queue FROM moved) AS q)
SELECT count(*) FROM moved CROSS JOIN (SELECT count(*) FROM woken) AS w

-- name: purge
DELETE FROM taskmill_jobs
WHERE state = %(state)s
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    AND (%(task)s::text IS NULL OR task = %(task)s)

-- name: put_schedule
INSERT INTO taskmill_schedules (name, definition) VALUES (%(name)s, %(definition)s)
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition

-- name: get_schedule
SELECT definition::text, last_tick, recent_jobs::text FROM taskmill_schedules
WHERE name = %(name)s

-- name: list_schedules
SELECT definition::text, last_tick, recent_jobs::text FROM taskmill_schedules ORDER BY name

-- name: delete_schedule
DELETE FROM taskmill_schedules WHERE name = %(name)s

-- name: tick_due
-- The schedule's recent jobs if `tick` is later than its last one, its row locked until
-- record_tick's transaction ends.
SELECT recent_jobs::text FROM taskmill_schedules
WHERE name = %(name)s AND (last_tick IS NULL OR last_tick < %(tick)s) FOR UPDATE

-- name: record_tick
UPDATE taskmill_schedules SET last_tick = %(tick)s, recent_jobs = %(recent)s
WHERE name = %(name)s

-- name: acquire_lease
-- Taken if free, expired or already ours; either way, the lease as it is afterwards.
WITH taken AS (
    INSERT INTO taskmill_leases (name, holder, expires_at)
    VALUES (%(name)s, %(holder)s, %(until)s)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE taskmill_leases.expires_at <= %(now)s OR taskmill_leases.holder = %(holder)s
    RETURNING holder, expires_at)
SELECT holder, expires_at FROM taken
UNION ALL
SELECT holder, expires_at FROM taskmill_leases
WHERE name = %(name)s AND NOT EXISTS (SELECT FROM taken)

-- name: release_lease
DELETE FROM taskmill_leases WHERE name = %(name)s AND holder = %(holder)s

-- name: get_lease
SELECT holder, expires_at FROM taskmill_leases WHERE name = %(name)s AND expires_at > %(now)s
