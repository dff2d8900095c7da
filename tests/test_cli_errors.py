"""The `taskmill` command's exit codes and one-line errors, as the README documents them:
2 for bad usage or input, 1 for the other errors, each one line on stderr (issue 19)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import (
    TASKS,
    _restore_logging,  # noqa: F401  (autouse: puts back the logging the worker command sets)
    app_module,
    ok,
    run,
)


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with app_module(TASKS, tmp_path, monkeypatch) as spec:
        yield spec


def one_error_line(stderr: str) -> str:
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("Error: "), stderr
    return stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--app", "{tasks}", "enqueue", "nope"], "unknown task 'nope'"),
        (["--app", "{tasks}", "enqueue", "add", "--payload", '{"a": 1}'], "do not fit task"),
        (["enqueue", "t", "--args", "[" + "[" * 70 + "]" * 70 + "]"], "args: nested deeper"),
        (["schedules", "add", "s", "t", "* * *"], "invalid cron expression"),
    ],
)
def test_bad_input_exits_2(url: str, tasks: str, args: list[str], words: str) -> None:
    result = run("--url", url, *(arg.replace("{tasks}", tasks) for arg in args))
    assert result.exit_code == 2, result.output
    assert words in one_error_line(result.stderr)


def test_a_bad_url_exits_2() -> None:
    result = run("--url", "nosuch://localhost", "jobs", "list")
    assert result.exit_code == 2, result.output
    assert "unsupported backend URL" in one_error_line(result.stderr)


def test_other_errors_exit_1(url: str) -> None:
    result = run("--url", url, "jobs", "show", "no-such-job")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "Error: no job 'no-such-job'\n"
    job_id = ok("--url", url, "enqueue", "t")["id"]
    result = run("--url", url, "jobs", "retry", job_id)
    assert result.exit_code == 1
    assert "only dead jobs are retried" in one_error_line(result.stderr)


def test_cancel_of_a_finished_job_is_an_error(url: str, tasks: str) -> None:
    job_id = ok("--url", url, "enqueue", "refuse", "--payload", '{"reason": "no"}')["id"]
    assert run("--url", url, "--app", tasks, "worker", "--burst").exit_code == 0
    for json in ([], ["--json"]):
        result = run("--url", url, "jobs", "cancel", job_id, *json)
        assert result.exit_code == 1, result.output
        assert one_error_line(result.stderr) == f"Error: job {job_id} already finished: dead\n"
        assert result.stdout == ""
    assert ok("--url", url, "jobs", "show", job_id)["state"] == "dead"


def test_server_on_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--url", f"sqlite:///{tmp_path / 'x.db'}", "server", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert one_error_line(result.stderr) == f"Error: port {port} is in use\n"


def test_server_refuses_a_memory_backend() -> None:
    """Its jobs would live in the server's process, where no worker could ever run them."""
    result = run("--url", "memory://x", "server", "--port", "0")
    assert result.exit_code == 2, result.output
    assert "the server cannot serve memory://x" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "command",
    [
        ["schedules", "list"],
        ["schedules", "add", "s", "t", "@daily"],
        ["worker", "--app", "taskmill.examples:app", "--burst"],
        ["scheduler"],
        ["server", "--port", "0"],
        ["migrate"],
        ["demo"],
    ],
)
def test_api_is_refused_by_the_commands_that_cannot_use_it(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ignoring it, they worked on a local taskmill.db while the user meant the server's."""
    monkeypatch.chdir(tmp_path)
    for args in (
        ["--api", "http://127.0.0.1:9", *command],
        [*command, "--api", "http://127.0.0.1:9"],
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "does not go through the API" in one_error_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_postgresql_is_one_line_at_once() -> None:
    """Not the pool's retries until its timeout, a warning at each: the driver's reason."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"postgresql://postgres@127.0.0.1:{sock.getsockname()[1]}/x"
    taskmill = str(Path(sys.executable).parent / "taskmill")
    start = time.monotonic()
    done = subprocess.run([taskmill, "--url", url, "jobs", "list"], capture_output=True, timeout=30)
    assert time.monotonic() - start < 3  # the bound for an unreachable server
    assert done.returncode == 1
    assert "Connection refused" in one_error_line(done.stderr.decode())
