-- Queue settings stored through the API (weight, concurrency, retry defaults) as one JSON
-- object: the backend keeps them, the server and the workers read them.
ALTER TABLE taskmill_queues ADD COLUMN settings jsonb NOT NULL DEFAULT '{}';
