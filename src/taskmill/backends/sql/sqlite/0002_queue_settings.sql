-- Queue settings stored through the API (weight, concurrency, retry defaults) as one JSON
-- object. Claims read "concurrency": at most that many of the queue's jobs run at once,
-- across every worker; the rest is kept for the server and the workers.
ALTER TABLE queues ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
