"""ThreadPool.shutdown keeps Executor's contract: wait, cancel_futures, no submit after."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
