"""Schema migrations of the SQL backends, found and checked one way for both.

A dialect's migrations are the numbered scripts `sql/<dialect>/NNNN_name.sql`, applied in
order and each recorded with its number, so a database's schema version is the last one
applied. Each backend runs the scripts its own way (SQLite statement by statement on its
thread, PostgreSQL on an async connection under an advisory lock) and records them in its
own table; which scripts to run, and the refusal of a database newer than this taskmill,
are decided here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

from taskmill.errors import BackendError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    #: The script's file name, recorded beside its version.
    name: str
    script: str


def migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations in order; they must be numbered 1, 2, ... without gaps."""
    folder = files("taskmill.backends").joinpath("sql", dialect)
    found = sorted(
        (
            Migration(int(f.name.split("_", 1)[0]), f.name, f.read_text("utf-8"))
            for f in folder.iterdir()
            if re.fullmatch(r"\d{4}_\w+\.sql", f.name)
        ),
        key=lambda m: m.version,
    )
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        names = [m.name for m in found]
        raise BackendError(f"{dialect} migrations are not numbered 1, 2, ...: {names}")
    return found


def pending(dialect: str, current: int, database: str) -> list[Migration]:
    """The migrations a database at schema version `current` lacks. A database migrated by
    a newer taskmill is refused: this one would misread what it does not know."""
    known = migrations(dialect)
    if current > len(known):
        raise BackendError(
            f"{database} has taskmill schema version {current}, newer than this taskmill "
            f"knows ({len(known)}); upgrade taskmill"
        )
    return known[current:]
