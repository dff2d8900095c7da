"""A job's record in the Redis backend: its options as lua/enqueue.lua takes them, and its
hash read back as a Job.

A job's hash keeps only what differs from the defaults (see lua/common.lua): a priority,
retries, spec or ttl left out holds the job model's default, a run_at left out is the
creation time, and the id is the key's, which the scripts add to a record as "id".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from taskmill.job import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_RESULT_TTL,
    AttemptError,
    Job,
    JobState,
    decode,
    decode_spec,
)

_STATES = {state.value.encode(): state for state in JobState}


def packed_options(job: Job, spec: bytes) -> bytes:
    """An option set's values for enqueue.lua: empty when all are defaults, which the job's
    hash then leaves out."""
    values = (
        b"" if job.priority == DEFAULT_PRIORITY else b"%d" % job.priority,
        b"" if job.max_retries == DEFAULT_MAX_RETRIES else b"%d" % job.max_retries,
        b"" if job.result_ttl == DEFAULT_RESULT_TTL else repr(job.result_ttl).encode(),
        b"" if spec == b"{}" else spec,
    )
    return b"|".join(values) if any(values) else b""


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A hash as HGETALL gives it (field, value, field, value, ...), as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _opt(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def job_of(queue: str, f: Mapping[bytes, bytes]) -> Job:
    """A Job from its hash and id (as lua/common.lua's record() gives them)."""
    errors, result = f.get(b"errors"), f.get(b"result")
    worker, token = f.get(b"worker"), f.get(b"token")
    created, run_at = float(f[b"created"]), f.get(b"run_at")
    retry, timeout, result_ttl, metadata = decode_spec(f.get(b"spec", b"{}"))
    # Positional, in Job's field order: a claim reads every job it takes through here.
    return Job(
        f[b"task"].decode(), f[b"payload"], f[b"id"].decode(), queue,
        int(f.get(b"priority", DEFAULT_PRIORITY)), _STATES[f[b"state"]],
        int(f.get(b"retries", DEFAULT_MAX_RETRIES)), retry, timeout, result_ttl,
        _opt(f.get(b"expires")), dict(metadata) if metadata else {},
        created, created if run_at is None else float(run_at),
        _opt(f.get(b"started")), _opt(f.get(b"finished")), int(f.get(b"attempts", 0)),
        [AttemptError.from_dict(e) for e in decode(errors)] if errors else [],
        None if worker is None else worker.decode(), None if token is None else token.decode(),
        _opt(f.get(b"lease")), None if result is None else decode(result),
        _opt(f.get(b"progress")), f.get(b"cancel") == b"1",
    )  # fmt: skip
