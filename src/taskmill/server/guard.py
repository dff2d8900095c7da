"""What every request passes before it reaches a route: the Host it names, API keys, the
per-key rate limit on submissions, and the body size limit. A plain ASGI middleware, so that
it covers every path, unknown ones and the OpenAPI document included, not just the routes.

Without keys, nothing tells the user's browser from another program: a page on any site
could post a form to the server (no CORS preflight for a form), or reach it through a
domain of its own that resolves to 127.0.0.1 (DNS rebinding). So without keys a change
must come as JSON (or with no body) from the server's own origin, or from no browser at
all (no Origin header), and the Host must be one the server was told it serves under."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskmill.errors import ConfigError
from taskmill.server.dashboard import is_dashboard
from taskmill.server.errors import JSON, error_response

#: Answer without a key: probes must work before anyone has one, and the dashboard's
#: static files hold no data (the page asks for a key and sends it on every API call).
OPEN_PATHS = frozenset({"/health", "/ready"})
#: Requests that submit jobs: these count against the rate limit.
SUBMISSIONS = frozenset({"/api/v1/jobs", "/api/v1/jobs/batch"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The names of a server on loopback, as a browser sends them in Host.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: Sec-Fetch-Site values of a request the server's own pages (or the user) made.
_OWN_FETCH = frozenset({"same-origin", "none"})
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"


def parse_keys(spec: str) -> dict[str, Role]:
    """TASKMILL_API_KEYS: comma-separated KEY:ROLE pairs, ROLE being read or admin."""
    keys: dict[str, Role] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, role = item.rpartition(":")
        if not key or role not in Role.__members__.values():
            raise ConfigError(
                "TASKMILL_API_KEYS takes KEY:ROLE pairs separated by commas, ROLE being read "
                "or admin (e.g. s3cret:admin,dashboard-key:read)"
            )
        keys[key] = Role(role)
    return keys


def parse_hosts(spec: str) -> frozenset[str]:
    """TASKMILL_ALLOWED_HOSTS: comma-separated names the server answers under besides the
    loopback ones, each `name` (any port) or `name:port`; `*` for any."""
    return frozenset(filter(None, (part.strip().lower() for part in spec.split(","))))


@dataclass
class RateLimit:
    """A token bucket per key: `rate` submissions a second, bursts up to `burst`."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str) -> float:
        """0 if the key may submit now, else the seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        return 0.0


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Mapping[str, Role],
        rate_limit: RateLimit | None,
        max_body: int,
        hosts: Collection[str] | None = None,
    ) -> None:
        """`hosts`: the Host names served besides the loopback ones (see parse_hosts);
        None serves any Host (an app embedded behind a server that checks it)."""
        self.app, self.keys, self.rate_limit, self.max_body = app, keys, rate_limit, max_body
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._foreign(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS or _page(scope):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        key = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if self.keys:
            if key is None or key not in self.keys:
                why = "missing API key" if key is None else "unknown API key"
                message = f"{why}: send it as the X-API-Key header or as a Bearer token"
                refusal = error_response(401, "unauthorized", message, headers=_CHALLENGE)
                await refusal(scope, receive, send)
                return
            if method not in SAFE_METHODS and self.keys[key] is not Role.ADMIN:
                message = "this API key is read-only; changes need an admin key"
                await error_response(403, "forbidden", message)(scope, receive, send)
                return
        if self.rate_limit is not None and method == "POST" and scope["path"] in SUBMISSIONS:
            wait = self.rate_limit.take(key or "")
            if wait > 0:
                seconds = math.ceil(wait)
                message = f"too many submissions for this key; retry in {seconds}s"
                headers = {"Retry-After": str(seconds)}
                refusal = error_response(429, "rate_limited", message, headers=headers)
                await refusal(scope, receive, send)
                return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        # Read the body here, so a chunked one past the limit is refused before any of it is
        # parsed; the route then reads it from memory.
        body, more = bytearray(), True
        while more:
            chunk = await receive()
            if chunk["type"] == "http.disconnect":
                return
            body += chunk.get("body", b"")
            more = chunk.get("more_body", False)
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _foreign(self, scope: Scope, headers: Mapping[str, str]) -> JSON | None:
        """The refusal of a request under a Host not served, or, without keys, of a change
        a browser was made to send from another site; None if it may pass."""
        host = headers.get("host", "").lower()
        if self.hosts is not None and not self._serves(host, scope):
            message = (
                f"this server does not answer under the Host {host!r}: add it to "
                "TASKMILL_ALLOWED_HOSTS (or --allowed-hosts) to serve it"
            )
            return error_response(400, "host_not_allowed", message, {"host": host})
        if self.keys or scope["method"] in SAFE_METHODS:
            return None
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        if (site is not None and site not in _OWN_FETCH) or (
            origin is not None and origin.lower() != f"{scope['scheme']}://{host}"
        ):
            message = (
                "without API keys, changes are taken only from this server's own pages or "
                "from programs that are not browsers (no Origin header)"
            )
            return error_response(403, "cross_origin", message, {"origin": origin or ""})
        media = headers.get("content-type")
        empty = headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
        if (media is None and empty) or (media is not None and _is_json(media)):
            return None
        message = "without API keys, a change must send its body as application/json"
        details = {"content_type": media or ""}
        return error_response(415, "unsupported_media_type", message, details)

    def _serves(self, host: str, scope: Scope) -> bool:
        assert self.hosts is not None
        if "*" in self.hosts or host in self.hosts:
            return True
        name, port = _split_host(host)
        if name in self.hosts:
            return True
        server = scope.get("server")
        own_port = None if server is None else server[1]
        return name in LOOPBACK_HOSTS and (port is None or port == own_port)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body over the limit of {self.max_body} bytes"
        details = {"limit": self.max_body}
        await error_response(413, "payload_too_large", message, details)(scope, receive, send)


def _page(scope: Scope) -> bool:
    """A read of the dashboard's static files."""
    return scope["method"] in SAFE_METHODS and is_dashboard(scope["path"])


def _split_host(host: str) -> tuple[str, int | None]:
    """`name:port` (IPv6 in brackets) as its name and port, None if no port is given."""
    name, colon, port = host.rpartition(":")
    if not colon or name.endswith(":") or (name.startswith("[") != name.endswith("]")):
        return host, None  # no port, or a bare IPv6 address
    return (name, int(port)) if port.isdigit() else (host, None)


def _is_json(media: str) -> bool:
    kind = media.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay
