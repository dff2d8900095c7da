"""Backoff policies between attempts. Pure: no I/O, randomness injectable."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from taskmill.errors import ConfigError

Strategy = Literal["exponential", "linear", "fixed"]
STRATEGIES: tuple[Strategy, ...] = ("exponential", "linear", "fixed")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before attempt n+1, given n attempts failed.

    `jitter` is a fraction: the delay is drawn uniformly from [d * (1 - jitter), d], so
    retries of many jobs failing together spread out instead of stampeding.
    """

    strategy: Strategy = "exponential"
    delay: float = 1.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"retry strategy must be one of {', '.join(STRATEGIES)}")
        if self.delay < 0 or self.max_delay < 0:
            raise ConfigError("retry delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("retry jitter must be between 0 and 1")

    def backoff(self, failed_attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after `failed_attempts` (>= 1) failures."""
        n = max(failed_attempts, 1)
        if self.strategy == "exponential":
            # Cap the exponent so a large attempt count cannot overflow float.
            base = self.delay * 2.0 ** min(n - 1, 64)
        elif self.strategy == "linear":
            base = self.delay * n
        else:
            base = self.delay
        base = min(base, self.max_delay)
        return base * (1.0 - self.jitter * rand())

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "delay": self.delay,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return retry_policy(
            data.get("strategy", "exponential"),
            float(data.get("delay", 1.0)),
            float(data.get("max_delay", 3600.0)),
            float(data.get("jitter", 0.1)),
        )


@functools.lru_cache(maxsize=256)
def retry_policy(strategy: Strategy, delay: float, max_delay: float, jitter: float) -> RetryPolicy:
    """Policies are immutable, so jobs with the same options share one (decoding is hot)."""
    return RetryPolicy(strategy, delay, max_delay, jitter)


#: The policy of a job that sets none.
DEFAULT_RETRY = RetryPolicy()
