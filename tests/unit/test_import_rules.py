"""The import rules between the top-level packages, checked over every module's AST.

Every ``import`` and ``from ... import`` counts, wherever it sits (inside functions and
``if TYPE_CHECKING:`` blocks too): a lazy import is still a dependency.

* processors/: no processor module imports another (docs/architecture.md, "Processors").
  A module under processors/ is one of three kinds:
  - infrastructure, shared by all processors: :data:`INFRASTRUCTURE`;
  - a processor module: the module defining a class registered in
    ``processors.__main__.PROCESSORS``;
  - a helper: any other module; it serves exactly one processor, whose module imports
    it (directly or through that processor's other helpers).
  A processor module imports no other processor module and no other processor's
  helper; a helper imports no processor module; infrastructure imports neither
  (``processors.__main__``, the registry, imports the processor modules it runs).
* api/ and ml/ never import processors/ (the read side does not reach into workers).
* scheduler/ imports only the standard library, numpy, scipy and scheduler itself.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnstream.settings import REPO_ROOT

# Shared machinery of every processor, not a processor: the runner, its Faust agent and
# app, offsets (rules and rows) and lag, metrics, errors, the shared event types and the
# learner Redis cache.
INFRASTRUCTURE = frozenset(
    {
        "processors",
        "processors.__main__",
        "processors.app",
        "processors.base",
        "processors.events",
        "processors.exceptions",
        "processors.lag",
        "processors.learner_cache",
        "processors.metrics",
        "processors.offset_store",
        "processors.offsets",
        "processors.worker",
    }
)
# Third-party libraries scheduler/ may use besides numpy and scipy: pure computation
# without I/O. py-fsrs is the FSRS reference scheduler that scheduler/srs wraps.
SCHEDULER_LIBRARIES = frozenset({"numpy", "scipy", "fsrs"})


PACKAGES = ("api", "ml", "processors", "scheduler")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    """Every module of ``package`` (a top-level folder), by dotted name."""
    return {module_name(p): p for p in sorted((REPO_ROOT / package).rglob("*.py"))}


# Parsed once, while the test module is collected: on Python 3.11 ast.parse fails
# ("AST constructor recursion depth mismatch") when another thread parses at the same
# time, which threads left by earlier tests in the session may do.
TREES = {
    path: ast.parse(path.read_text(), str(path)) for p in PACKAGES for path in modules(p).values()
}


def imported(path: Path) -> Iterator[str]:
    """The dotted names ``path`` imports: ``a.b`` for ``import a.b``, ``a.b.c`` and
    ``a.b`` for ``from a.b import c`` (c may be a module or a name in a.b)."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(TREES[path]):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def internal_imports(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    mods = modules(package)
    return {name: {i for i in imported(path) if i in mods} - {name} for name, path in mods.items()}


def processor_modules() -> set[str]:
    from processors.__main__ import PROCESSORS

    return {factory.__module__ for factory in PROCESSORS.values()}


def test_no_processor_module_imports_another() -> None:
    graph = internal_imports("processors")
    processors = processor_modules()
    assert processors <= graph.keys()
    helpers = graph.keys() - processors - INFRASTRUCTURE

    def reach(start: str) -> set[str]:
        """The helpers ``start`` imports, directly or through helpers."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            for module in graph[todo.pop()] & helpers:
                if module not in seen:
                    seen.add(module)
                    todo.append(module)
        return seen

    owners = {h: {p for p in processors if h in reach(p)} for h in helpers}
    problems = [
        f"{module} (processor) imports processor {other}"
        for module in sorted(processors)
        for other in sorted(graph[module] & processors)
    ]
    problems += [
        f"{module} (infrastructure) imports {other}"
        for module in sorted(INFRASTRUCTURE - {"processors.__main__"})
        for other in sorted(graph.get(module, set()) - INFRASTRUCTURE)
    ]
    problems += [
        f"{helper} (helper) imports processor {other}"
        for helper in sorted(helpers)
        for other in sorted(graph[helper] & processors)
    ]
    problems += [
        f"{helper} (helper) serves {sorted(owners[helper]) or 'no processor'}, not exactly one"
        for helper in sorted(helpers)
        if len(owners[helper]) != 1
    ]
    assert problems == []


@pytest.mark.parametrize("package", ["api", "ml"])
def test_the_read_side_and_ml_never_import_processors(package: str) -> None:
    offenders = {
        name: sorted(i for i in imported(path) if i.split(".")[0] == "processors")
        for name, path in modules(package).items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_scheduler_imports_only_the_standard_library_numpy_and_scipy() -> None:
    allowed = sys.stdlib_module_names | SCHEDULER_LIBRARIES | {"__future__", "scheduler"}
    offenders = {
        name: sorted({i for i in imported(path) if i.split(".")[0] not in allowed})
        for name, path in modules("scheduler").items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_walk_sees_lazy_imports() -> None:
    # The rules above are only as good as imported(); a lazy import must count.
    probe = REPO_ROOT / "ml" / "serving.py"
    names = set(imported(probe))
    assert {"ml.registry", "ml.registry.LoadedModel", "torch"} <= names
    assert "processors" not in {n.split(".")[0] for n in names}
    lazy = set(imported(REPO_ROOT / "api" / "services" / "predictions.py"))
    assert "ml.prediction_state.reload_needed" in lazy  # imported inside a method
