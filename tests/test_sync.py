"""The sync API's one rule (taskmill.sync): its single calls (enqueue, get, cancel) run in
the calling thread on a backend that serves them there (one Redis server, PostgreSQL), and
on the portal's event loop thread on the others; every other call runs on the portal."""

from __future__ import annotations

import threading

import pytest

from taskmill import App, JobState

#: The backends whose single sync calls need no portal.
IN_THREAD = {"redis", "postgres"}


def portals() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "taskmill-portal"}


def test_single_calls_take_the_backends_way(url: str, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["url"]
    app = App(url, strict=False)
    before = portals()
    try:
        handle = app.enqueue("t", [1])
        assert app.get(handle.id).state == JobState.PENDING
        assert handle.cancel().state == JobState.CANCELLED
        started = portals() - before
        assert len(started) == (0 if kind in IN_THREAD else 1)
        (other,) = app.enqueue_many([{"task": "t"}])  # the portal's, on every backend
        assert len(portals() - before) == 1
        assert app.get(other.id).state == JobState.PENDING
    finally:
        app.close()
    assert not portals() - before  # stopped by close


def test_connect_opens_both_ways_and_close_closes_them(url: str) -> None:
    app = App(url, strict=False)
    before = portals()
    app.connect()
    try:
        assert len(portals() - before) == 1
        assert app.get(app.enqueue("t").id).state == JobState.PENDING
    finally:
        app.close()
    assert not portals() - before
    # Closed, the app opens its ways again on its next call.
    try:
        assert app.enqueue("t").job.state == JobState.PENDING
    finally:
        app.close()
