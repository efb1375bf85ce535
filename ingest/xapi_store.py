"""PostgreSQL side of xAPI statements in: a tenant's activity mapping and the statements kept.

Tables from infra/migrations/0100_xapi.up.sql. Every statement the endpoint takes is
kept in ``xapi_statements`` under its id, with a hash of its content: a resend of the
same statement is a no-op, a different statement under a used id is a conflict (409).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from ingest.xapi import ActivityMapping, ParsedStatement
from learnstream.db import Queryable


class UnmappedPolicy(StrEnum):
    """What a tenant does with statements that describe no attempt it can map."""

    STORE = "store"  # keep them in xapi_statements (answer 200)
    REFUSE = "refuse"  # answer 400 for the batch, naming them


async def activity_mappings(
    db: Queryable, *, tenant_id: str, activity_ids: Iterable[str]
) -> dict[str, ActivityMapping]:
    """The mappings of ``activity_ids`` that ``tenant_id`` set; absent ids are unmapped."""
    ids = sorted({a for a in activity_ids if a})
    if not ids:
        return {}
    rows = await db.fetch(
        "SELECT activity_id, item_id, item_version, skill_ids FROM xapi_activities "
        "WHERE tenant_id = $1 AND activity_id = ANY($2::text[])",
        tenant_id,
        ids,
    )
    return {
        r["activity_id"]: ActivityMapping(r["item_id"], r["item_version"], tuple(r["skill_ids"]))
        for r in rows
    }


async def unmapped_policy(db: Queryable, *, tenant_id: str) -> UnmappedPolicy:
    """The tenant's policy for unmapped statements; ``store`` when it set none."""
    value = await db.fetchval("SELECT unmapped FROM xapi_settings WHERE tenant_id = $1", tenant_id)
    return UnmappedPolicy(value) if value else UnmappedPolicy.STORE


@dataclass(frozen=True, slots=True)
class Keeping:
    """One statement to keep, and whether it is published as an AttemptEvent."""

    parsed: ParsedStatement
    attempt: bool


async def _keep_or_raise(
    db: asyncpg.Pool, *, tenant_id: str, statements: Sequence[Keeping]
) -> None:
    async with db.acquire() as conn, conn.transaction():
        inserted = {
            r["statement_id"]
            for r in await conn.fetch(
                """
                INSERT INTO xapi_statements (tenant_id, statement_id, user_id, verb_id,
                    activity_id, content_sha256, statement, attempt)
                SELECT $1, s.statement_id, s.user_id, s.verb_id, s.activity_id,
                       s.content_sha256, s.statement::jsonb, s.attempt
                FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[],
                            $7::text[], $8::boolean[])
                     AS s(statement_id, user_id, verb_id, activity_id, content_sha256,
                          statement, attempt)
                ON CONFLICT (tenant_id, statement_id) DO NOTHING
                RETURNING statement_id::text
                """,
                tenant_id,
                [k.parsed.statement_id for k in statements],
                [k.parsed.learner_id for k in statements],
                [k.parsed.verb_id for k in statements],
                [k.parsed.activity_id for k in statements],
                [k.parsed.content_sha256 for k in statements],
                [json.dumps(k.parsed.statement) for k in statements],
                [k.attempt for k in statements],
            )
        }
        earlier = [k.parsed for k in statements if k.parsed.statement_id not in inserted]
        if not earlier:
            return
        stored = {
            r["statement_id"]: r["content_sha256"]
            for r in await conn.fetch(
                "SELECT statement_id::text, content_sha256 FROM xapi_statements "
                "WHERE tenant_id = $1 AND statement_id = ANY($2::uuid[])",
                tenant_id,
                [p.statement_id for p in earlier],
            )
        }
        conflicts = [
            p.statement_id for p in earlier if stored.get(p.statement_id) != p.content_sha256
        ]
        if conflicts:
            raise _Conflict(conflicts)  # rolls the transaction back


class _Conflict(Exception):
    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.ids = ids


async def keep_statements(
    db: Queryable, *, tenant_id: str, statements: Sequence[Keeping]
) -> list[str]:
    """Store ``statements`` in one transaction; the ids whose content conflicts.

    When any conflicts, nothing is stored and the caller answers 409. A statement
    stored before with the same content is left as it was (a resend).
    """
    try:
        await _keep_or_raise(db, tenant_id=tenant_id, statements=statements)
    except _Conflict as conflict:
        return conflict.ids
    return []
