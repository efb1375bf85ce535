"""Reading content: items, versions and workflow history as the caller may see them, and
search.

Learners, teachers and client apps see only live published versions, without answer
keys (:func:`learner_facing`); authors, reviewers and admins see every status and the
current version."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from api.exceptions import (
    NotFoundError,
)
from api.services import access
from api.services.content.kinds import ContentKind, ContentStatus
from api.services.principals import Principal
from learnstream.db import Queryable


@dataclass(frozen=True, slots=True)
class ContentVersion:
    """One immutable version of an item; ``created_at`` UTC."""

    version: int
    title: str
    skill_ids: tuple[str, ...]
    payload: dict[str, Any]
    note: str
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContentItem:
    """An item with the version the caller sees (current for staff, published for others)."""

    item_id: str
    kind: ContentKind
    status: ContentStatus
    current_version: int
    published_version: int | None
    created_at: datetime
    updated_at: datetime
    shown: ContentVersion


@dataclass(frozen=True, slots=True)
class Transition:
    version: int
    from_status: ContentStatus
    to_status: ContentStatus
    actor_id: str | None
    comment: str
    occurred_at: datetime


def is_staff(principal: Principal) -> bool:
    """Authors, reviewers and admins (MFA) see drafts; everyone else only published content."""
    return access.is_content_staff(principal)


# What a learner (or a client app's key) must not read: the means to answer without
# knowing (issue 12, M4). Placement grades from the stored payload, not from these reads.
LEARNER_HIDDEN_FIELDS: dict[ContentKind, frozenset[str]] = {
    ContentKind.QUESTION: frozenset({"answer_key", "explanation"}),
    ContentKind.CODE_EXERCISE: frozenset({"tests", "reference_solution"}),
}


def learner_facing(item: ContentItem) -> ContentItem:
    """``item`` as non-staff see it: no answer keys, explanations, tests or reference
    solutions, and no staff identity (``created_by``) or editorial ``note``."""
    hidden = LEARNER_HIDDEN_FIELDS.get(item.kind, frozenset())
    payload = {k: v for k, v in item.shown.payload.items() if k not in hidden}
    shown = replace(item.shown, payload=payload, created_by=None, note="")
    return replace(item, shown=shown)


def _as_seen_by(staff: bool, item: ContentItem) -> ContentItem:
    return item if staff else learner_facing(item)


def version_from_row(row: Any) -> ContentVersion:
    """A ``content_versions`` row (payload as JSON text) as a version."""
    return ContentVersion(
        version=row["version"],
        title=row["title"],
        skill_ids=tuple(row["skill_ids"]),
        payload=json.loads(row["payload"]),
        note=row["note"],
        created_by=str(row["created_by"]) if row["created_by"] else None,
        created_at=row["created_at"],
    )


def item_from_row(row: Any) -> ContentItem:
    """A row of ``_ITEM_SELECT`` (item joined with one version) as an item."""
    return ContentItem(
        item_id=row["item_id"],
        kind=ContentKind(row["kind"]),
        status=ContentStatus(row["status"]),
        current_version=row["current_version"],
        published_version=row["published_version"],
        created_at=row["item_created_at"],
        updated_at=row["updated_at"],
        shown=version_from_row(row),
    )


_ITEM_SELECT = """
    SELECT i.item_id, i.kind, i.status, i.current_version, i.published_version,
           i.created_at AS item_created_at, i.updated_at,
           v.version, v.title, v.skill_ids, v.payload, v.note, v.created_by, v.created_at
    FROM content_items i
    JOIN content_versions v ON v.tenant_id = i.tenant_id AND v.item_id = i.item_id
     AND v.version = CASE WHEN $2 THEN i.current_version ELSE i.published_version END
"""
# Visible to non-staff: has a published version and is not archived.
_LIVE = "($2 OR (i.published_version IS NOT NULL AND i.status <> 'archived'))"


async def get_item(db: Queryable, principal: Principal, *, item_id: str) -> ContentItem:
    """The item as the caller may see it; NotFoundError otherwise (drafts hide from learners).

    Non-staff get :func:`learner_facing` items: no answers, no staff ids.
    """
    staff = is_staff(principal)
    row = await db.fetchrow(
        f"{_ITEM_SELECT} WHERE i.tenant_id = $1 AND i.item_id = $3 AND {_LIVE}",
        principal.tenant_id,
        staff,
        item_id,
    )
    if row is None:
        raise NotFoundError(f"no content item {item_id}", field="path.item_id", reason="not found")
    return _as_seen_by(staff, item_from_row(row))


async def versions(db: Queryable, principal: Principal, *, item_id: str) -> list[ContentVersion]:
    """Every version of an item, oldest first (staff only: drafts are in there)."""
    await get_item(db, principal, item_id=item_id)
    rows = await db.fetch(
        """
        SELECT version, title, skill_ids, payload, note, created_by, created_at
        FROM content_versions WHERE tenant_id = $1 AND item_id = $2 ORDER BY version
        """,
        principal.tenant_id,
        item_id,
    )
    return [version_from_row(r) for r in rows]


async def transitions(db: Queryable, principal: Principal, *, item_id: str) -> list[Transition]:
    """The item's workflow history, oldest first."""
    await get_item(db, principal, item_id=item_id)
    rows = await db.fetch(
        """
        SELECT version, from_status, to_status, actor_id, comment, occurred_at
        FROM content_transitions WHERE tenant_id = $1 AND item_id = $2 ORDER BY id
        """,
        principal.tenant_id,
        item_id,
    )
    return [
        Transition(
            r["version"],
            ContentStatus(r["from_status"]),
            ContentStatus(r["to_status"]),
            str(r["actor_id"]) if r["actor_id"] else None,
            r["comment"],
            r["occurred_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Filters of a content search; ``text`` is web-search syntax ("a b", "-c", "\\"d e\\"")."""

    text: str | None = None
    skill_id: str | None = None
    kind: ContentKind | None = None
    status: ContentStatus | None = None
    offset: int = 0
    limit: int = 50


async def search(db: Queryable, principal: Principal, query: SearchQuery) -> list[ContentItem]:
    """Items matching every given filter, best text match first (then by id).

    Staff search current versions in any status; everyone else searches the live
    published versions only, so draft wording never surfaces to learners, and gets
    :func:`learner_facing` items.
    """
    staff = is_staff(principal)
    rows = await db.fetch(
        f"""
        {_ITEM_SELECT}
        WHERE i.tenant_id = $1 AND {_LIVE}
          AND ($3::text IS NULL OR v.search_vector @@ websearch_to_tsquery('english', $3))
          AND ($4::text IS NULL OR $4 = ANY(v.skill_ids))
          AND ($5::text IS NULL OR i.kind = $5)
          AND ($6::text IS NULL OR i.status = $6)
        ORDER BY CASE WHEN $3::text IS NULL THEN 0
                      ELSE ts_rank(v.search_vector, websearch_to_tsquery('english', $3)) END DESC,
                 i.item_id
        OFFSET $7 LIMIT $8
        """,
        principal.tenant_id,
        staff,
        query.text,
        query.skill_id,
        query.kind.value if query.kind else None,
        query.status.value if query.status else None,
        query.offset,
        query.limit,
    )
    return [_as_seen_by(staff, item_from_row(r)) for r in rows]


def actor_id_of(principal: Principal) -> str | None:
    """The account that acts, or None for a client app's key (no account)."""
    return principal.subject_id if not principal.is_client_app else None
