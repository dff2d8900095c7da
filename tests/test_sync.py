"""The sync API's one rule (taskmill.sync): its single calls (enqueue, get, cancel) run in
the calling thread on a backend that serves them there (one Redis server, PostgreSQL), and
on the portal's event loop thread on the others; every other call runs on the portal."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

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


def test_a_producer_that_exits_without_close_stores_its_job_quietly(tmp_path: Path) -> None:
    # On SQLite the adapter's exit hook closes the backend through an executor's thread,
    # which the interpreter stops at exit: the hook must run first.
    script = tmp_path / "producer.py"
    script.write_text(
        "from taskmill import App\n"
        "app = App('sqlite:///x.db')\n"
        "@app.task\n"
        "def add(a, b):\n"
        "    return a + b\n"
        "print(add.enqueue(1, 2).id)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    app = App(f"sqlite:///{tmp_path / 'x.db'}", strict=False)
    try:
        assert app.get(done.stdout.strip()).state == JobState.PENDING
    finally:
        app.close()
