"""A minimal blocking Redis client (RESP2 over a socket), standard library only.

The harness runs in the project venv and the task recorder runs inside every peer's worker:
neither may depend on a Redis client library, nor on a particular version of one.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

Reply = bytes | int | list["Reply"] | None


class RedisError(Exception):
    """An error reply from the server."""


def _encode(args: tuple[object, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Redis:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        db = parts.path.strip("/")
        if db and db != "0":
            self.execute("SELECT", db)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def execute(self, *args: object) -> Reply:
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple[object, ...]]) -> list[Reply]:
        """Send every command, then read every reply: one round trip."""
        self.sock.sendall(b"".join(_encode(args) for args in commands))
        replies = [self._read() for _ in commands]
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies  # type: ignore[return-value]  # errors raised above

    def _read(self) -> Reply | RedisError:
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            return self.file.read(size + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            items: list[Reply] = []
            for _ in range(count):
                item = self._read()
                if isinstance(item, RedisError):
                    raise item
                items.append(item)
            return items
        raise ConnectionError(f"unexpected reply {line!r}")
