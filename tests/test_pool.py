"""ThreadPool: Executor's shutdown contract (wait, cancel_futures, no submit after), and the
replacement of threads whose calls were abandoned, within a cap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from taskmill.pool import ThreadPool


@pytest.fixture
def go() -> Iterator[threading.Event]:
    """Released at the end whatever happened, so that no test leaves a thread blocked."""
    event = threading.Event()
    yield event
    event.set()


def threads_of(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(f"{name}-")]


def test_shutdown_with_wait_returns_once_the_calls_are_done(go: threading.Event) -> None:
    pool = ThreadPool(2, "pool-wait")
    futures = [pool.submit(go.wait) for _ in range(3)]  # the third waits for a thread
    returned = threading.Event()

    def shut_down() -> None:
        pool.shutdown(wait=True)
        returned.set()

    threading.Thread(target=shut_down).start()
    assert not returned.wait(0.2)  # blocked on the calls
    go.set()
    assert returned.wait(5)
    assert [future.result(0) for future in futures] == [True, True, True]
    assert threads_of("pool-wait") == []


def test_shutdown_without_wait_still_runs_the_calls_queued(go: threading.Event) -> None:
    pool = ThreadPool(1, "pool-nowait")
    running, queued = pool.submit(go.wait), pool.submit(lambda: "ran")
    pool.shutdown(wait=False)
    go.set()
    assert (running.result(5), queued.result(5)) == (True, "ran")


def test_cancel_futures_cancels_the_calls_not_started(go: threading.Event) -> None:
    pool = ThreadPool(1, "pool-cancel")
    started = threading.Event()

    def run() -> bool:
        started.set()
        return go.wait()

    running = pool.submit(run)
    queued = pool.submit(lambda: "never")
    assert started.wait(5)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    assert not running.cancelled()
    go.set()
    assert running.result(5) is True
    pool.shutdown(wait=True)
    assert threads_of("pool-cancel") == []


def test_no_submit_after_shutdown() -> None:
    pool = ThreadPool(1, "pool-closed")
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)


def _hang(pool: ThreadPool, go: threading.Event) -> Future[bool]:
    """A call that runs until `go`, once it has started."""
    started = threading.Event()

    def hang() -> bool:
        started.set()
        return go.wait()

    future = pool.submit(hang)
    assert started.wait(5)
    return future


def test_an_abandoned_thread_is_replaced_and_leaves_once_its_call_returns(
    go: threading.Event,
) -> None:
    pool = ThreadPool(2, "pool-abandon")
    hung = _hang(pool, go)
    (abandoned,) = threads_of("pool-abandon")
    pool.abandon(hung)
    assert pool.abandoned == 1
    # Two calls that return only once both run at once: the pool still has two threads.
    together = threading.Barrier(2, timeout=5)
    assert sorted(f.result(10) for f in [pool.submit(together.wait) for _ in range(2)]) == [0, 1]
    assert len(threads_of("pool-abandon")) == 3  # two serving, one abandoned
    go.set()
    assert hung.result(5) is True  # the caller gave up on it; it still ends
    abandoned.join(5)
    assert pool.abandoned == 0 and len(threads_of("pool-abandon")) == 2
    pool.shutdown(wait=True)
    assert threads_of("pool-abandon") == []


def test_abandoning_a_call_that_is_not_running_changes_nothing(go: threading.Event) -> None:
    pool = ThreadPool(1, "pool-noop")
    done = pool.submit(lambda: "done")
    assert done.result(5) == "done"
    hung, queued = _hang(pool, go), pool.submit(lambda: "queued")
    pool.abandon(done)
    pool.abandon(queued)  # not started: its caller cancels it, no thread is held
    assert pool.abandoned == 0 and len(threads_of("pool-noop")) == 1
    go.set()
    assert (hung.result(5), queued.result(5)) == (True, "queued")
    pool.shutdown(wait=True)


def test_past_the_cap_abandoned_threads_are_not_replaced(
    go: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    pool = ThreadPool(2, "pool-cap", spare=1)
    first, second = _hang(pool, go), _hang(pool, go)
    pool.abandon(first)  # replaced
    pool.abandon(second)  # past the cap: the pool shrinks to one thread
    assert pool.abandoned == 2 and len(threads_of("pool-cap")) == 3
    assert "not replaced" in caplog.text
    assert pool.submit(lambda: "still served").result(5) == "still served"
    go.set()
    assert [first.result(5), second.result(5)] == [True, True]
    pool.shutdown(wait=True)
