"""What every peer's no-op task calls: `record(enqueued_at)` notes when the job started.

Standard library only, so that any peer's venv can import it (the harness puts this folder on
PYTHONPATH). Per process it keeps a count, the first and last start time and, when the job
carried its enqueue time, the enqueue-to-start latency. A daemon thread adds them to one
Redis hash every 20 ms with a Lua script, so a job costs a list append and not a round trip;
the harness polls that hash until every job is counted.

Workers that fork a process per job (RQ's default) would lose what the thread had not sent:
BENCH_RECORD_SYNC=1 sends each record at once instead.

Keys (on the private benchmark server only):
    bench:agg        hash: count, first, last (time.time() of the job starts)
    bench:latency    list: seconds from enqueue to start, one per job that carried its time
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from resp import Redis

AGG = "bench:agg"
LATENCY = "bench:latency"
INTERVAL = 0.02
CHUNK = 2_000  # latencies per script call: Lua's unpack() has a stack limit

# KEYS[1] -> bench:agg, KEYS[2] -> bench:latency
# ARGV[1] count to add, ARGV[2] first start, ARGV[3] last start, ARGV[4..] latencies
ADD = """
redis.call('HINCRBY', KEYS[1], 'count', ARGV[1])
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
if not first or tonumber(ARGV[2]) < first then redis.call('HSET', KEYS[1], 'first', ARGV[2]) end
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
if not last or tonumber(ARGV[3]) > last then redis.call('HSET', KEYS[1], 'last', ARGV[3]) end
if #ARGV > 3 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 4)) end
return 1
"""


class _Recorder:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.sync = os.environ.get("BENCH_RECORD_SYNC") == "1"
        self.redis: Redis | None = None
        if not self.sync:
            threading.Thread(target=self._loop, name="bench-recorder", daemon=True).start()
            atexit.register(self.flush)

    def add(self, enqueued_at: float) -> None:
        now = time.time()
        with self.lock:
            if self.count == 0 or now < self.first:
                self.first = now
            if now > self.last:
                self.last = now
            self.count += 1
            if enqueued_at > 0:
                self.latencies.append(now - enqueued_at)
        if self.sync:
            self.flush()

    def _loop(self) -> None:
        while True:
            time.sleep(INTERVAL)
            self.flush()

    def flush(self) -> None:
        with self.lock:
            count, first, last, latencies = self.count, self.first, self.last, self.latencies
            self.count, self.latencies = 0, []
        if not count:
            return
        if self.redis is None:
            self.redis = Redis(os.environ["BENCH_REDIS_URL"])
        chunks = [latencies[i : i + CHUNK] for i in range(0, len(latencies), CHUNK)] or [[]]
        commands: list[tuple[object, ...]] = []
        for i, chunk in enumerate(chunks):
            # The count goes with the last chunk: once it shows, every latency is there.
            added = count if i == len(chunks) - 1 else 0
            commands.append(
                ("EVAL", ADD, 2, AGG, LATENCY, added, repr(first), repr(last), *map(repr, chunk))
            )
        self.redis.pipeline(commands)


_recorder: _Recorder | None = None
_guard = threading.Lock()


def record(enqueued_at: float = 0.0) -> None:
    """Note that a job started now; `enqueued_at` (time.time() at enqueue) if it carried it."""
    global _recorder
    recorder = _recorder
    if recorder is None or recorder.pid != os.getpid():  # first job here, or a forked child
        with _guard:
            if _recorder is None or _recorder.pid != os.getpid():
                _recorder = _Recorder()
            recorder = _recorder
    recorder.add(enqueued_at)
