"""The Redis backend's Lua scripts: loaded from lua/*.lua into one library of Redis
functions (FUNCTION LOAD), called with FCALL in pipelines.

Why functions and not EVALSHA: a script run by EVALSHA executes its whole source on every
call, and every per-queue script starts with common.lua's helpers, which the garbage
collector then has to reclaim. A library runs common.lua once, when it is loaded; each call
then only binds its keys (`bind`). Functions need Redis 7.0 or Valkey; the server also keeps
them across restarts and hands them to replicas.

What Python and Lua must agree on is defined here once and written into the head of the
library: the layout of a queue's keys (QueueKeys, whose fields the scripts know in
capitals), the cap of a wake list, and the job model's defaults and bounds.

The library is named after the hash of its source, and so are its functions: processes of
different versions, upgraded one by one, each call their own code on the same server.
"""

from __future__ import annotations

import functools
import hashlib
from importlib.resources import files
from typing import Any, NamedTuple

from taskmill.backends.redis_client import ReplyError
from taskmill.backends.rules import THROUGHPUT_WINDOW
from taskmill.job import DEFAULT_MAX_RETRIES, DEFAULT_PRIORITY, DEFAULT_RESULT_TTL, PRIORITY_MAX

QUEUE_SCRIPTS = (
    "enqueue", "claim", "finish", "heartbeat", "cancel", "delete", "maintain", "rescue",
    "requeue", "purge", "peek", "stats", "list", "quarantine",
)  # fmt: skip
GLOBAL_SCRIPTS = ("register", "tick", "lease", "release")

#: What the backend runs: a command, or ("script", name, keys, args), a call of a script.
Op = tuple[Any, ...]

#: The first part of every key's name.
PREFIX = "taskmill"
#: The most wake-up tokens a queue's wake list holds: enough to wake every idle worker that
#: a burst of jobs needs, and a bound on what a list nobody pops keeps.
WAKE_CAP = 16


class QueueKeys(NamedTuple):
    """One queue's keys, in the order of every per-queue script's KEYS, where the scripts
    know each by its field name in capitals (JOB, READY, ...). Each is
    `taskmill:{q}:<suffix>` (LAYOUT holds the suffixes): the {q} hash tag puts a queue's
    keys in one cluster slot."""

    #: the prefix of the job hashes: a job's hash is this key followed by the job's id
    job: str
    #: zset: waiting jobs due now, score = rank (priority, then enqueue order)
    ready: str
    #: zset: waiting jobs not due yet, score = run_at
    scheduled: str
    #: zset: running jobs, score = lease_until
    leases: str
    #: zset: waiting jobs with an expires_at, score = it
    expiring: str
    #: zset: succeeded, cancelled and expired jobs, score = when they are pruned
    done: str
    #: zset: dead jobs, score = listing seq
    dead: str
    #: zset: every job, score = listing seq (newest last)
    all: str
    #: hash: job count per state, seq, paused, configured, settings (JSON), concurrency,
    #: fin:<second> (jobs that ended succeeded or dead in that second; kept
    #: THROUGHPUT_WINDOW seconds)
    stats: str
    #: list: wake-up tokens that idle workers BLPOP (at most WAKE_CAP)
    wake: str


LAYOUT = QueueKeys(
    "job:", "ready", "scheduled", "leases", "expiring", "done", "dead", "all", "stats", "wake"
)


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str) -> QueueKeys:
    """A queue's keys, built once per queue: every call of its scripts needs them."""
    return QueueKeys(*(f"{PREFIX}:{{{queue}}}:{suffix}" for suffix in LAYOUT))


def _number(value: float) -> str:
    return f"{value:.17g}"


def _head() -> str:
    """The library's first lines: the definitions above, as Lua."""
    names = [name.upper() for name in QueueKeys._fields]
    constants = {
        "WAKE_CAP": WAKE_CAP,
        "PRIORITY_MAX": PRIORITY_MAX,
        "DEFAULT_PRIORITY": DEFAULT_PRIORITY,
        "DEFAULT_RETRIES": DEFAULT_MAX_RETRIES,
        "DEFAULT_TTL": DEFAULT_RESULT_TTL,
        "THROUGHPUT_WINDOW": THROUGHPUT_WINDOW,
    }
    lines = [f"local {name} = {_number(value)}" for name, value in constants.items()]
    lines += [
        f"local {', '.join(names)}",
        "local function bind(keys)",
        *(f"  {name} = keys[{i}]" for i, name in enumerate(names, start=1)),
        "end",
    ]
    return "\n".join(lines) + "\n"


def _source(name: str) -> str:
    return files("taskmill.backends").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _library() -> tuple[str, str]:
    """(the library's name, its source): the head, common.lua, then each script as a
    function whose body is the script's file, run with KEYS and ARGV as its arguments."""
    parts = [_head(), _source("common")]
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


def command(op: Op) -> Op:
    """The command of an op: a script's call is an FCALL of its function."""
    if op[0] != "script":
        return op
    _, name, keys, args = op
    return ("FCALL", FUNCTIONS[name], len(keys), *keys, *args)


def noscript(result: Any) -> bool:
    """A call of a function the server does not have (a new server, or one restarted
    without its data): it did not run."""
    return isinstance(result, ReplyError) and str(result).endswith("Function not found")
