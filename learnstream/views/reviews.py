"""``review_schedule``: each learner's spaced-repetition state and due time per item.

Written by the learner-state processor (one review per attempt, :mod:`scheduler.srs`);
read by recommendations, notifications, the dashboards and the hot cache. ``state``
is the scheduler's state dict as JSONB (its shape is the algorithm's). Rows carry a
``version`` (:mod:`.versioned`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from learnstream.db import Queryable
from learnstream.views.versioned import VersionedView


class ReviewKey(NamedTuple):
    """One learner's one item."""

    tenant_id: str
    user_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class ReviewState:
    """One row of ``review_schedule``."""

    algorithm: str  # "fsrs" or "sm2"
    state: dict[str, Any]  # the scheduler's state dict (JSONB)
    due_at: datetime  # UTC
    reviews: int
    last_event_id: str
    last_reviewed_at: datetime  # UTC


REVIEW_VIEW = VersionedView(
    "review_schedule",
    keys=(("tenant_id", "text"), ("user_id", "text"), ("item_id", "text")),
    values=(
        ("algorithm", "text"),
        ("state", "jsonb"),
        ("due_at", "timestamptz"),
        ("reviews", "int"),
        ("last_event_id", "uuid"),
        ("last_reviewed_at", "timestamptz"),
    ),
)

_LOCK_REVIEWS = """
    SELECT r.tenant_id, r.user_id, r.item_id, r.algorithm, r.state, r.due_at, r.reviews,
           r.last_event_id, r.last_reviewed_at, r.version
    FROM review_schedule AS r
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, item_id)
      USING (tenant_id, user_id, item_id)
    ORDER BY r.tenant_id, r.user_id, r.item_id
    FOR UPDATE OF r
"""


async def lock_reviews(
    conn: Queryable, keys: Sequence[ReviewKey]
) -> tuple[dict[ReviewKey, ReviewState], dict[ReviewKey, int]]:
    """Read (``FOR UPDATE``) the stored rows of ``keys``; their states and versions."""
    states: dict[ReviewKey, ReviewState] = {}
    versions: dict[ReviewKey, int] = {}
    wanted = sorted(set(keys))
    for row in await conn.fetch(_LOCK_REVIEWS, *zip(*wanted, strict=True)) if wanted else []:
        key = ReviewKey(row["tenant_id"], row["user_id"], row["item_id"])
        states[key] = ReviewState(
            algorithm=row["algorithm"],
            state=json.loads(row["state"]),
            due_at=row["due_at"],
            reviews=row["reviews"],
            last_event_id=str(row["last_event_id"]),
            last_reviewed_at=row["last_reviewed_at"],
        )
        versions[key] = int(row["version"])
    return states, versions


def review_row(key: ReviewKey, state: ReviewState) -> tuple[object, ...]:
    """``state`` as the key and value columns of :data:`REVIEW_VIEW` (state as JSON text)."""
    return (
        *key,
        state.algorithm,
        json.dumps(state.state, sort_keys=True),
        state.due_at,
        state.reviews,
        state.last_event_id,
        state.last_reviewed_at,
    )


_TENANT_SCHEDULERS = """
    SELECT tenant_id, scheduler FROM tenant_settings WHERE tenant_id = ANY($1::text[])
"""


async def load_schedulers(conn: Queryable, tenants: Sequence[str]) -> dict[str, str]:
    """The spaced-repetition algorithm (``fsrs`` or ``sm2``) ``tenant_settings`` names per
    tenant; tenants without a row are absent (the default applies)."""
    rows = await conn.fetch(_TENANT_SCHEDULERS, list(tenants))
    return {row["tenant_id"]: row["scheduler"] for row in rows}


_DUE_ITEMS = """
    SELECT r.tenant_id, r.user_id, r.item_id, r.due_at
    FROM review_schedule AS r
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON r.tenant_id = wanted.tenant_id AND r.user_id = wanted.user_id
"""


async def due_items(
    db: Queryable, learners: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, datetime]]:
    """Every scheduled item's ``due_at`` (UTC) per (tenant_id, user_id) of ``learners``;
    learners with nothing scheduled are absent."""
    due: dict[tuple[str, str], dict[str, datetime]] = {}
    rows = await db.fetch(_DUE_ITEMS, [t for t, _ in learners], [u for _, u in learners])
    for r in rows:
        due.setdefault((r["tenant_id"], r["user_id"]), {})[r["item_id"]] = r["due_at"]
    return due


# The learner cache's read of current rows (with their versions), keyed by
# (tenant_id, user_id, item_id) arrays.
CACHE_READ = """
    SELECT r.tenant_id, r.user_id, r.item_id, r.algorithm, r.due_at, r.reviews, r.version
    FROM review_schedule AS r
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, item_id)
      USING (tenant_id, user_id, item_id)
"""
_DUE_COUNTS = """
    SELECT count(*) FILTER (WHERE due_at <= $3) AS due_now,
           count(*) FILTER (WHERE due_at > $3 AND due_at <= $4) AS due_soon
    FROM review_schedule WHERE tenant_id = $1 AND user_id = $2
"""
_DUE_LIST = """
    SELECT r.item_id, p.title, r.due_at, r.reviews
    FROM review_schedule r
    LEFT JOIN published_content p ON p.tenant_id = r.tenant_id AND p.item_id = r.item_id
    WHERE r.tenant_id = $1 AND r.user_id = $2 AND r.due_at <= $3
    ORDER BY r.due_at, r.item_id LIMIT $4
"""


async def due_counts(
    db: Queryable, *, tenant_id: str, user_id: str, now: datetime, soon_until: datetime
) -> tuple[int, int]:
    """(items due by ``now``, items due after ``now`` up to ``soon_until``); UTC."""
    row = await db.fetchrow(_DUE_COUNTS, tenant_id, user_id, now, soon_until)
    return int(row["due_now"]), int(row["due_soon"])


async def due_list(
    db: Queryable, *, tenant_id: str, user_id: str, now: datetime, limit: int
) -> list[Any]:
    """Up to ``limit`` items due by ``now``, oldest first: item_id, title (the published
    item's, None if unpublished), due_at (UTC), reviews."""
    return await db.fetch(_DUE_LIST, tenant_id, user_id, now, limit)
