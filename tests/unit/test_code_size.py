"""No module over 600 lines, no function over 80 lines without a reason (issue 17).

Walks every Python module of the project except tests (``tests/``), benchmarks
(``bench/``) and generated protobuf code (``*_pb2*.py``), and fails for

* a module longer than :data:`MAX_MODULE_LINES` physical lines;
* a function or method (nested ones included) longer than
  :data:`MAX_FUNCTION_LINES` lines, counted from its ``def`` line to its last line
  (decorators excluded, docstring included), unless its docstring has a line that
  starts with ``Long because`` giving the reason (the convention documented in
  docs/architecture.md, "Code size").

Violations that other work is removing are listed in :data:`ALLOWED_MODULES` and
:data:`ALLOWED_FUNCTIONS`, each with the area expected to remove it; an entry that
is no longer needed fails the test too, so the lists only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
REASON_PREFIX = "Long because"

# Directories never walked: tests and benchmarks are exempt; the rest is not project code.
SKIPPED_DIRS = frozenset({"tests", "bench", "node_modules", "__pycache__", "build", "shared"})

# Known violations, each with the area expected to remove it (empty: none today).
# Path relative to the repository root -> area expected to remove it.
ALLOWED_MODULES: dict[str, str] = {}

# "path::qualified.name" -> area expected to shorten it (or give a "Long because" reason).
ALLOWED_FUNCTIONS: dict[str, str] = {}


def project_modules() -> Iterator[Path]:
    """Every checked ``.py`` file under the repository root, in a stable order."""
    for path in sorted(REPO.rglob("*.py")):
        parts = path.relative_to(REPO).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in parts[:-1]):
            continue
        if "_pb2" in path.name or any(part.endswith(".egg-info") for part in parts):
            continue
        yield path


def long_functions(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function over the limit with no stated reason."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    if lines > MAX_FUNCTION_LINES and not has_reason(child):
                        yield name, lines
                yield from visit(child, f"{name}.")
            else:
                yield from visit(child, prefix)

    return visit(tree, "")


def has_reason(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when the docstring has a line starting with :data:`REASON_PREFIX`."""
    docstring = ast.get_docstring(function) or ""
    return any(line.strip().startswith(REASON_PREFIX) for line in docstring.splitlines())


def violations() -> tuple[dict[str, int], dict[str, int]]:
    """Oversized modules and unexplained long functions: key -> line count."""
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in project_modules():
        source = path.read_text(encoding="utf-8")
        relative = path.relative_to(REPO).as_posix()
        n_lines = len(source.splitlines())
        if n_lines > MAX_MODULE_LINES:
            modules[relative] = n_lines
        for name, lines in long_functions(ast.parse(source, filename=relative)):
            functions[f"{relative}::{name}"] = lines
    return modules, functions


# Measured once, while the test module is collected: on Python 3.11 ast.parse fails
# ("AST constructor recursion depth mismatch") when another thread parses at the same
# time, which threads left by earlier tests in the session may do (as in
# test_import_rules.py).
VIOLATIONS = violations()


def test_the_walk_sees_the_project() -> None:
    walked = {path.relative_to(REPO).as_posix() for path in project_modules()}
    assert "scheduler/srs/base.py" in walked
    assert "processors/base.py" in walked
    assert not any(p.startswith(("tests/", "bench/")) for p in walked)


def test_no_module_over_the_limit() -> None:
    modules, _ = VIOLATIONS
    new = {path: n for path, n in modules.items() if path not in ALLOWED_MODULES}
    assert not new, f"modules over {MAX_MODULE_LINES} lines: {new}"
    stale = sorted(set(ALLOWED_MODULES) - set(modules))
    assert not stale, f"remove from ALLOWED_MODULES, now within the limit: {stale}"


def test_no_unexplained_long_function() -> None:
    _, functions = VIOLATIONS
    new = {key: n for key, n in functions.items() if key not in ALLOWED_FUNCTIONS}
    assert not new, (
        f"functions over {MAX_FUNCTION_LINES} lines: {new}; shorten them or give the "
        f"reason in a docstring line starting with {REASON_PREFIX!r}"
    )
    stale = sorted(set(ALLOWED_FUNCTIONS) - set(functions))
    assert not stale, f"remove from ALLOWED_FUNCTIONS, now within the limit: {stale}"
