"""taskmill's modules form layers without cycles: a module imports its own layer's modules
and lower ones', never a higher one's, and no chain of imports comes back to where it began.

Read from the source with `ast`, so nothing is imported: every import that runs counts,
those inside functions too; those under `if TYPE_CHECKING:` (annotations only) do not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

#: Bottom up: why the layer sits where it does, and its modules (fnmatch patterns of names
#: under taskmill; `__init__` is the package itself).
LAYERS = [
    (
        "models, rules and helpers: no backend, no app, no I/O beyond their own",
        "errors job retry cron schedule settings logs pool",
    ),
    (
        "storage: each backend keeps the models, knowing nothing of its callers",
        "backends backends.*",
    ),
    (
        "the app over one backend: its tasks, producing and reading jobs, the sync API",
        "app task sync",
    ),
    (
        "what runs an app: the worker's and the scheduler's loops, their metrics",
        "worker recorder scheduler metrics",
    ),
    (
        "the ways in: the public package, command line, REST API, examples",
        "__init__ cli cli.* server server.* examples",
    ),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "taskmill").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from _runtime_imports(node.orelse)
        else:
            yield from _runtime_imports(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The taskmill modules `name` imports at run time. `from package import name` counts as
    importing the submodule where there is one, else the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            anchor = package.rsplit(".", node.level - 1)[0]
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found & known - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer_of(module: str) -> int | None:
    name = module.removeprefix("taskmill").removeprefix(".") or "__init__"
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(name, pattern) for pattern in patterns.split()):
            return index
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in modules() if layer_of(name) is None)
    assert not unplaced, f"put these modules in a layer of LAYERS: {unplaced}"


def test_no_cycles() -> None:
    edges = graph()
    problems = [
        ", ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a]) if b in component)
        for component in cycles(edges)
    ]
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_no_upward_imports() -> None:
    upward = [
        f"{a} ({LAYERS[low][0]}) imports {b} ({LAYERS[high][0]})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if (low := layer_of(a)) is not None and (high := layer_of(b)) is not None and high > low
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_reader_sees_what_runs(tmp_path: Path) -> None:
    """Imports inside functions count, annotation-only ones do not, relative ones resolve."""
    module = tmp_path / "taskmill" / "cli" / "sub.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import taskmill.job\n"
        "from taskmill import app\n"
        "from taskmill.server import server_of\n"
        "from . import common\n"
        "if TYPE_CHECKING:\n"
        "    from taskmill import worker\n"
        "else:\n"
        "    from taskmill import retry\n"
        "def late() -> None:\n"
        "    from ..backends import sqlite\n"
    )
    known = {"taskmill", "taskmill.job", "taskmill.app", "taskmill.server", "taskmill.worker",
             "taskmill.retry", "taskmill.cli", "taskmill.cli.common", "taskmill.backends",
             "taskmill.backends.sqlite", "taskmill.cli.sub"}  # fmt: skip
    assert imports("taskmill.cli.sub", module, known) == {
        "taskmill.job", "taskmill.app", "taskmill.server", "taskmill.cli.common",
        "taskmill.retry", "taskmill.backends.sqlite",
    }  # fmt: skip
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
