"""Pure units: the job model, its codecs and parsers, backoff policies, settings."""

from __future__ import annotations

import math
import os
import tracemalloc

import pytest

from taskmill import ConfigError, JobError, PayloadError, Priority, RetryPolicy, Settings
from taskmill.job import (
    MAX_DEPTH,
    Job,
    JobState,
    check_json,
    decode_payload,
    encode_payload,
    encode_spec,
    new_id,
    parse_duration,
    parse_priority,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("low", 0),
        ("MEDIUM", 1),
        ("high", 2),
        ("critical", 3),
        (Priority.HIGH, 2),
        (42, 42),
        ("7", 7),
        (0, 0),
        (100, 100),
    ],
)
def test_priorities_by_name_or_number(value: int | str, expected: int) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize("value", ["urgent", -1, 101, 2.5, True, None])
def test_bad_priorities_are_refused(value: object) -> None:
    with pytest.raises(JobError, match="priority"):
        parse_priority(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0.5, 0.5),
        ("30", 30.0),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        (" 1.5s ", 1.5),
    ],
)
def test_durations(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["soon", "-5", -1, "5 minutes", True, math.nan, math.inf, 1e20, "3651d"]
)
def test_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(JobError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_check_json_walks_only_what_may_hold_a_refused_value() -> None:
    check_json("args", [None, [[1.5]], {"a": "null"}, nested(MAX_DEPTH - 1)])
    for bad in (math.nan, -math.inf, [nested(MAX_DEPTH)], {"a": [math.inf]}):
        with pytest.raises(JobError, match=r"^args: "):
            check_json("args", [bad])
    with pytest.raises(JobError, match="nested deeper"):  # past orjson's own limit too
        check_json("args", nested(300))


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_payload_round_trip_and_limit() -> None:
    data = encode_payload([1, "two"], {"three": [3.0], "n": None}, limit=1000)
    assert decode_payload(data) == ([1, "two"], {"three": [3.0], "n": None})
    with pytest.raises(PayloadError, match="over the limit of 10 bytes"):
        encode_payload(["x" * 20], {}, limit=10)
    with pytest.raises(PayloadError, match="not JSON-serializable"):
        encode_payload([{1, 2}], {}, limit=1000)


def test_a_payload_and_a_spec_take_about_their_size_in_memory() -> None:
    jobs = [Job(task="t", metadata={"n": i}, timeout=float(i + 1)) for i in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        payloads = [encode_payload([i], {}, limit=1000) for i in range(100)]
        specs = [encode_spec(job) for job in jobs]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Not a 4 KiB buffer each.
    assert len(payloads) == len(specs) == 100 and used < 200 * 200


@pytest.mark.parametrize("data", [b"\xff", b"[1, 2]", b'{"args": {}}', b'{"kwargs": []}', b"nul"])
def test_malformed_payloads_are_refused(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_payload(data)


def test_job_record_as_data() -> None:
    job = Job(task="t", payload=encode_payload([1], {"a": 2}, 100), metadata={"m": 1})
    data = job.to_dict()
    assert (data["args"], data["kwargs"], data["state"]) == ([1], {"a": 2}, "pending")
    assert data["retry"] == RetryPolicy().to_dict()
    copy = Job(task="t")
    copy.apply_spec(job.spec())
    assert (copy.retry, copy.metadata, copy.timeout) == (job.retry, {"m": 1}, None)
    assert JobState.SUCCEEDED.finished and not JobState.RETRYING.finished


def test_backoff_strategies_without_jitter() -> None:
    exponential = RetryPolicy("exponential", delay=1.0, max_delay=10.0, jitter=0.0)
    assert [exponential.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    linear = RetryPolicy("linear", delay=2.0, max_delay=7.0, jitter=0.0)
    assert [linear.backoff(n) for n in range(1, 5)] == [2.0, 4.0, 6.0, 7.0]
    fixed = RetryPolicy("fixed", delay=3.0, jitter=0.0)
    assert [fixed.backoff(n) for n in (1, 10, 100)] == [3.0, 3.0, 3.0]
    assert exponential.backoff(10_000) == 10.0  # no overflow


def test_jitter_shortens_by_at_most_its_fraction() -> None:
    policy = RetryPolicy("fixed", delay=10.0, jitter=0.5)
    assert policy.backoff(1, rand=lambda: 0.0) == 10.0
    assert policy.backoff(1, rand=lambda: 1.0) == 5.0
    assert RetryPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    "kwargs", [{"strategy": "random"}, {"delay": -1}, {"jitter": 2.0}, {"max_delay": -5}]
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_settings_from_environment() -> None:
    env = {"TASKMILL_URL": "memory://x", "TASKMILL_LEASE": "12", "TASKMILL_MAX_PAYLOAD": "99"}
    settings = Settings.from_env(env, grace=3.0, heartbeat=None)
    assert (settings.url, settings.lease, settings.max_payload, settings.grace) == (
        "memory://x", 12.0, 99, 3.0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="TASKMILL_LEASE"):
        Settings.from_env({"TASKMILL_LEASE": "long"})
    with pytest.raises(ConfigError, match="heartbeat"):
        Settings(lease=1.0, heartbeat=2.0)


def test_ids_are_unique_time_ordered_and_not_shared_with_a_forked_child() -> None:
    ids = [new_id() for _ in range(2000)]  # several blocks of random halves
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, then out
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    # The parent's block still holds values the child would have taken without its own.
    assert child[12:] != new_id()[12:]
