"""`task.enqueue(...)` is checked against the handler's signature by mypy (ParamSpec)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

# Each test runs mypy, without a cache: seconds.
pytestmark = pytest.mark.slow

CHECKED = """
from taskmill import App

app = App("memory://typing")

@app.task
async def send(to: str, retries: int = 1) -> dict[str, str]:
    return {"to": to}

@app.task(queue="q")
def resize(path: str, width: int) -> str:
    return path

ok = send.enqueue("a@example.com", retries=2)
reveal_type(ok.result())
resize.enqueue("a.png", 64)
resize.options(priority="high").enqueue(path="a.png", width=64)
"""

WRONG = [
    ("send.enqueue(to=42)", 'Argument "to" to "enqueue" of "Task" has incompatible type "int"'),
    ('resize.enqueue("a.png")', 'Missing positional argument "width"'),
    ('resize.enqueue("a.png", 64, colour="red")', 'Unexpected keyword argument "colour"'),
    ("resize.options(delay=5).enqueue(1, 2)", 'incompatible type "int"; expected "str"'),
]


def check(source: str, tmp_path: Path) -> str:
    module = tmp_path / "tasks.py"
    module.write_text(source)
    out, err, _ = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path), str(module)]
    )
    return out + err


def test_correct_calls_type_check_and_results_keep_their_type(tmp_path: Path) -> None:
    out = check(CHECKED, tmp_path)
    assert 'Revealed type is "dict[str, str]"' in out
    assert "Success: no issues found" in out, out


def test_wrong_arguments_are_caught_by_mypy(tmp_path: Path) -> None:
    out = check(CHECKED + "".join(f"{call}\n" for call, _ in WRONG), tmp_path)
    for _, message in WRONG:
        assert message in out, out
    assert f"Found {len(WRONG)} errors" in out, out
