"""The CMS side of xAPI statements in: which item and skills a tenant's activity ids stand for.

Ingest reads these (ingest/xapi_store.py) for every statement batch; a statement about
an activity with no row here is stored or refused as ``xapi_settings.unmapped`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from api.exceptions import InvalidInputError
from learnstream.db import Queryable

UNMAPPED_POLICIES = ("store", "refuse")


@dataclass(frozen=True, slots=True)
class ActivityMapping:
    """One activity id (an IRI) and the item and skills an answer to it counts for."""

    activity_id: str
    item_id: str
    item_version: int  # 0: unknown
    skill_ids: tuple[str, ...]
    updated_at: datetime | None = None


async def list_mappings(db: Queryable, *, tenant_id: str) -> list[ActivityMapping]:
    """Every mapping of ``tenant_id``, by activity id."""
    rows = await db.fetch(
        "SELECT activity_id, item_id, item_version, skill_ids, updated_at FROM xapi_activities "
        "WHERE tenant_id = $1 ORDER BY activity_id",
        tenant_id,
    )
    return [
        ActivityMapping(
            r["activity_id"],
            r["item_id"],
            r["item_version"],
            tuple(r["skill_ids"]),
            r["updated_at"],
        )
        for r in rows
    ]


async def put_mappings(
    db: Queryable, *, tenant_id: str, mappings: Sequence[ActivityMapping], now: datetime
) -> None:
    """Create or replace ``mappings``; 422 naming a skill the tenant does not have."""
    wanted = sorted({s for m in mappings for s in m.skill_ids})
    known = {
        r["skill_id"]
        for r in await db.fetch(
            "SELECT skill_id FROM skills WHERE tenant_id = $1 AND skill_id = ANY($2::text[])",
            tenant_id,
            wanted,
        )
    }
    missing = [s for s in wanted if s not in known]
    if missing:
        raise InvalidInputError(
            f"no skill {missing[0]!r} in this tenant; create it first (POST /v1/skills)",
            field="body.activities[].skill_ids",
            reason="unknown skill",
        )
    await db.executemany(
        """
        INSERT INTO xapi_activities (tenant_id, activity_id, item_id, item_version, skill_ids,
                                     updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, activity_id) DO UPDATE SET item_id = EXCLUDED.item_id,
            item_version = EXCLUDED.item_version, skill_ids = EXCLUDED.skill_ids,
            updated_at = EXCLUDED.updated_at
        """,
        [
            (tenant_id, m.activity_id, m.item_id, m.item_version, list(m.skill_ids), now)
            for m in mappings
        ],
    )


async def delete_mapping(db: Queryable, *, tenant_id: str, activity_id: str) -> bool:
    """Remove one mapping; False if there was none."""
    status: str = await db.execute(
        "DELETE FROM xapi_activities WHERE tenant_id = $1 AND activity_id = $2",
        tenant_id,
        activity_id,
    )
    return status != "DELETE 0"


async def unmapped_policy(db: Queryable, *, tenant_id: str) -> str:
    """``store`` or ``refuse``: what ingest does with statements it maps to no attempt."""
    value: str | None = await db.fetchval(
        "SELECT unmapped FROM xapi_settings WHERE tenant_id = $1", tenant_id
    )
    return value or "store"


async def set_unmapped_policy(db: Queryable, *, tenant_id: str, policy: str, now: datetime) -> None:
    if policy not in UNMAPPED_POLICIES:
        raise InvalidInputError(
            f"unmapped is one of {', '.join(UNMAPPED_POLICIES)}",
            field="body.unmapped",
            reason="unknown policy",
        )
    await db.execute(
        """
        INSERT INTO xapi_settings (tenant_id, unmapped, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (tenant_id) DO UPDATE SET unmapped = EXCLUDED.unmapped,
            updated_at = EXCLUDED.updated_at
        """,
        tenant_id,
        policy,
        now,
    )
