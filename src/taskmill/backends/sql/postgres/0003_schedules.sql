-- Schedules and the scheduler's leader lease (see backends/base.py).

CREATE TABLE taskmill_schedules (
    name text PRIMARY KEY,
    -- Schedule.definition(): what put_schedule replaces.
    definition jsonb NOT NULL,
    -- The state, written by record_tick only.
    last_tick double precision,
    -- Job ids, newest first.
    recent_jobs jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE taskmill_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at double precision NOT NULL
);
