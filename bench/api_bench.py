"""Submission throughput and latency of `POST /api/v1/jobs`, over loopback.

Starts `taskmill server` on a fresh SQLite database in a temporary directory (rate limit
off, no access log), sends a bounded number of submissions from a fixed number of
concurrent connections, and prints jobs/s and latency percentiles. No worker runs: this is
the submission path alone (HTTP, validation, one backend write per job).

    .venv/bin/python bench/api_bench.py                     # 5,000 jobs, 16 connections
    .venv/bin/python bench/api_bench.py --jobs 20000 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

TASKMILL = str(Path(sys.executable).with_name("taskmill"))
BODY = {"type": "echo", "payload": {"message": "hello"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(port: int, jobs: int, connections: int) -> tuple[float, list[float]]:
    """Send `jobs` submissions over `connections` keep-alive connections.

    A minimal HTTP/1.1 client: each request goes out in one write. httpx writes the headers
    and the body separately, and with Nagle's algorithm on one side and delayed ACKs on the
    other that costs ~40 ms a request, which measures TCP, not the server."""
    body = orjson.dumps(BODY)
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    remaining = jobs

    async def sender() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                answer = await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                if not head.startswith(b"HTTP/1.1 201"):
                    raise RuntimeError(f"{head!r} {answer!r}")
        finally:
            writer.close()
            await writer.wait_closed()

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return time.perf_counter() - began, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=5000, help="submissions to send (5,000)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent senders (16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        env = {**os.environ, "TASKMILL_URL": f"sqlite:///{scratch}/bench.db"}
        env.pop("TASKMILL_API_KEYS", None)
        command = [TASKMILL, "--app", "taskmill.examples:app", "server", "--port", str(port)]
        command += ["--rate-limit", "0", "--no-access-log", "--log-level", "WARNING"]
        server = subprocess.Popen(command, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.05)
            asyncio.run(load(port, min(500, args.jobs), args.connections))  # warm-up
            elapsed, latencies = asyncio.run(load(port, args.jobs, args.connections))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    ms = {p: percentile(latencies, p) * 1000 for p in (0.5, 0.9, 0.99)}
    print(
        f"POST /api/v1/jobs: {args.jobs} jobs, {args.connections} connections, SQLite: "
        f"{args.jobs / elapsed:,.0f} jobs/s; latency p50 {ms[0.5]:.1f} ms, "
        f"p90 {ms[0.9]:.1f} ms, p99 {ms[0.99]:.1f} ms"
    )


if __name__ == "__main__":
    main()
