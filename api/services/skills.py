"""Skills and their prerequisite graph.

Rule: the graph stays acyclic. An edit that would close a cycle is refused and
the cycle is named (``fractions -> ratios -> fractions``) using the scheduler's
own cycle finder, so the CMS and the learning-path code agree on what a cycle is.
Edits of one tenant's graph are serialised by an advisory lock, so two edits
that are each fine alone cannot together close a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.views import concept_graph
from scheduler.exceptions import PrerequisiteCycleError
from scheduler.path import find_cycle, topological_order

SKILL_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


@dataclass(frozen=True, slots=True)
class Skill:
    """A skill with the ids of the skills it requires (sorted); times UTC."""

    skill_id: str
    name: str
    description: str
    prerequisites: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


def cycle_after_edit(
    requires: Mapping[str, Iterable[str]], *, skill_id: str, prerequisites: Iterable[str]
) -> list[str] | None:
    """The cycle the graph would have if ``skill_id`` required exactly ``prerequisites``.

    ``requires`` maps each skill to its prerequisites as stored now. Returns the
    cycle as ``[a, b, ..., a]`` (each a prerequisite of the next), or None.
    """
    graph = {skill: sorted(set(required)) for skill, required in requires.items()}
    graph[skill_id] = sorted(set(prerequisites))
    return find_cycle(graph)


async def _lock_graph(conn: Queryable, tenant_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('skills:' || $1))", tenant_id)


async def _check_prerequisites(
    conn: Queryable, tenant_id: str, skill_id: str, prerequisites: list[str]
) -> None:
    if skill_id in prerequisites:
        raise InvalidInputError(
            f"{skill_id} cannot require itself",
            field="body.prerequisites",
            reason=f"would close a cycle: {skill_id} -> {skill_id}",
        )
    known = {
        row["skill_id"]
        for row in await conn.fetch(
            "SELECT skill_id FROM skills WHERE tenant_id = $1 AND skill_id = ANY($2::text[])",
            tenant_id,
            prerequisites,
        )
    }
    unknown = sorted(set(prerequisites) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown prerequisite skills: {', '.join(unknown)}",
            field="body.prerequisites",
            reason=f"unknown skills: {', '.join(unknown)}",
        )
    cycle = cycle_after_edit(
        await concept_graph.load_requires(conn, tenant_id),
        skill_id=skill_id,
        prerequisites=prerequisites,
    )
    if cycle is not None:
        path = " -> ".join(cycle)
        raise InvalidInputError(
            f"prerequisites would close a cycle: {path} (each requires the previous one)",
            field="body.prerequisites",
            reason=f"would close a cycle: {path}",
        )


async def _write_prerequisites(
    conn: Queryable, tenant_id: str, skill_id: str, prerequisites: list[str]
) -> None:
    await conn.execute(
        "DELETE FROM skill_prerequisites WHERE tenant_id = $1 AND skill_id = $2",
        tenant_id,
        skill_id,
    )
    await conn.executemany(
        """
        INSERT INTO skill_prerequisites (tenant_id, skill_id, prerequisite_id)
        VALUES ($1, $2, $3)
        """,
        [(tenant_id, skill_id, p) for p in sorted(set(prerequisites))],
    )


async def create_skill(
    db: Queryable,
    *,
    tenant_id: str,
    skill_id: str,
    name: str,
    description: str,
    prerequisites: list[str],
    now: datetime,
) -> Skill:
    """A new skill; ConflictError if the id exists, InvalidInputError on a cycle/unknown id."""
    async with transaction(db) as conn:
        await _lock_graph(conn, tenant_id)
        try:
            await conn.execute(
                """
                INSERT INTO skills (tenant_id, skill_id, name, description, created_at,
                                    updated_at)
                VALUES ($1, $2, $3, $4, $5, $5)
                """,
                tenant_id,
                skill_id,
                name,
                description,
                now,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(
                f"skill {skill_id} exists", field="body.skill_id", reason="already exists"
            ) from exc
        await _check_prerequisites(conn, tenant_id, skill_id, prerequisites)
        await _write_prerequisites(conn, tenant_id, skill_id, prerequisites)
        return await require_skill(conn, tenant_id=tenant_id, skill_id=skill_id)


async def update_skill(
    db: Queryable,
    *,
    tenant_id: str,
    skill_id: str,
    name: str,
    description: str,
    prerequisites: list[str],
    now: datetime,
) -> Skill:
    """Replace name, description and prerequisites of an existing skill."""
    async with transaction(db) as conn:
        await _lock_graph(conn, tenant_id)
        status = await conn.execute(
            """
            UPDATE skills SET name = $3, description = $4, updated_at = $5
            WHERE tenant_id = $1 AND skill_id = $2
            """,
            tenant_id,
            skill_id,
            name,
            description,
            now,
        )
        if status != "UPDATE 1":
            raise _not_found(skill_id)
        await _check_prerequisites(conn, tenant_id, skill_id, prerequisites)
        await _write_prerequisites(conn, tenant_id, skill_id, prerequisites)
        return await require_skill(conn, tenant_id=tenant_id, skill_id=skill_id)


async def delete_skill(db: Queryable, *, tenant_id: str, skill_id: str) -> None:
    """Delete a skill no other skill requires and no current content version is tagged with."""
    async with transaction(db) as conn:
        await _lock_graph(conn, tenant_id)
        dependants = await conn.fetch(
            """
            SELECT skill_id FROM skill_prerequisites
            WHERE tenant_id = $1 AND prerequisite_id = $2 ORDER BY skill_id
            """,
            tenant_id,
            skill_id,
        )
        if dependants:
            names = ", ".join(r["skill_id"] for r in dependants)
            raise ConflictError(
                f"{skill_id} is a prerequisite of {names}",
                field="path.skill_id",
                reason=f"required by {names}",
            )
        tagged = await conn.fetchval(
            """
            SELECT count(*) FROM content_items i JOIN content_versions v
              ON v.tenant_id = i.tenant_id AND v.item_id = i.item_id
             AND v.version = i.current_version
            WHERE i.tenant_id = $1 AND $2 = ANY(v.skill_ids)
            """,
            tenant_id,
            skill_id,
        )
        if tagged:
            raise ConflictError(
                f"{tagged} content items are tagged with {skill_id}",
                field="path.skill_id",
                reason="tagged on content",
            )
        status = await conn.execute(
            "DELETE FROM skills WHERE tenant_id = $1 AND skill_id = $2", tenant_id, skill_id
        )
        if status != "DELETE 1":
            raise _not_found(skill_id)


async def get_skill(db: Queryable, *, tenant_id: str, skill_id: str) -> Skill | None:
    """One skill with its prerequisites, or None."""
    found = await list_skills(db, tenant_id=tenant_id, skill_ids=[skill_id])
    return found[0] if found else None


async def require_skill(db: Queryable, *, tenant_id: str, skill_id: str) -> Skill:
    """Like get_skill, NotFoundError naming ``path.skill_id`` when absent."""
    found = await get_skill(db, tenant_id=tenant_id, skill_id=skill_id)
    if found is None:
        raise _not_found(skill_id)
    return found


async def list_skills(
    db: Queryable, *, tenant_id: str, skill_ids: list[str] | None = None
) -> list[Skill]:
    """Skills of the tenant (or just ``skill_ids``), ordered by id."""
    rows = await db.fetch(
        """
        SELECT s.skill_id, s.name, s.description, s.created_at, s.updated_at,
               coalesce(array_agg(p.prerequisite_id ORDER BY p.prerequisite_id)
                        FILTER (WHERE p.prerequisite_id IS NOT NULL), '{}') AS prerequisites
        FROM skills s LEFT JOIN skill_prerequisites p
          ON p.tenant_id = s.tenant_id AND p.skill_id = s.skill_id
        WHERE s.tenant_id = $1 AND ($2::text[] IS NULL OR s.skill_id = ANY($2::text[]))
        GROUP BY s.tenant_id, s.skill_id ORDER BY s.skill_id
        """,
        tenant_id,
        skill_ids,
    )
    return [
        Skill(
            skill_id=row["skill_id"],
            name=row["name"],
            description=row["description"],
            prerequisites=tuple(row["prerequisites"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]


async def learning_order(db: Queryable, *, tenant_id: str) -> list[str]:
    """Every skill of the tenant, prerequisites first (ties by id)."""
    skills = await list_skills(db, tenant_id=tenant_id)
    try:
        return topological_order(
            [s.skill_id for s in skills], {s.skill_id: s.prerequisites for s in skills}
        )
    except PrerequisiteCycleError as exc:  # only if the table was edited around the API
        raise ConflictError(str(exc), field="skills", reason="stored graph has a cycle") from exc


async def unknown_skill_ids(
    db: Queryable, *, tenant_id: str, skill_ids: Iterable[str]
) -> list[str]:
    """Those of ``skill_ids`` the tenant has no skill for, sorted."""
    wanted = sorted(set(skill_ids))
    if not wanted:
        return []
    rows = await db.fetch(
        "SELECT skill_id FROM skills WHERE tenant_id = $1 AND skill_id = ANY($2::text[])",
        tenant_id,
        wanted,
    )
    return sorted(set(wanted) - {r["skill_id"] for r in rows})


def _not_found(skill_id: str) -> NotFoundError:
    return NotFoundError(
        f"no skill {skill_id} in this tenant", field="path.skill_id", reason="not found"
    )
