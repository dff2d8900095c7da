"""Fixtures shared by every test: one parameter per backend, a fake clock, fast settings."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskmill import App, Settings
from taskmill.backends import Backend, connect

#: Backends every contract test runs against. Service-backed ones join this list with a
#: fixture that skips when the service is missing, or fails under TASKMILL_REQUIRE_SERVICES=1.
BACKENDS = ["memory", "sqlite"]


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


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path / 'taskmill.db'}"


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
