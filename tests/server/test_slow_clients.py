"""Clients that hold the server without finishing a request: slowloris connections, a
header too large, more connections than the server takes. Real processes over real
sockets, on 127.0.0.1 only, each bounded in count and time."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.server.conftest import APP, Process, wait_for

pytestmark = pytest.mark.slow

SLOW = 50
HEAD_TIMEOUT = 2
MAX_CONNECTIONS = 40


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, Process]]:
    """A server without keys, with 2 s timeouts (head, body, 1 s keep-alive) and room for
    40 connections; its base URL, port and process."""
    env = {**os.environ, "TASKMILL_URL": f"sqlite:///{tmp_path / 'tm.db'}"}
    env.pop("TASKMILL_API_KEYS", None)
    port = free_port()
    options = [
        *("--head-timeout", str(HEAD_TIMEOUT), "--body-timeout", str(HEAD_TIMEOUT)),
        *("--keep-alive", "1", "--max-connections", str(MAX_CONNECTIONS)),
    ]
    proc = Process([*APP, "server", "--port", str(port), *options], tmp_path, env, "server")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", proc)
        yield base, port, proc
    finally:
        assert proc.stop() == 0, proc.log.read_text()
    assert "Traceback" not in proc.log.read_text()


def closed(sock: socket.socket) -> tuple[bool, bytes]:
    """Whether the server closed `sock`, and what it said first."""
    try:
        said = sock.recv(65536)
    except BlockingIOError:
        return False, b""
    except ConnectionError:
        return True, b""
    return not said or said.startswith(b"HTTP/1.1 "), said


def test_slowloris_connections_are_closed_and_health_answers(
    server: tuple[str, int, Process],
) -> None:
    base, port, _ = server
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sock.setblocking(False)
            slow.append(sock)
        # A header byte a second from every connection, for at most 15 s: the server must
        # close every one (the 10 past its room at once, the others at the head timeout).
        said: dict[int, bytes] = {}
        deadline = time.monotonic() + 15
        while len(said) < SLOW and time.monotonic() < deadline:
            for i, sock in enumerate(slow):
                if i in said:
                    continue
                shut, first = closed(sock)
                if shut:
                    said[i] = first
                    continue
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    sock.send(b"X")
            time.sleep(1)
        assert len(said) == SLOW, f"{SLOW - len(said)} slow connections still open"
        refused = [first for first in said.values() if first.startswith(b"HTTP/1.1 503")]
        timed_out = [first for first in said.values() if first.startswith(b"HTTP/1.1 408")]
        assert len(refused) >= SLOW - MAX_CONNECTIONS, said
        assert timed_out and b'"code":"request_timeout"' in timed_out[0]
        # The slow ones cost the server nothing more: it answers at once.
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
    finally:
        for sock in slow:
            sock.close()


def rss(proc: Process) -> int:
    """The server's resident memory, in bytes."""
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_an_oversized_header_is_refused_before_it_is_read(
    server: tuple[str, int, Process],
) -> None:
    base, port, proc = server
    before = rss(proc)
    header = 16 * 1024 * 1024
    chunk = b"a" * 65536
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            while sent < header:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except ConnectionError:
            pass  # refused mid-way, as it should be
        try:
            answer = sock.recv(65536)
        except ConnectionError:
            answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    if answer:
        assert b'"code":"request_header_fields_too_large"' in answer
    # The server held no more than a small part of the header, not the 16 MB sent.
    assert rss(proc) - before < header // 4
    # Many header fields, each small, are refused too.
    many = "".join(f"X-{i}: {i}\r\n" for i in range(150))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200


def answer_then_close(sock: socket.socket) -> bytes:
    """What the server sends on `sock` until it closes it (at most 10 s)."""
    sock.settimeout(10)
    said = b""
    while chunk := sock.recv(65536):
        said += chunk
    return said


def test_a_slow_body_and_an_idle_connection_are_closed(
    server: tuple[str, int, Process],
) -> None:
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        said = answer_then_close(sock)
    assert said.startswith(b"HTTP/1.1 408") and b"request body" in said, said
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        said = answer_then_close(sock)  # the keep-alive connection, idle after the answer
    assert said.startswith(b"HTTP/1.1 200") and said.endswith(b'{"status":"ok"}'), said
