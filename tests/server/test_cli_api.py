"""The CLI with `--api`: every state command through a real `taskmill server`, printing what
the same command prints straight from the backend."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from taskmill.cli import main
from tests.conftest import free_port
from tests.server.conftest import ADMIN, APP, READER, Process, wait_for


class Both:
    """Runs a command through the API and straight to the backend, on the same data."""

    def __init__(self, api: str, url: str) -> None:
        self.api, self.url = api, url

    def via_api(self, *args: str, key: str = ADMIN, input: str | None = None) -> Result:
        command = ["--api", self.api, "--api-key", key, *args]
        return CliRunner().invoke(main, command, input=input, catch_exceptions=False)

    def direct(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--url", self.url, *args], catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.via_api(*args, "--json")
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)

    def same(self, *args: str) -> Any:
        """Run a read-only command both ways: the same table, and the same JSON (times
        within half a second: the API carries them as RFC 3339, to the microsecond).
        Returns the JSON."""
        plain = [self.via_api(*args), self.direct(*args)]
        assert [r.exit_code for r in plain] == [0, 0], [r.output for r in plain]
        assert _timeless(plain[0].stdout) == _timeless(plain[1].stdout)
        api, direct = (orjson.loads(r.stdout) for r in (self.via_api(*args, "--json"),
                                                        self.direct(*args, "--json")))  # fmt: skip
        assert _close(api, direct), (api, direct)
        return api


def _timeless(text: str) -> str:
    """Table text without its relative times ("3s ago"), which move between two runs."""
    return re.sub(r"(in )?\d+[smhd]( ago)?\b", "T", text)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) < 0.5
    return bool(a == b)


@pytest.fixture
def both(tmp_path: Path) -> Iterator[Both]:
    """A server and a worker on one SQLite database, with an admin and a read-only key."""
    url = f"sqlite:///{tmp_path / 'taskmill.db'}"
    env = {**os.environ, "TASKMILL_URL": url, "TASKMILL_API_KEYS": f"{ADMIN}:admin,{READER}:read"}
    port = free_port()
    server = Process([*APP, "server", "--port", str(port)], tmp_path, env, "server")
    worker = Process([*APP, "worker", "-q", "default,mail"], tmp_path, env, "worker")
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        yield Both(f"http://127.0.0.1:{port}", url)
    finally:
        assert worker.stop() == 0, worker.log.read_text()
        assert server.stop() == 0, server.log.read_text()
    assert "Traceback" not in server.log.read_text()


@pytest.mark.slow
def test_every_state_command_through_the_api(both: Both) -> None:
    # enqueue: the id, or with --wait the result, which the worker makes.
    waited = both.via_api("enqueue", "echo", "--payload", '{"message": "hi"}', "--wait", "20")
    assert waited.exit_code == 0, waited.output
    assert waited.stdout == '"hi"\n'
    later = both.via_api("enqueue", "echo", "--args", '["later"]', "--delay", "1h", "--queue",
                         "mail", "--priority", "high", "--max-retries", "2", "--timeout", "5m",
                         "--id", "later-1")  # fmt: skip
    assert later.stdout == "later-1\n"
    record = both.json("jobs", "show", "later-1")
    assert (record["state"], record["queue"], record["priority"]) == ("scheduled", "mail", 2)
    assert (record["args"], record["max_retries"], record["timeout"]) == (["later"], 2, 300.0)
    failed = both.via_api("enqueue", "math", "--payload", '{"operation": "nope", "a": 1, "b": 2}',
                          "--wait", "20")  # fmt: skip
    assert failed.exit_code == 1 and "ended dead" in failed.output
    dead_id = both.json("dlq", "list")["jobs"][0]["id"]

    # jobs list / show, queues list / stats, dlq list, workers: as the backend has them.
    assert len(both.same("jobs", "list")["jobs"]) == 3
    assert both.same("jobs", "list", "--status", "dead", "--limit", "1")["next_cursor"] is None
    page = both.same("jobs", "list", "--limit", "2")
    assert both.same("jobs", "list", "--cursor", page["next_cursor"])["next_cursor"] is None
    both.same("jobs", "show", dead_id)
    both.same("jobs", "show", "later-1")
    assert [q["name"] for q in both.same("queues", "list")] == ["default", "mail"]
    assert both.same("queues", "stats", "mail")["counts"]["scheduled"] == 1
    both.same("queues", "stats")
    assert both.same("dlq", "list", "--task", "math")["jobs"][0]["id"] == dead_id
    workers = both.via_api("workers")
    assert workers.exit_code == 0 and "default,mail" in workers.stdout
    assert [w["queues"] for w in both.json("workers")] == [["default", "mail"]]

    # Changes, each answered as the backend's command answers it.
    assert both.via_api("queues", "pause", "mail").stdout == "queue mail paused\n"
    assert both.json("queues", "resume", "mail")["paused"] is False
    assert both.via_api("jobs", "retry", dead_id).stdout == f"job {dead_id} queued again\n"
    assert both.via_api("jobs", "cancel", "later-1").stdout == "job later-1 cancelled\n"
    assert both.json("jobs", "cancel", "later-1")["state"] == "cancelled"
    assert both.via_api("jobs", "delete", "later-1").stdout == "job later-1 deleted\n"
    _wait_dead(both, dead_id)
    assert both.json("dlq", "requeue", dead_id) == {"requeued": 1}
    _wait_dead(both, dead_id)
    assert both.via_api("dlq", "requeue", "--all").stdout == "requeued 1 job(s)\n"
    _wait_dead(both, dead_id)
    refused = both.via_api("dlq", "purge", input="n\n")
    assert refused.exit_code == 1 and both.json("dlq", "list")["jobs"]
    assert both.via_api("dlq", "purge", "--task", "math", "--yes").stdout == "purged 1 job(s)\n"

    # The API's refusals: one line with its message, exit code 1.
    done = both.json("jobs", "list", "--status", "succeeded")["jobs"][0]["id"]
    answered = "Error: the API answered"
    for args, message in [
        (("jobs", "show", "later-1"), f"{answered} 404: no job 'later-1'"),
        (("jobs", "delete", "nope"), f"{answered} 404: no job 'nope'"),
        (("jobs", "retry", done), f"{answered} 409: job {done} is succeeded: only dead jobs"),
        (("enqueue", "nosuch"), f"{answered} 422: unknown task 'nosuch'; known tasks: call_"),
        (("jobs", "list", "--limit", "5000"), f"{answered} 422: invalid request: query.limit"),
        (("dlq", "requeue", "a", "b"), "Error: 2 of the ids given are not dead jobs"),
    ]:
        result = both.via_api(*args)
        assert (result.exit_code, message in result.output) == (1, True), (args, result.output)


def _wait_dead(both: Both, job_id: str) -> None:
    for _ in range(400):
        if both.json("jobs", "show", job_id)["state"] == "dead":
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never went dead again")


@pytest.mark.slow
def test_keys_and_addresses_of_the_api(both: Both, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = both.via_api("jobs", "list", key="guess")
    assert wrong.exit_code == 1
    assert wrong.output.startswith("Error: the API answered 401: unknown API key")
    read_only = both.via_api("enqueue", "echo", key=READER)
    assert read_only.exit_code == 1 and "403: this API key is read-only" in read_only.output
    assert both.via_api("queues", "list", key=READER).stdout == "no queues\n"
    # The address and key from the environment.
    monkeypatch.setenv("TASKMILL_API", both.api)
    monkeypatch.setenv("TASKMILL_API_KEY", ADMIN)
    assert CliRunner().invoke(main, ["jobs", "list"]).stdout == "no jobs\n"
    both_ways = CliRunner().invoke(main, ["--api", both.api, "--url", both.url, "jobs", "list"])
    assert both_ways.exit_code == 2 and "--api goes through the server" in both_ways.output
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = CliRunner().invoke(main, ["--api", closed, "workers"])
    assert unreachable.exit_code == 1
    assert f"Error: cannot reach the API at {closed}" in unreachable.output
