"""Where sync handlers run: threads, or child processes for handlers that must be killable.

ProcessPool: each child runs one job at a time. A timeout or cancellation kills that child
and starts a fresh one; the other children keep running. Handlers are found in the child
by module and qualified name, so they must be defined at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_context = multiprocessing.get_context("forkserver")
log = logging.getLogger("taskmill.worker")


class ThreadPool(Executor):
    """A thread pool whose threads never hold the process open, and which replaces a thread
    its caller abandons.

    A sync handler cannot be stopped from outside; one still running when its worker exits
    (past its timeout, or past the grace period with its job handed back) must not keep
    the process alive, as ThreadPoolExecutor's joined threads would.

    A call its caller gave up on (abandon(): past its timeout, or cancelled) keeps its
    thread until it returns, and Python cannot kill a thread. That thread leaves the pool
    and another takes its place, so the pool keeps `size` threads for the calls still
    awaited; the abandoned one exits once its call returns. At most `spare` abandoned
    threads are replaced at once: past that, each hung call shrinks the pool, which bounds
    the threads (and their memory) that hung calls can cost.
    """

    def __init__(self, size: int, name: str, *, spare: int | None = None) -> None:
        self._size = size
        self._name = name
        self._spare = size if spare is None else spare
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []  # those serving the queue
        self._calls: dict[Future[Any], threading.Thread] = {}  # running calls
        self._abandoned: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = threading.Semaphore(0)
        self._shut_down = False

    @property
    def abandoned(self) -> int:
        """Threads given up on whose call has not returned yet."""
        return len(self._abandoned)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._shut_down:  # its threads are leaving: the call would never run
            raise RuntimeError(f"{self._name}: cannot submit after shutdown")
        future: Future[T] = Future()
        self._work.put((future, functools.partial(fn, *args, **kwargs)))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self._size:
                    self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}-{self._started}", daemon=True
        )
        self._started += 1
        thread.start()
        self._threads.append(thread)

    def abandon(self, future: Future[Any]) -> None:
        """The caller no longer awaits this call: if it is still running, its thread leaves
        the pool and, within `spare`, a new thread takes its place."""
        with self._lock:
            thread = self._calls.get(future)
            if thread is None or thread in self._abandoned:
                return  # not started (cancelling it is enough), or already returned
            self._abandoned.add(thread)
            self._threads.remove(thread)
            replace = len(self._abandoned) <= self._spare and not self._shut_down
            if replace:
                self._start_thread()
        if replace:
            log.warning(
                "%s: a call ran past its caller's wait; its thread %s is abandoned until it "
                "returns and replaced (%d abandoned)",
                self._name, thread.name, len(self._abandoned),
            )  # fmt: skip
        else:
            log.error(
                "%s: %d abandoned threads, the cap: %s is not replaced, so the pool shrinks "
                "to %d until calls return",
                self._name, len(self._abandoned), thread.name, len(self._threads),
            )  # fmt: skip

    def _serve(self) -> None:
        me = threading.current_thread()
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._calls[future] = me
                try:
                    future.set_result(call())
                except BaseException as exc:  # the awaiting side decides what it means
                    future.set_exception(exc)
                with self._lock:
                    del self._calls[future]
                    if me in self._abandoned:  # replaced already: this thread leaves
                        self._abandoned.remove(me)
                        return
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The threads exit once the calls submitted are done: with cancel_futures, those
        not started yet are cancelled instead; with wait, this returns after the threads
        have exited, abandoned ones aside (without it, a call that never returns keeps
        only its daemon thread)."""
        self._shut_down = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._work.get_nowait()
                    if item is not None:
                        item[0].cancel()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)  # after every call still queued: each thread takes one
        if wait:
            for thread in threads:
                thread.join()


class ChildError(Exception):
    """The handler raised in the child; carries the child's formatted traceback."""

    def __init__(self, message: str, tb: str) -> None:
        super().__init__(message)
        self.child_traceback = tb


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn: Callable[..., Any] = getattr(target, "fn", target)  # a registered Task wraps it
    return fn


def _child_main(conn: Connection) -> None:
    while True:
        try:
            module, qualname, args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _resolve(module, qualname)(*args, **kwargs)))
        except BaseException as exc:  # report everything: the parent decides what it means
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class _Child:
    def __init__(self) -> None:
        self.conn, child_conn = _context.Pipe()
        self.process: BaseProcess = _context.Process(
            target=_child_main, args=(child_conn,), daemon=True
        )
        self.process.start()
        child_conn.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class ProcessPool:
    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: asyncio.Queue[_Child] | None = None
        self._children: list[_Child] = []

    async def _start(self) -> asyncio.Queue[_Child]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            loop = asyncio.get_running_loop()
            for _ in range(self._size):
                child = await loop.run_in_executor(None, _Child)
                self._children.append(child)
                self._idle.put_nowait(child)
        return self._idle

    async def run(
        self,
        fn: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        started: Callable[[], None] | None = None,
    ) -> Any:
        """Run fn in a child; cancelling this coroutine (timeout, cancel) kills the child.
        `started` is called once a child takes the call: a timeout counts from then."""
        idle = await self._start()
        child = await idle.get()
        if started is not None:
            started()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        fd = child.conn.fileno()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, readable)
        try:
            child.conn.send((fn.__module__, fn.__qualname__, args, kwargs))
            await done
            reply = child.conn.recv()
        except BaseException as exc:
            loop.remove_reader(fd)
            await loop.run_in_executor(None, child.kill)
            code = child.process.exitcode
            self._children.remove(child)
            child = await loop.run_in_executor(None, _Child)
            self._children.append(child)
            if isinstance(exc, EOFError | OSError):
                raise ChildError(f"the handler's process died (exit code {code})", "") from None
            raise
        finally:
            idle.put_nowait(child)
        loop.remove_reader(fd)
        if reply[0] == "ok":
            return reply[1]
        raise ChildError(reply[1], reply[2])

    def close(self) -> None:
        for child in self._children:
            with contextlib.suppress(Exception):
                child.kill()
        self._children.clear()
        self._idle = None
