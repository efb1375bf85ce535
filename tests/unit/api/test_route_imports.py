"""Route modules stay independent: none imports another module of ``api/routes/``.

Shared request and response bodies live in ``api/schemas/``; a route that needs another
area's schema imports it from there, so routes never become a library for each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROUTES = Path(__file__).resolve().parents[3] / "api" / "routes"


def _imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level:  # relative import inside api/routes/
                found.add("api.routes." + node.module)
            found.add(node.module)
            # ``from api.routes import learners`` imports a route module too.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_route_module_imports_another_route_module() -> None:
    modules = sorted(p for p in ROUTES.glob("*.py") if p.name != "__init__.py")
    assert len(modules) > 10
    offenders = {
        path.name: sorted(
            m
            for m in _imported_modules(ast.parse(path.read_text()))
            if m.startswith("api.routes.") and m != f"api.routes.{path.stem}"
        )
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}
