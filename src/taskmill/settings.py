"""Settings from TASKMILL_* environment variables; flags override them and pass them down."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from taskmill.errors import ConfigError
from taskmill.job import DEFAULT_MAX_PAYLOAD

DEFAULT_URL = "sqlite:///taskmill.db"


@dataclass(frozen=True, slots=True)
class Settings:
    #: Backend URL: sqlite:///path, memory://name, redis://host:port, redis+cluster://h:p,h:p.
    url: str = DEFAULT_URL
    #: Largest encoded job payload accepted at enqueue, in bytes.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Seconds a claim holds a job before another worker may rescue it.
    lease: float = 30.0
    #: Seconds between a worker's heartbeats (lease renewal, cancellation checks, progress).
    heartbeat: float = 1.0
    #: Seconds a stopping worker lets running jobs finish before handing them back.
    grace: float = 30.0
    #: Seconds between upkeep runs (rescue expired leases, prune finished jobs).
    maintain_interval: float = 5.0
    #: Longest an idle worker waits before it looks for due jobs again.
    poll_interval: float = 1.0
    #: Seconds the scheduler leader's lease lasts: a dead leader is replaced within it.
    scheduler_lease: float = 10.0

    def __post_init__(self) -> None:
        if self.max_payload <= 0:
            raise ConfigError("max_payload must be > 0")
        if self.heartbeat <= 0 or self.lease <= self.heartbeat:
            raise ConfigError("heartbeat must be > 0 and shorter than the lease")
        if self.grace < 0 or self.maintain_interval <= 0 or self.poll_interval <= 0:
            raise ConfigError("grace must be >= 0; maintain_interval, poll_interval > 0")
        if self.scheduler_lease <= 0:
            raise ConfigError("scheduler_lease must be > 0")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then TASKMILL_<NAME> variables, then `overrides` that are not None."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"TASKMILL_{f.name.upper()}")
            if raw is None:
                continue
            try:
                values[f.name] = (
                    raw if f.type == "str" else (int if f.type == "int" else float)(raw)
                )
            except ValueError:
                raise ConfigError(f"TASKMILL_{f.name.upper()}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
