-- Queue settings stored through the API (weight, concurrency, retry defaults) as one JSON
-- object: the server and the workers read them, and claims enforce `concurrency` (see
-- 0004_queue_concurrency.sql).
ALTER TABLE taskmill_queues ADD COLUMN settings jsonb NOT NULL DEFAULT '{}';
