"""``scheduler/`` is a pure library: numpy, scipy and the standard library only, no file I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SCHEDULER = Path(__file__).resolve().parents[3] / "scheduler"
# fsrs: the FSRS reference implementation that scheduler/srs wraps (pure Python, no
# I/O); a known exception to "numpy/scipy only" until srs/ is rewritten without it.
ALLOWED = {"numpy", "scipy", "scheduler", "fsrs", *sys.stdlib_module_names}
# Calls that read or write files; the callers (ml/, bench/, infra/) do the reading.
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes"}
FILES = sorted(SCHEDULER.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCHEDULER)))
def test_imports_only_numpy_scipy_and_the_standard_library(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED, f"{path.name} imports {sorted(imported - ALLOWED)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCHEDULER)))
def test_does_no_file_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }
    assert not calls & IO_CALLS, f"{path.name} calls {sorted(calls & IO_CALLS)}"
