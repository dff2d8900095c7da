"""Fixtures shared by every test: one parameter per backend, a fake clock, fast settings."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest

from taskmill import App, Settings
from taskmill.backends import Backend, connect

#: Backends every contract test runs against. Service-backed ones join this list with a
#: fixture that skips when the service is missing, or fails under TASKMILL_REQUIRE_SERVICES=1.
BACKENDS = ["memory", "sqlite", "redis", "redis-cluster", "postgres"]


def fast_settings(url: str) -> Settings:
    """Short timings so that leases expire and heartbeats happen within a test."""
    return Settings(
        url=url, lease=1.0, heartbeat=0.05, grace=2.0, maintain_interval=0.1, poll_interval=0.2
    )


def require_services() -> bool:
    return os.environ.get("TASKMILL_REQUIRE_SERVICES") == "1"


class FakeClock:
    """A clock the test moves by hand; starts at the real time so stored times look sane."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0
) -> None:
    """Return as soon as `condition` (sync or async) holds; fail after `timeout` seconds.

    Tests wait on what they need rather than for a fixed time: as fast as the machine
    allows when it is idle, and still passing when it is busy.
    """
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"waited {timeout} s in vain until {what}"
        await asyncio.sleep(0.05)


#: Backends that processes share (not memory://): multi-process tests run against each, via
#: the shared_url fixture.
SHARED_BACKENDS = ["sqlite", "redis", "postgres"]


@pytest.fixture(params=SHARED_BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return fresh_redis(request.getfixturevalue("redis_server"))
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The `taskmill` subprocesses a test starts (start_taskmill): killed at its end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start_taskmill(
    started: list[subprocess.Popen[bytes]], env: dict[str, str], command: str, *extra: str
) -> subprocess.Popen[bytes]:
    """`taskmill COMMAND --app tests.sample_tasks:app ...` as a subprocess, as a user runs it."""
    taskmill = str(Path(sys.executable).parent / "taskmill")
    args = [taskmill, command, "--app", "tests.sample_tasks:app", *extra]
    proc = subprocess.Popen(args, env=env, cwd=Path(__file__).parent.parent)
    started.append(proc)
    return proc


def effects(env: dict[str, str]) -> Counter[int]:
    """The numbers the sample tasks appended to the file TASKMILL_TEST_LOG, counted."""
    path = Path(env["TASKMILL_TEST_LOG"])
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if request.param == "redis":
        return fresh_redis(request.getfixturevalue("redis_server"))
    if request.param == "redis-cluster":
        return fresh_redis(request.getfixturevalue("redis_cluster"))
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'taskmill.db'}"


# -- private Redis servers ---------------------------------------------------------------
# Tests start their own servers on free ports and flush them between tests: a Redis that
# is already running (say on 6379) may hold someone's data.


class RedisServer:
    """A redis-server process of the tests' own, on loopback."""

    def __init__(self, directory: Path, port: int, *options: str) -> None:
        self.directory, self.port, self.options = directory, port, options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        command += [str(self.directory), "--save", "", *self.options]
        log = self.directory / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while self.cli("PING") != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start; see {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis syncs its append-only file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def cli(self, *command: str) -> str:
        cli = shutil.which("redis-cli") or "redis-cli"
        result = subprocess.run(
            [cli, "-p", str(self.port), *command], capture_output=True, check=False, timeout=30
        )
        return result.stdout.decode().strip()


def missing(reason: str) -> NoReturn:
    if require_services():
        pytest.fail(f"{reason}, and TASKMILL_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 55535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def fresh_redis(url: str) -> str:
    """The URL of a private server (or cluster), emptied for this test."""
    ports = [int(node.rpartition(":")[2]) for node in url.split("://")[1].split(",")]
    for port in ports:
        # Over a socket: a redis-cli process per node and test cost seconds over the suite.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            reply = sock.recv(64)
        assert reply == b"+OK\r\n", f"FLUSHALL on port {port}: {reply!r}"
    return url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port(), "--appendonly", "no")
    server.start()
    yield f"redis://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters, no replicas, as `redis-cli --cluster create` makes them."""
    root = tmp_path_factory.mktemp("redis-cluster")
    servers = []
    try:
        for i in range(3):
            port = free_port()
            options: tuple[str, ...] = ("--appendonly", "no", "--cluster-enabled", "yes")
            options += ("--cluster-config-file", f"nodes-{port}.conf")
            servers.append(RedisServer(root / str(i), port, *options))
            servers[-1].start()
        nodes = [f"127.0.0.1:{s.port}" for s in servers]
        servers[0].cli("--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in s.cli("CLUSTER", "INFO") for s in servers):
            assert time.monotonic() < deadline, "the Redis Cluster did not form"
            time.sleep(0.1)
        yield "redis+cluster://" + ",".join(nodes)
    finally:
        for server in servers:
            server.stop()


# -- PostgreSQL ---------------------------------------------------------------------------
# The shared server (trust auth); each test gets a schema of its own, which the backend
# migrates when it opens: 30 ms, against 170 ms to clone and drop a migrated template
# database. TASKMILL_TEST_POSTGRES names another database.

POSTGRES = os.environ.get("TASKMILL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def in_schema(database: str, schema: str) -> str:
    """The URL of `database` with `schema` as the tables' (libpq's options parameter)."""
    return f"{database}{'&' if '?' in database else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except psycopg.Error as exc:
        missing(f"PostgreSQL is not reachable at {POSTGRES}: {str(exc).strip()}")
    return POSTGRES


class PostgresCluster:
    """A PostgreSQL cluster of the tests' own (initdb, pg_ctl), on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not binaries:
            missing("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
        self.bin = binaries[-1].parent
        self.directory, self.port = directory, free_port()
        # The server refuses to run as root: it runs as postgres then, in a folder of its own.
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.run_as, str(self.bin / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60, cwd="/")

    def init(self) -> None:
        self.directory.mkdir(parents=True)
        if self.run_as:
            shutil.chown(self.directory, "postgres")
            self.directory.parent.chmod(0o755)
        self._run("initdb", "-D", str(self.directory / "data"), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        log = str(self.directory / "server.log")
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.directory / "data"), "-o", options, "-l", log
        )

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, committed work is on disk."""
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.directory / "data"))


@contextlib.contextmanager
def fresh_schema(database: str) -> Iterator[str]:
    """The URL of a fresh, empty schema of `database`, dropped afterwards."""
    schema = f"taskmill_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        yield in_schema(database, schema)
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty schema of the server's database, dropped after the test."""
    with fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(url: str, clock: FakeClock) -> AsyncIterator[Backend]:
    instance = connect(url, clock=clock)
    await instance.open()
    yield instance
    await instance.close()


@pytest.fixture
async def app(url: str) -> AsyncIterator[App]:
    """An app on real time with fast worker timings (for tests that run a Worker)."""
    instance = App(settings=fast_settings(url))
    yield instance
    await instance.aclose()
    instance.close()
