"""The `taskmill` command, in process with click's runner and as real subprocesses."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from taskmill import App, Worker, examples
from taskmill.cli import main
from tests.conftest import fast_settings

TASKS = """
from taskmill import App, PermanentError

app = App()


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="refuse")
def refuse(reason: str) -> None:
    raise PermanentError(reason)
"""


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args: str) -> Any:
    """Run a command that must succeed with --json; its output, decoded."""
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The worker and demo commands configure the root logger, as a program should."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@contextmanager
def app_module(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of `source` defining `app`, in the current directory as a user has one;
    its --app spec."""
    name = f"tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        yield f"{name}:app"
    finally:
        sys.modules.pop(name, None)


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The TASKS module; its --app spec."""
    with app_module(TASKS, tmp_path, monkeypatch) as spec:
        yield spec


@pytest.fixture
def examples_app(monkeypatch: pytest.MonkeyPatch) -> App:
    """taskmill.examples.app, its settings put back after the CLI changed them."""
    monkeypatch.setattr(examples.app, "settings", examples.app.settings)
    return examples.app


def test_enqueue_prints_the_id_and_jobs_show_the_record(url: str) -> None:
    options = "--args [1,2] --queue reports --priority high --max-retries 5 --timeout 2m"
    payload = ("--payload", '{"month": "2024-05"}')
    enqueued = run("--url", url, "enqueue", "report.build", *payload, *options.split())
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()
    job = ok("jobs", "show", job_id, "--url", url)
    assert job["id"] == job_id
    assert job["task"] == "report.build"
    assert (job["args"], job["kwargs"]) == ([1, 2], {"month": "2024-05"})
    assert (job["queue"], job["priority"], job["state"]) == ("reports", 2, "pending")
    assert (job["max_retries"], job["timeout"]) == (5, 120.0)

    shown = run("--url", url, "jobs", "show", job_id)
    assert "report.build" in shown.stdout
    assert "state" in shown.stdout and "pending" in shown.stdout


def test_enqueue_delay_and_an_id_given_twice(url: str) -> None:
    first = ok("--url", url, "enqueue", "t", "--delay", "1h", "--id", "nightly-2024-05-01")
    again = ok("--url", url, "enqueue", "t", "--id", "nightly-2024-05-01")
    assert first["state"] == "scheduled"
    assert first["run_at"] - first["created_at"] == pytest.approx(3600, abs=1)
    assert again["id"] == first["id"] == "nightly-2024-05-01"
    assert again["created_at"] == first["created_at"]


def test_jobs_list_filters_and_pages(url: str) -> None:
    ids = [ok("--url", url, "enqueue", "t", "--queue", queue)["id"] for queue in "aab"]
    listed = ok("--url", url, "jobs", "list")
    assert [job["id"] for job in listed["jobs"]] == ids[::-1]
    assert listed["next_cursor"] is None
    assert [j["id"] for j in ok("--url", url, "jobs", "list", "--queue", "b")["jobs"]] == ids[2:]
    assert ok("--url", url, "jobs", "list", "--status", "running")["jobs"] == []

    first = ok("--url", url, "jobs", "list", "--queue", "a", "--limit", "1")
    assert [job["id"] for job in first["jobs"]] == [ids[1]]
    rest = ok("--url", url, "jobs", "list", "--queue", "a", "--cursor", first["next_cursor"])
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]

    table = run("--url", url, "jobs", "list", "--limit", "2").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "TASK",
        "QUEUE",
        "STATE",
        "PRIO",
        "TRIES",
        "CREATED",
        "RESULT",
    ]
    assert table[1].startswith(ids[2]) and table[-1].startswith("more: --cursor ")
    assert run("--url", url, "jobs", "list", "--task", "other").stdout == "no jobs\n"


def test_worker_runs_jobs_of_the_app(url: str, tasks: str) -> None:
    job_id = run("--url", url, "--app", tasks, "enqueue", "add", "--payload", '{"a": 2, "b": 3}')
    worked = run("worker", "--app", tasks, "--url", url, "--burst", "--log-level", "debug")
    assert worked.exit_code == 0, worked.output
    assert "started: queues {'default': 1}" in worked.stderr
    job = ok("--url", url, "jobs", "show", job_id.stdout.strip())
    assert (job["state"], job["result"]) == ("succeeded", 5)


def test_unknown_task_with_app_names_the_known_ones(url: str, tasks: str) -> None:
    result = run("--url", url, "--app", tasks, "enqueue", "nope")
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown task 'nope'; known tasks: add, refuse\n"
    assert ok("--url", url, "jobs", "list")["jobs"] == []


def test_arguments_are_checked_against_the_task_with_app(url: str, tasks: str) -> None:
    result = run("--url", url, "--app", tasks, "enqueue", "add", "--payload", '{"a": 1}')
    assert result.exit_code == 2
    assert "arguments do not fit task 'add'" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "t", "--payload", "{not json"],
        ["enqueue", "t", "--payload", "[1]"],
        ["enqueue", "t", "--args", '{"a": 1}'],
        ["enqueue", "t", "--priority", "urgent"],
        ["enqueue", "t", "--priority", "101"],
        ["enqueue", "t", "--delay", "soon"],
        ["enqueue", "t", "--queue", "no spaces"],
        ["jobs", "list", "--status", "done"],
        ["--app", "no_such_module:app", "jobs", "list"],
        ["--app", "taskmill.examples", "jobs", "list"],
        ["--app", "taskmill.examples:echo", "jobs", "list"],
        ["worker"],
        ["worker", "--app", "taskmill.examples:app", "--queues", "a:x"],
        ["worker", "--app", "taskmill.examples:app", "--heartbeat", "60", "--lease", "30"],
        ["dlq", "requeue"],
        ["dlq", "requeue", "some-id", "--all"],
    ],
)
def test_bad_input_is_a_usage_error(url: str, args: list[str], examples_app: App) -> None:
    result = run("--url", url, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--timeout", "0"], "timeout: must be > 0"),
        (["--max-retries", "1000000000"], "max_retries: must be an integer from 0 to 10000"),
        (["--delay", "99999d"], "duration must be from 0 to"),
        (["--id", "a/b"], "id: must be 1-255 printable characters"),
    ],
)
def test_options_out_of_range_are_usage_errors(url: str, args: list[str], words: str) -> None:
    """Issue 17, finding 9, through the CLI: the rules of the Python API, in its words."""
    result = run("--url", url, "enqueue", "t", *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["x" * 100_000], "task: must be 1-200 printable characters"),
        (["t", "--payload", '{"a": ' + "[" * 252 + "]" * 252 + "}"], "kwargs: nested deeper"),
        (["t", "--args", "[" + "[" * 70 + "]" * 70 + "]"], "args: nested deeper"),
    ],
)
def test_names_and_payloads_outside_the_bounds_are_refused(
    url: str, args: list[str], words: str
) -> None:
    result = run("--url", url, "enqueue", *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert ok("--url", url, "jobs", "list")["jobs"] == []


def test_unknown_job_id_is_an_error(url: str) -> None:
    for command in ("show", "cancel"):
        result = run("--url", url, "jobs", command, "no-such-job")
        assert result.exit_code == 1
        assert result.stderr == "Error: no job 'no-such-job'\n"
        assert result.stdout == ""


def test_backend_errors_are_one_line() -> None:
    result = run("--url", "nosuch://localhost", "jobs", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unsupported backend URL 'nosuch://localhost'")


def test_jobs_cancel(url: str) -> None:
    job_id = ok("--url", url, "enqueue", "t")["id"]
    assert run("--url", url, "jobs", "cancel", job_id).stdout == f"job {job_id} cancelled\n"
    assert ok("--url", url, "jobs", "cancel", job_id)["state"] == "cancelled"


def test_queues_pause_resume_and_stats(url: str) -> None:
    for _ in range(2):
        ok("--url", url, "enqueue", "t", "--queue", "mail")
    ok("--url", url, "enqueue", "t", "--queue", "mail", "--delay", "1h")
    assert run("--url", url, "queues", "pause", "mail").stdout == "queue mail paused\n"
    empty = ok("--url", url, "queues", "pause", "empty")
    assert (empty["name"], empty["paused"], any(empty["counts"].values())) == ("empty", True, False)
    queues = {info["name"]: info for info in ok("--url", url, "queues", "list")}
    assert sorted(queues) == ["empty", "mail"]
    assert queues["mail"]["paused"] and queues["mail"]["counts"]["pending"] == 2

    stats = ok("--url", url, "queues", "stats", "mail")
    assert (stats["counts"]["pending"], stats["counts"]["scheduled"]) == (2, 1)
    assert stats["paused"] is True
    assert 0 <= stats["oldest_pending_age"] < 60
    assert [info["name"] for info in ok("--url", url, "queues", "stats")] == ["empty", "mail"]

    assert run("--url", url, "queues", "resume", "mail").stdout == "queue mail resumed\n"
    assert ok("--url", url, "queues", "stats", "mail")["paused"] is False
    table = run("--url", url, "queues", "stats").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PAUSED", "PENDING", "SCHEDULED"]
    assert table[2].split()[:4] == ["mail", "no", "2", "1"]
    assert run("--url", url, "queues", "list").stdout.splitlines()[2].split() == ["mail", "no", "3"]


def test_dlq_list_requeue_and_purge(url: str, tasks: str) -> None:
    ids = [
        ok("--url", url, "--app", tasks, "enqueue", "refuse", "--args", f'["no {n}"]')["id"]
        for n in range(3)
    ]
    ok("--url", url, "--app", tasks, "enqueue", "add", "--args", "[1, 2]", "--queue", "other")
    assert run("--url", url, "--app", tasks, "worker", "--burst").exit_code == 0
    dead = ok("--url", url, "dlq", "list")["jobs"]
    cancel = run("--url", url, "jobs", "cancel", ids[1])
    assert (cancel.exit_code, cancel.stderr) == (1, f"Error: job {ids[1]} already finished: dead\n")
    assert sorted(job["id"] for job in dead) == sorted(ids)
    assert dead[0]["errors"][0]["error"] == "PermanentError: no 2"
    assert run("--url", url, "dlq", "list", "--queue", "other").stdout == (
        "the dead-letter queue is empty\n"
    )

    assert ok("--url", url, "dlq", "requeue", ids[0]) == {"requeued": 1}
    requeued = ok("--url", url, "jobs", "show", ids[0])
    assert (requeued["state"], requeued["attempts"]) == ("pending", 0)
    missing = run("--url", url, "dlq", "requeue", ids[0], "no-such-job")
    assert missing.exit_code == 1
    assert missing.stdout == "requeued 0 job(s)\n"
    assert "2 of the ids given are not dead jobs" in missing.stderr
    assert run("--url", url, "dlq", "requeue", "--task", "refuse").stdout == "requeued 2 job(s)\n"

    assert run("--url", url, "--app", tasks, "worker", "--burst").exit_code == 0
    refused = run("--url", url, "dlq", "purge", input="n\n")
    assert refused.exit_code == 1
    assert "Delete every dead job?" in refused.stderr
    assert len(ok("--url", url, "dlq", "list")["jobs"]) == 3
    assert ok("--url", url, "dlq", "purge", "--task", "add", "--yes") == {"purged": 0}
    assert run("--url", url, "dlq", "purge", "--yes").stdout == "purged 3 job(s)\n"
    assert ok("--url", url, "dlq", "list")["jobs"] == []


@contextmanager
def worker_thread(app: App) -> Iterator[Worker]:
    """A worker on its own event loop in a thread, while the test drives the CLI."""
    worker = Worker(app, concurrency=2)
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        try:
            await worker.run()
        finally:
            await app.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(10)
        loop.close()


def test_enqueue_wait_and_workers_with_a_running_worker(url: str, tasks: str) -> None:
    assert run("--url", url, "workers").stdout == "no live workers\n"
    sys.path.insert(0, os.getcwd())
    app = importlib.import_module(tasks.partition(":")[0]).app
    app.settings = fast_settings(url)
    enqueue = ("--url", url, "--app", tasks, "enqueue")
    with worker_thread(app) as worker:
        waited = run(*enqueue, "add", "--args", "[2, 40]", "--wait", "10")
        assert (waited.exit_code, waited.stdout) == (0, "42\n")
        failed = run(*enqueue, "refuse", "--args", '["no"]', "--wait", "10")
        assert failed.exit_code == 1
        assert failed.stderr.startswith("Error: job ")
        assert failed.stderr.endswith(" ended dead: PermanentError: no\n")

        (info,) = ok("--url", url, "workers")
        assert info["id"] == worker.id and info["tasks"] == ["add", "refuse"]
        table = run("--url", url, "workers").stdout.splitlines()
        assert table[0].split() == ["ID", "QUEUES", "RUNNING", "TASKS", "UP", "SEEN"]
        assert table[1].split()[:2] == [worker.id, "default"]
    assert ok("--url", url, "workers") == []


def test_enqueue_wait_times_out(url: str) -> None:
    result = run("--url", url, "enqueue", "t", "--wait", "0.1")
    assert result.exit_code == 1
    assert "is still pending after 0.1s" in result.stderr


@pytest.mark.slow
def test_demo_runs_every_job_to_its_end(tmp_path: Path, examples_app: App) -> None:
    result = run("--url", f"sqlite:///{tmp_path / 'demo.db'}", "demo")
    assert result.exit_code == 0, result.output
    assert "All 16 jobs finished in" in result.stdout
    assert ": 14 succeeded, 2 dead." in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: snapshots, no screen clearing


# -- real processes ----------------------------------------------------------------------

TASKMILL = str(Path(sys.executable).with_name("taskmill"))


def taskmill(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKMILL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def show(url: str, job_id: str, cwd: Path) -> Any:
    return orjson.loads(taskmill("--url", url, "jobs", "show", job_id, "--json", cwd=cwd).stdout)


@pytest.mark.slow
def test_worker_process_runs_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taskmill.db'}"
    app = ["--url", url, "--app", "taskmill.examples:app"]
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [TASKMILL, *app, "worker", "-c", "4", "-q", "default,slow:2", "--heartbeat", "0.2"],
            cwd=tmp_path,
            stderr=stderr,
            env={**os.environ, "TASKMILL_LOG_LEVEL": "info"},
        )
    try:
        hello = ("enqueue", "echo", "--payload", '{"message": "hi"}', "--wait", "30")
        echoed = taskmill(*app, *hello, cwd=tmp_path)
        assert (echoed.returncode, echoed.stdout) == (0, '"hi"\n'), echoed.stderr
        workers = orjson.loads(taskmill("--url", url, "workers", "--json", cwd=tmp_path).stdout)
        assert [w["pid"] for w in workers] == [worker.pid]
        assert workers[0]["queues"] == ["default", "slow"]

        # A job still running at SIGTERM is let finish: the grace period covers it.
        slow = taskmill(*app, "enqueue", "sleep", "--args", "[3]", "--queue", "slow", cwd=tmp_path)
        job_id = slow.stdout.strip()
        deadline = time.monotonic() + 30
        while (state := show(url, job_id, tmp_path)["state"]) == "pending":
            assert time.monotonic() < deadline, "the job never started"
        assert state == "running"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    job = show(url, job_id, tmp_path)
    assert (job["state"], job["result"]) == ("succeeded", 3)
    events = [orjson.loads(line) for line in log.read_text().splitlines()]
    stopped = [e for e in events if e["logger"] == "taskmill.worker" and "stopped" in e["message"]]
    assert stopped and stopped[0]["level"] == "info" and stopped[0]["worker"]
    assert taskmill("--url", url, "workers", cwd=tmp_path).stdout == "no live workers\n"
