"""No module outside taskmill.backends knows a particular backend or its driver: the app,
the worker, the scheduler, the command line and the server reach every backend through the
interface (taskmill.backends and its base module), and what only one backend can do
through the hooks of that interface.

Read from the source with `ast`, so nothing is imported. Every import counts: those inside
functions, and those under `if TYPE_CHECKING:` too (an annotation naming a driver's types
is knowledge of that driver).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "taskmill"
#: What of taskmill.backends the rest of taskmill may import.
INTERFACE = frozenset({"taskmill.backends", "taskmill.backends.base"})
#: The backends' drivers, by top-level package.
DRIVERS = frozenset({"psycopg", "psycopg_pool", "redis", "hiredis", "sqlite3"})


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(module: str, source: str, *, package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in `source`, the source of `module` (a package's
    __init__ when `package`), relative ones resolved. `from a import b` imports a.b when
    that is a module, else a."""
    parent = module if package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parent.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield node.lineno, name if _is_module(name) else base


def crossing(name: str) -> bool:
    """Whether importing `name` crosses the boundary: a backend's own module, or a driver."""
    if name.partition(".")[0] in DRIVERS:
        return True
    return name.startswith("taskmill.backends.") and name not in INTERFACE


def violations(module: str, path: Path) -> list[str]:
    source = path.read_text("utf-8")
    return [
        f"{module} (line {line}) imports {name}"
        for line, name in imported(module, source, package=path.name == "__init__.py")
        if crossing(name)
    ]


def modules_outside_backends() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("backends",):
            continue
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def test_no_module_outside_backends_imports_a_backend_or_a_driver() -> None:
    found = [problem for module, path in modules_outside_backends() for problem in
             violations(module, path)]  # fmt: skip
    assert not found, (
        "only taskmill.backends may know a backend or a driver; reach it through a hook of "
        "Backend instead:\n" + "\n".join(found)
    )


def test_the_check_sees_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from taskmill.backends import Backend, connect\n"
        "from taskmill.backends.base import Clock\n"
        "if TYPE_CHECKING:\n"
        "    from psycopg import AsyncConnection\n"
        "def late() -> None:\n"
        "    import redis.asyncio\n"
        "    from ..backends import postgres\n"
        "    from ..backends.sqlite import SQLiteBackend\n"
        "    from .. import backends\n"
        "import sqlite3\n"
    )
    crossed = sorted(
        (line, name) for line, name in imported("taskmill.cli.sub", source) if crossing(name)
    )
    assert crossed == [
        (5, "psycopg"),
        (7, "redis.asyncio"),
        (8, "taskmill.backends.postgres"),
        (9, "taskmill.backends.sqlite"),
        (11, "sqlite3"),
    ]
    assert list(imported("taskmill", "from .backends import memory", package=True)) == [
        (1, "taskmill.backends.memory")
    ]
