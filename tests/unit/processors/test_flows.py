"""Each processor's declared Flow (reads, writes, emits) against docs/architecture.md.

The table between the ``processor-flows`` markers of docs/architecture.md must be
exactly :func:`flow_table` of the registry; when a declaration changes, the failure
prints the table to paste. Declared tables must exist in the migrations.
"""

from __future__ import annotations

import re
from typing import Any

from learnstream.settings import REPO_ROOT
from processors.__main__ import PROCESSORS
from processors.base import Flow

DOC = REPO_ROOT / "docs" / "architecture.md"
START, END = "<!-- processor-flows:start -->", "<!-- processor-flows:end -->"
LAKE_PREFIX = "lake:"


def declared() -> dict[str, Flow]:
    flows: dict[str, Flow] = {}
    for name, factory in PROCESSORS.items():
        flow = getattr(factory, "flow", None)
        assert isinstance(flow, Flow), f"{name} declares no Flow"
        flows[name] = flow
    return flows


def flow_table(flows: dict[str, Flow]) -> str:
    """The markdown table of every processor's flow, in registry order."""

    def names(items: tuple[Any, ...]) -> str:
        return ", ".join(f"`{item}`" for item in items) or "—"

    lines = [
        "| processor | reads (topics) | writes (tables) | emits (topics) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {names(f.reads)} | {names(f.writes)} | {names(f.emits)} |"
        for name, f in flows.items()
    ]
    return "\n".join(lines)


def test_the_architecture_doc_shows_the_declared_flows() -> None:
    text = DOC.read_text()
    assert START in text, f"{DOC} lacks the {START} marker"
    assert END in text, f"{DOC} lacks the {END} marker"
    shown = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = flow_table(declared())
    assert shown == expected, f"paste into docs/architecture.md:\n{expected}"


def test_sources_are_the_declared_reads_and_names_match_the_registry() -> None:
    for name, factory in PROCESSORS.items():
        flow = declared()[name]
        assert getattr(factory, "sources", None) == flow.reads, name
        assert flow.reads, name
        class_name = getattr(factory, "name", name)
        assert not isinstance(class_name, str) or class_name == name


def test_declared_tables_exist_in_the_migrations() -> None:
    created = {
        match.group(1)
        for path in (REPO_ROOT / "infra" / "migrations").glob("*.up.sql")
        for match in re.finditer(
            r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", path.read_text(), re.IGNORECASE
        )
    }
    declared_tables = {
        table
        for flow in declared().values()
        for table in flow.writes
        if not table.startswith(LAKE_PREFIX)
    }
    assert declared_tables - created == set()
