"""Request dependencies of both HTTP services run on the event loop, not in a threadpool.

FastAPI runs a plain ``def`` dependency in Starlette's threadpool: a thread hop (queue,
condition variable, GIL hand-over) per dependency per request, for what is usually an
attribute read of ``app.state``. py-spy over ingest at one event per request showed
~6 % of its samples in that machinery with four such dependencies.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi import params

import api.routes
import ingest.routes

MODULES = [
    importlib.import_module(name)
    for name in (
        "api.deps",
        "ingest.deps",
        *(f"api.routes.{m.name}" for m in pkgutil.iter_modules(api.routes.__path__)),
        *(f"ingest.routes.{m.name}" for m in pkgutil.iter_modules(ingest.routes.__path__)),
    )
]


def _dependencies(module: ModuleType) -> Iterator[tuple[str, Any]]:
    """(alias, callable) of every ``Annotated[..., Depends(f)]`` alias the module defines."""
    for name, value in vars(module).items():
        if typing.get_origin(value) is not typing.Annotated:
            continue
        for marker in value.__metadata__:
            if isinstance(marker, params.Depends) and marker.dependency is not None:
                yield name, marker.dependency


def _runs_on_the_loop(dependency: Any) -> bool:
    # A security scheme (HTTPBearer ...) is an object with an async __call__.
    return inspect.iscoroutinefunction(dependency) or inspect.iscoroutinefunction(
        getattr(dependency, "__call__", None)  # noqa: B004 (the method, not callable())
    )


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_dependency_alias_is_a_coroutine(module: ModuleType) -> None:
    sync = [name for name, dependency in _dependencies(module) if not _runs_on_the_loop(dependency)]
    assert sync == [], f"{module.__name__}: make these async def: {sync}"


def test_the_check_finds_the_dependency_aliases() -> None:
    # The two dependency modules define their aliases this way; an empty scan would pass.
    for name in ("api.deps", "ingest.deps"):
        module = importlib.import_module(name)
        assert len(dict(_dependencies(module))) >= 4, name
