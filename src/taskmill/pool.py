"""A pool of child processes for handlers that must be killable (CPU-bound, timeouts that bite).

Each child runs one job at a time. A timeout or cancellation kills that child and starts a
fresh one; the other children keep running. Handlers are found in the child by module and
qualified name, so they must be defined at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

_context = multiprocessing.get_context("forkserver")


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
