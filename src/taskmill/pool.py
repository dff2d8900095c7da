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


class ThreadPool(Executor):
    """A thread pool whose threads never hold the process open.

    A sync handler cannot be stopped from outside; one still running when its worker exits
    (past its timeout, or past the grace period with its job handed back) must not keep
    the process alive, as ThreadPoolExecutor's joined threads would.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._shut_down = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._shut_down:  # its threads are leaving: the call would never run
            raise RuntimeError(f"{self._name}: cannot submit after shutdown")
        future: Future[T] = Future()
        self._work.put((future, functools.partial(fn, *args, **kwargs)))
        if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # the awaiting side decides what it means
                    future.set_exception(exc)
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The threads exit once the calls submitted are done: with cancel_futures, those
        not started yet are cancelled instead; with wait, this returns after the threads
        have exited (without it, a call that never returns keeps only its daemon thread)."""
        self._shut_down = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._work.get_nowait()
                    if item is not None:
                        item[0].cancel()
        for _ in self._threads:
            self._work.put(None)  # after every call still queued: each thread takes one
        if wait:
            for thread in self._threads:
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

    async def run(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run fn in a child; cancelling this coroutine (timeout, cancel) kills the child."""
        idle = await self._start()
        child = await idle.get()
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
