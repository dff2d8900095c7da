"""Wake-ups for SQLite waiters: SQLite itself cannot notify another process of a commit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time

Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]

#: How soon a waiting worker learns of a commit by another process.
POLL_INTERVAL = 0.05


class Watcher:
    """Wakes the waiters on one database file in this process: at once when a backend of
    this process commits (`notify`), within POLL_INTERVAL when another process does.

    SQLite cannot notify across processes, so while anyone waits, one thread per file polls
    PRAGMA data_version, which changes when another connection commits. Polling here, not
    on each backend's thread, spares an event loop wake-up and thread hand-off per poll:
    that is most of an idle worker's CPU use.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.waiters: set[Waiter] = set()
        self.lock = threading.Condition()
        self.polling = False

    def add(self, waiter: Waiter) -> None:
        with self.lock:
            self.waiters.add(waiter)
            if not self.polling:
                self.polling = True
                threading.Thread(
                    target=self._poll, name="taskmill-sqlite-watch", daemon=True
                ).start()
            self.lock.notify()

    def remove(self, waiter: Waiter) -> None:
        with self.lock:
            self.waiters.discard(waiter)

    def notify(self) -> None:
        with self.lock:
            waiters = list(self.waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

    def _poll(self) -> None:
        version = None
        try:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                while True:
                    with self.lock:
                        if not self.waiters:
                            version = None
                            if not self.lock.wait_for(lambda: self.waiters, timeout=10.0):
                                self.polling = False
                                return
                    current = conn.execute("PRAGMA data_version").fetchone()[0]
                    if current != version:
                        # Also when polling (re)starts: a waiter's last look may predate it.
                        version = current
                        self.notify()
                    time.sleep(POLL_INTERVAL)
        except sqlite3.Error:
            with self.lock:
                self.polling = False
            self.notify()  # the waiters look again; their backends report the error


_watchers: dict[str, Watcher] = {}
_watchers_lock = threading.Lock()


def watcher(path: str) -> Watcher:
    """The one watcher of this database file in this process."""
    key = os.path.realpath(path)
    with _watchers_lock:
        return _watchers.setdefault(key, Watcher(key))
