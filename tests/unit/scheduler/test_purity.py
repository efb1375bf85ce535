"""``scheduler/`` does no file I/O: callers (ml/, bench/, infra/) read files and pass text.

Its imports (numpy, scipy, the standard library) are checked in
``tests/unit/test_import_rules.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCHEDULER = Path(__file__).resolve().parents[3] / "scheduler"
# Calls that read or write files; the callers (ml/, bench/, infra/) do the reading.
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes"}
FILES = sorted(SCHEDULER.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCHEDULER)))
def test_does_no_file_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }
    assert not calls & IO_CALLS, f"{path.name} calls {sorted(calls & IO_CALLS)}"
