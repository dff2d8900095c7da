"""A worker records each outcome on its own: one the backend refuses becomes a dead attempt
that says why, and never holds back the others; a backend that takes no writes keeps them
all for the next try."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from taskmill import App, JobState, Worker
from taskmill.backends import Outcome, connect, connect_blocking, drive
from taskmill.backends.memory import MemoryBackend
from taskmill.errors import BackendError, BackendUnavailable
from taskmill.job import Job, encode
from taskmill.recorder import Recorder, away, storable
from tests.conftest import free_port


async def test_outcomes_a_backend_refuses_do_not_hold_back_the_others(app: App, url: str) -> None:
    # A NUL character in a result and in an error: PostgreSQL stores neither in text, the
    # other backends store both.

    @app.task(max_retries=0)
    async def nul_result() -> str:
        return "a\x00b"

    @app.task(max_retries=0)
    def nul_error() -> None:
        raise ValueError("bad\x00input")

    @app.task
    async def good(n: int) -> int:
        await asyncio.sleep(0.01)
        return n

    handles = [await good.aenqueue(n) for n in range(10)]
    bad_result, bad_error = await nul_result.aenqueue(), await nul_error.aenqueue()
    handles += [await good.aenqueue(n) for n in range(10, 20)]
    # In burst mode the worker stops once every outcome is recorded: it must not loop.
    await asyncio.wait_for(Worker(app, burst=True, concurrency=8).run(), 30)
    assert [await handle.aresult(1) for handle in handles] == list(range(20))
    running = await (await app.backend()).list_jobs(state=JobState.RUNNING)
    assert running == ([], None)

    result_job, error_job = await bad_result.arefresh(), await bad_error.arefresh()
    assert (result_job.attempts, error_job.attempts) == (1, 1)
    assert error_job.state == JobState.DEAD and error_job.error is not None
    traceback = error_job.errors[-1].traceback
    if not url.startswith("postgres"):
        assert (result_job.state, result_job.result) == (JobState.SUCCEEDED, "a\x00b")
        assert error_job.error == "ValueError: bad\x00input"
        return
    assert result_job.state == JobState.DEAD and result_job.error is not None
    assert result_job.error.startswith("the succeeded outcome could not be stored: BackendError")
    assert error_job.error.startswith("the dead outcome could not be stored: BackendError")
    assert error_job.error.endswith("; the attempt's own error: ValueError: bad\\x00input")
    assert traceback is not None and "bad\\x00input" in traceback


class Unreachable(MemoryBackend):
    """The memory backend, but its finish() fails while `down` as a backend's whose server
    is away does: BackendUnavailable."""

    down = True

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        if self.down:
            raise BackendUnavailable("the server is away: connection refused")
        return await super()._finish(outcomes, now)


async def test_outcomes_wait_while_the_backend_takes_no_writes() -> None:
    backend = Unreachable("memory://outcomes-unreachable")
    await backend.open()
    try:
        await backend.enqueue([Job(task="t"), Job(task="t")])
        jobs = await backend.claim(["default"], "w", 2, 30.0)
        held = {job.id: job.token or "" for job in jobs}
        recorder = Recorder("w", backend.clock, held)
        for job in jobs:
            assert job.token is not None
            recorder.add(Outcome(job.id, job.token, JobState.SUCCEEDED, encode(1)), 1)
        with pytest.raises(BackendError):
            await recorder.flush(backend)
        # Nothing was given up for lost: both are kept as they were, their leases held.
        assert [o.state for o in recorder.outcomes] == [JobState.SUCCEEDED] * 2
        assert held.keys() == {job.id for job in jobs}
        backend.down = False
        await recorder.flush(backend)
        assert recorder.outcomes == [] and held == {}
        for job in jobs:
            stored = await backend.get(job.id)
            assert stored is not None and stored.state == JobState.SUCCEEDED
    finally:
        await backend.close()


class Poisoned(MemoryBackend):
    """The memory backend, but it takes no outcome at all for the job `poisoned`, as for a
    job whose stored record it cannot use."""

    poisoned = ""

    async def _finish(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        if any(outcome.job_id == self.poisoned for outcome in outcomes):
            raise BackendError("the job's record is unusable")
        return await super()._finish(outcomes, now)


async def test_a_job_the_backend_takes_no_outcome_for_is_left_to_its_lease() -> None:
    backend = Poisoned("memory://outcomes-poisoned")
    await backend.open()
    try:
        await backend.enqueue([Job(task="t") for _ in range(3)])
        jobs = await backend.claim(["default"], "w", 3, 30.0)
        backend.poisoned = jobs[1].id
        held = {job.id: job.token or "" for job in jobs}
        recorder = Recorder("w", backend.clock, held)
        for job in jobs:
            assert job.token is not None
            recorder.add(Outcome(job.id, job.token, JobState.SUCCEEDED, encode(1)), 1)
        await recorder.flush(backend)  # does not raise: nothing is kept to retry forever
        assert recorder.outcomes == [] and held == {}  # its lease is no longer renewed
        states = [(await backend.get(job.id)) for job in jobs]
        assert [job.state for job in states if job is not None] == [
            JobState.SUCCEEDED, JobState.RUNNING, JobState.SUCCEEDED
        ]  # fmt: skip
    finally:
        await backend.close()


@pytest.mark.slow
async def test_a_server_away_and_a_refusal_are_told_apart(tmp_path: Path) -> None:
    """What each backend raises when its server is not there is BackendUnavailable, which
    the recorder waits out; a statement refused is a plain BackendError."""
    for url in (
        f"redis://127.0.0.1:{free_port()}",
        f"postgresql://postgres@127.0.0.1:{free_port()}/x",
    ):
        blocking = connect_blocking(url)
        assert blocking is not None
        with pytest.raises(BackendUnavailable) as away_error:
            drive(blocking.get("some-job"))
        assert away(away_error.value)
    backend = connect(f"sqlite:///{tmp_path / 'refuses.db'}")
    await backend.open()
    try:
        (job,) = await backend.enqueue([Job(task="t")])
        with pytest.raises(BackendError) as refusal:
            await backend.finish([Outcome(job.id, "token", JobState.RUNNING)])
        assert not away(refusal.value)
    finally:
        await backend.close()


def test_storable_text_has_no_nul_and_no_lone_surrogate() -> None:
    assert storable("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert storable("plain") == "plain"
