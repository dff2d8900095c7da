"""The Redis backend's Lua scripts: loaded from lua/*.lua, run by SHA in pipelines.

Every per-queue script is common.lua (its key layout and helpers) followed by its own
file; register.lua and the schedule and lease scripts (tick, lease, release) run alone, on
keys shared by every queue.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources import files

QUEUE_SCRIPTS = (
    "enqueue", "claim", "finish", "heartbeat", "cancel", "delete", "maintain", "rescue",
    "requeue", "purge", "peek", "stats", "list",
)  # fmt: skip
GLOBAL_SCRIPTS = ("register", "tick", "lease", "release")

#: The suffixes of one queue's keys, in the order of KEYS (see lua/common.lua); the first
#: is the prefix of its job hashes.
QUEUE_KEYS = (
    "job:", "ready", "scheduled", "leases", "expiring", "done", "dead", "all", "stats", "wake",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _source(name: str) -> str:
    return files("taskmill.backends").joinpath("lua", f"{name}.lua").read_text("utf-8")


def load() -> dict[str, Script]:
    common = _source("common")
    sources = {name: common + _source(name) for name in QUEUE_SCRIPTS}
    sources |= {name: _source(name) for name in GLOBAL_SCRIPTS}
    return {
        name: Script(name, source, hashlib.sha1(source.encode()).hexdigest())
        for name, source in sources.items()
    }


SCRIPTS = load()


@functools.lru_cache(maxsize=1024)
def queue_keys(prefix: str, queue: str, *extra: str) -> tuple[str, ...]:
    """KEYS of a per-queue script: every key carries the {queue} hash tag (one slot); then
    `extra` keys, if the script takes more. Built once per queue: every call needs them."""
    return (*(f"{prefix}:{{{queue}}}:{suffix}" for suffix in QUEUE_KEYS), *extra)
