"""`taskmill server`: the API under uvicorn, with the checks and words of its start."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import signal
import socket

import uvicorn

from taskmill.app import App
from taskmill.errors import ConfigError
from taskmill.metrics import MAX_QUEUES
from taskmill.server import create_app
from taskmill.server.guard import RateLimit, parse_hosts, parse_keys
from taskmill.server.limits import HttpLimits, default_max_connections, protocol

log = logging.getLogger("taskmill.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigError if host:port is taken: uvicorn would log the OSError and exit 3.
    Another process may still take the port before uvicorn binds it; uvicorn's words then."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return  # a host that does not resolve: uvicorn says so
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As asyncio's create_server binds, so that a port in TIME_WAIT counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"port {port} is in use") from None
                # Any other refusal (an address this host lacks...) is uvicorn's to report.


def serve(
    app: App,
    *,
    host: str,
    port: int,
    rate_limit: float,
    max_body: int,
    access_log: bool,
    allowed_hosts: str = "",
    limits: HttpLimits | None = None,
    metrics_max_queues: int = MAX_QUEUES,
) -> None:
    """Serve until SIGINT or SIGTERM. Without TASKMILL_API_KEYS, loopback only, and only
    under a loopback Host or one of `allowed_hosts` (comma-separated); with keys, any Host
    unless `allowed_hosts` names some."""
    keys = parse_keys(os.environ.get("TASKMILL_API_KEYS", ""))
    hosts = parse_hosts(allowed_hosts)
    limits = limits or HttpLimits(max_connections=default_max_connections())
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"no API keys are configured, so the server binds to loopback only, not {host}: "
            "set TASKMILL_API_KEYS (KEY:admin or KEY:read, comma-separated) to serve others"
        )
    check_port_free(host, port)
    limit = RateLimit(rate_limit, burst=max(rate_limit, 1.0)) if rate_limit > 0 else None
    api = create_app(
        app,
        api_keys=keys,
        rate_limit=limit,
        max_body=max_body,
        allowed_hosts=hosts if hosts or not keys else None,
        metrics_max_queues=metrics_max_queues,
    )
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if keys:
        roles = {role: sum(r == role for r in keys.values()) for role in ("admin", "read")}
        log.info("API keys: %d admin, %d read-only", roles["admin"], roles["read"])
    else:
        log.warning("no API keys (TASKMILL_API_KEYS): serving on loopback only, without auth")
    log.info(
        "taskmill API on %s/api/v1 over %s; docs %s/docs, metrics %s/metrics",
        base, app.settings.url, base, base,
    )  # fmt: skip
    # uvicorn handles SIGINT and SIGTERM while it serves, then raises the signal again for
    # the handlers it found: these, which let the process end with status 0 (not killed by
    # SIGTERM, nor a KeyboardInterrupt) once it has shut down cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    # log_config=None: uvicorn's loggers go through taskmill's handler (JSON or colour).
    uvicorn.run(
        api,
        host=host,
        port=port,
        log_config=None,
        access_log=access_log,
        server_header=False,
        http=protocol(limits),
        timeout_keep_alive=limits.keep_alive,
    )
