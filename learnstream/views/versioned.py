"""Optimistic-version writes of a view's rows, shared by every versioned view.

Every row of ``skill_mastery``, ``learner_ability`` and ``review_schedule`` has a
``version``. A writer reads the rows it changes ``FOR UPDATE`` with their versions
and writes them back with ``WHERE version = <read version>`` (a row read as absent
with an insert that must not meet an existing row). A writer that bypassed this
discipline and changed a row in between makes the written-row count come up short;
what to do then (roll back and retry) is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from learnstream.db import Queryable

K = TypeVar("K", bound=tuple[Any, ...])


@dataclass(frozen=True, slots=True)
class VersionedView:
    """How to write one view's rows with optimistic version checks (SQL built once)."""

    table: str
    keys: tuple[tuple[str, str], ...]  # (column, SQL type of the parameter array)
    values: tuple[tuple[str, str], ...]
    # column -> SQL type it is cast to from its parameter type (e.g. text -> float8[]).
    casts: Mapping[str, str] = field(default_factory=dict)

    def write_sql(self) -> str:
        """One statement: update rows at their read version, insert new rows; counts both.

        Parameters are the key columns, the value columns, then ``expected_version``
        (NULL for a row read as absent), each as an array.
        """
        columns = [*self.keys, *self.values, ("expected_version", "bigint")]
        arrays = ", ".join(f"${n}::{sql_type}[]" for n, (_, sql_type) in enumerate(columns, 1))
        names = ", ".join(name for name, _ in columns)
        key_names = [name for name, _ in self.keys]
        value_names = [name for name, _ in self.values]
        selected = ", ".join(
            f"{name}::{self.casts[name]} AS {name}" if name in self.casts else name
            for name, _ in columns
        )
        matches = " AND ".join(f"t.{k} = r.{k}" for k in key_names)
        updates = ", ".join(f"{v} = r.{v}" for v in value_names)
        inserted = ", ".join([*key_names, *value_names])
        return f"""
            WITH r AS (SELECT {selected} FROM unnest({arrays}) AS given({names})),
            updated AS (
                UPDATE {self.table} AS t
                SET {updates}, updated_at = now(), version = t.version + 1
                FROM r WHERE {matches} AND t.version = r.expected_version
                RETURNING 1
            ),
            inserted AS (
                INSERT INTO {self.table} ({inserted}, updated_at, version)
                SELECT {inserted}, now(), 1 FROM r WHERE r.expected_version IS NULL
                ON CONFLICT ({", ".join(key_names)}) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
        """

    async def write(
        self,
        conn: Queryable,
        rows: Sequence[tuple[Any, ...]],
        expected_versions: Sequence[int | None],
    ) -> int:
        """Write ``rows`` (key then value columns); returns how many were *not* written.

        A row is not written when it moved since it was read at its expected version
        (or, read as absent, was created meanwhile): 0 means every write landed.
        """
        if not rows:
            return 0
        columns = [list(column) for column in zip(*rows, strict=True)]
        written = await conn.fetchval(self.write_sql(), *columns, list(expected_versions))
        return len(rows) - int(written)


def by_key(wanted: Sequence[K]) -> dict[tuple[Any, ...], K]:
    """Each wanted key by its plain tuple, to file rows under the caller's key objects."""
    return {tuple(key): key for key in wanted}
