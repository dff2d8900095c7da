-- Schedules and the scheduler's leader lease (see backends/base.py).

CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    -- Schedule.definition() as JSON: what put_schedule replaces.
    definition TEXT NOT NULL,
    -- The state, written by record_tick only.
    last_tick REAL,
    -- JSON list of job ids, newest first.
    recent_jobs TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
