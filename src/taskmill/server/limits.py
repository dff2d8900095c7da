"""What one client may hold of the server: the size and count of a request's headers, the
time to send a request head, and the number of open connections.

uvicorn's httptools protocol (the fast parser the server runs) has none of these: it
buffers a header of any size before its first callback, waits forever for a head that
comes a byte at a time, and accepts connections until the process runs out of files. So
the server runs a subclass of it that refuses, in the API's error shape and with
`connection: close`, a head over the limits (431), a head not sent within `head_timeout`
or a body not sent within `body_timeout` of its head (408), and a connection past
`max_connections` (503). Idle keep-alive connections are closed by uvicorn after
`keep_alive` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from taskmill.errors import ConfigError

log = logging.getLogger("taskmill.server")

#: Connections kept free of the open-file limit for the backend, logs and files.
_SPARE_FILES = 64


def default_max_connections() -> int:
    """1000, or fewer if the open-file limit would run out first."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(min(1000, soft - _SPARE_FILES), 1)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    #: Largest request head (request line and headers), in bytes.
    max_header_bytes: int = 64 * 1024
    #: Most header fields in one request.
    max_headers: int = 100
    #: Seconds a client has to send a whole request head, from its connection or first byte.
    head_timeout: float = 10.0
    #: Seconds a client has to send a request's body once its head is in: at least 140 KB/s
    #: for a body of the default --max-body.
    body_timeout: float = 60.0
    #: Seconds an idle keep-alive connection stays open.
    keep_alive: int = 5
    #: Most connections open at once; more are answered 503 and closed.
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if min(self.max_header_bytes, self.max_headers, self.max_connections) < 1:
            raise ConfigError("max_header_bytes, max_headers and max_connections must be >= 1")
        if min(self.head_timeout, self.body_timeout) <= 0 or self.keep_alive < 1:
            raise ConfigError("head_timeout and body_timeout must be > 0, keep_alive >= 1")


def protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The HTTP protocol class for uvicorn's `http=`, bound to `limits`."""
    return type("LimitedHttpProtocol", (_Limited,), {"limits": limits})


class _Limited(HttpToolsProtocol):
    limits: ClassVar[HttpLimits]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._start_head()
        if len(self.connections) > self.limits.max_connections:
            details = {"limit": self.limits.max_connections}
            self._refuse(503, "unavailable", "too many connections; retry shortly", details)
            return
        self._arm(self.limits.head_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still incomplete past the limit: refused before the parser buffers more of
        # it, so a client costs at most the limit and one read.
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._too_large()

    # Parser callbacks: the head's size and count as the parser reports them, checked once
    # it is complete (a head and its body may come in one read).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.limits.head_timeout, "head")

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        self._header_count += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        if (
            self._head_size > self.limits.max_header_bytes
            or self._header_count > self.limits.max_headers
        ):
            self._too_large()
            return
        # Disarmed at the message's end: at once for a request without a body.
        self._arm(self.limits.body_timeout, "body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._start_head()
        super().on_message_complete()

    def _start_head(self) -> None:
        self._in_head, self._head_bytes, self._head_size, self._header_count = True, 0, 0, 0

    def _arm(self, seconds: float, part: str) -> None:
        """Time the request's `part` (head or body); a head's timer runs from its first
        byte, or from the connection, whichever comes first."""
        # The parser may begin a pipelined request after a refusal, in the same read.
        if self._timer is None and not self._refused:
            self._timer = self.loop.call_later(seconds, self._timed_out, seconds, part)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, seconds: float, part: str) -> None:
        self._timer = None
        if self.cycle is not None and self.cycle.response_started:
            # Answered already (a refusal that did not wait for the body): just close.
            self._refused = True
            self.transport.close()
            return
        message = f"the request {part} was not received within {seconds:g}s"
        self._refuse(408, "request_timeout", message, {"timeout": seconds})

    def _too_large(self) -> None:
        limits = self.limits
        message = (
            f"request head over the limit of {limits.max_header_bytes} bytes "
            f"or {limits.max_headers} header fields"
        )
        details = {"max_header_bytes": limits.max_header_bytes, "max_headers": limits.max_headers}
        self._refuse(431, "request_header_fields_too_large", message, details)

    def _refuse(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        """Answer `status` in the API's error shape and close the connection."""
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        log.debug("refused a connection from %s: %s", self.client, message)
        body = orjson.dumps({"error": {"code": code, "message": message, "details": details}})
        head = (
            b"content-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        self.transport.write(STATUS_LINE[status] + head + body)
        self.transport.close()
