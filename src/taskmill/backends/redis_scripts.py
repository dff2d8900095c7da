"""The Redis backend's Lua scripts: loaded from lua/*.lua into one library of Redis
functions (FUNCTION LOAD), called with FCALL in pipelines.

Why functions and not EVALSHA: a script run by EVALSHA executes its whole source on every
call, and every per-queue script starts with common.lua's helpers, so each call made a
dozen closures for the garbage collector, about 21,000 server instructions before the
script's first line (callgrind on redis-server 7.0). A library runs common.lua once, when it
is loaded; each call then only binds its keys (common.lua's `bind`). Functions need Redis
7.0 or Valkey; the server also keeps them across restarts and hands them to replicas.

The library is named after the hash of its source, and so are its functions: processes of
different versions, upgraded one by one, each call their own code on the same server.
"""

from __future__ import annotations

import functools
import hashlib
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


def _source(name: str) -> str:
    return files("taskmill.backends").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _library() -> tuple[str, str]:
    """(the library's name, its source): common.lua, then each script as a function whose
    body is the script's file, run with KEYS and ARGV as its arguments."""
    parts = [_source("common")]
    for name in (*QUEUE_SCRIPTS, *GLOBAL_SCRIPTS):
        bind = "bind(KEYS)\n" if name in QUEUE_SCRIPTS else ""
        parts.append(
            f"redis.register_function('@_{name}', function(KEYS, ARGV)\n{bind}{_source(name)}end)\n"
        )
    body = "".join(parts)
    name = "taskmill_" + hashlib.sha1(body.encode()).hexdigest()[:16]
    return name, f"#!lua name={name}\n" + body.replace("'@_", f"'{name}_")


LIBRARY, SOURCE = _library()


#: The name of each script's function in this version's library.
FUNCTIONS = {script: f"{LIBRARY}_{script}" for script in (*QUEUE_SCRIPTS, *GLOBAL_SCRIPTS)}


@functools.lru_cache(maxsize=1024)
def queue_keys(prefix: str, queue: str, *extra: str) -> tuple[str, ...]:
    """KEYS of a per-queue script: every key carries the {queue} hash tag (one slot); then
    `extra` keys, if the script takes more. Built once per queue: every call needs them."""
    return (*(f"{prefix}:{{{queue}}}:{suffix}" for suffix in QUEUE_KEYS), *extra)
