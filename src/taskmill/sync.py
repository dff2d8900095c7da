"""How the sync API reaches the backend, by one rule.

A call the sync API makes one at a time (enqueue, get, cancel) runs in the calling thread
when the backend offers a way to serve it there (backends.connect_blocking: one Redis
server, PostgreSQL): a backend whose coroutines for those calls never suspend, their I/O
blocking the thread, so that they run with no event loop and no hop to another thread.
Every other call, and every call on the other backends, runs on the portal: an event loop
in a daemon thread, where the app keeps its backend as for any other loop.
"""

from __future__ import annotations

import asyncio
import atexit

# Imported now, so that its exit hook, which stops every executor's threads, is registered
# before _at_exit's and so runs after it (concurrent.futures imports it on first use only).
import concurrent.futures.thread  # noqa: F401
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from taskmill.backends import Backend, drive

T = TypeVar("T")


class Portal:
    """An event loop in a daemon thread, so sync callers can use the async backends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="taskmill-portal", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("taskmill's sync API was called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncAdapter:
    """The sync API's way to the backend: see the module docstring.

    backend: the running loop's backend, opened on first use (App.backend); aclose closes
    it. in_thread: the backend's in-thread form, not opened, or None (connect_blocking)."""

    def __init__(
        self,
        backend: Callable[[], Coroutine[Any, Any, Backend]],
        aclose: Callable[[], Coroutine[Any, Any, None]],
        in_thread: Callable[[], Backend | None],
    ) -> None:
        self._backend = backend
        self._aclose = aclose
        self._make_in_thread = in_thread
        self._portal: Portal | None = None
        self._in_thread: Backend | None = None
        self._in_thread_known = False
        self._lock = threading.Lock()

    def call(self, op: Callable[[Backend], Coroutine[Any, Any, T]]) -> T:
        """One of the sync API's single calls: `op` on the backend, in this thread if the
        backend serves it here, else on the portal."""
        direct = self._in_thread if self._in_thread_known else self._open_in_thread()
        if direct is not None:
            return drive(op(direct))

        async def on_loop() -> T:
            return await op(await self._backend())

        return self.run(on_loop())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the portal."""
        with self._lock:
            if self._portal is None:
                self._portal = Portal()
                # Closed at exit while its loop still runs: left to the garbage collector,
                # a backend's connections would be closed with no loop to do it on.
                _at_exit(_close_at_exit, weakref.ref(self))
            portal = self._portal
        return portal.run(coro)

    def connect(self) -> None:
        """Open now both ways to the backend (the portal's serves enqueue_many and waits)."""
        self._open_in_thread()
        self.run(self._backend())

    def close(self) -> None:
        with self._lock:
            portal, self._portal = self._portal, None
            direct, self._in_thread, self._in_thread_known = self._in_thread, None, False
        if direct is not None:
            drive(direct.close())
        if portal is not None:
            asyncio.run_coroutine_threadsafe(self._aclose(), portal.loop).result()
            portal.stop()

    def _open_in_thread(self) -> Backend | None:
        with self._lock:
            if not self._in_thread_known:
                direct = self._make_in_thread()
                if direct is not None:
                    drive(direct.open())
                self._in_thread, self._in_thread_known = direct, True
            return self._in_thread


def _at_exit(fn: Callable[[weakref.ref[SyncAdapter]], None], arg: weakref.ref[SyncAdapter]) -> None:
    """Run fn(arg) at exit before concurrent.futures stops its executors' threads: a
    backend that closes through one (SQLite's connection thread) could not otherwise."""
    try:
        # Called in reverse order of registration, so before concurrent.futures' own (see
        # the imports); CPython-internal, hence not in typeshed.
        threading._register_atexit(fn, arg)  # type: ignore[attr-defined]
    except RuntimeError:  # the interpreter is already past that point: the latest there is
        atexit.register(fn, arg)


def _close_at_exit(adapter: weakref.ref[SyncAdapter]) -> None:
    alive = adapter()
    if alive is not None:
        alive.close()
