"""Writing content: create, edit, roll back and move items through the workflow.

Every edit, rollback included, appends a new version; versions never change. An edit of
an item under review or approved sends it back to draft (what was approved is not what
is there now); an edit of a published item leaves the published version live until a
newer one is published."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from api.exceptions import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from api.services import access
from api.services import skills as skill_service
from api.services.content.items import (
    ContentItem,
    actor_id_of,
    get_item,
)
from api.services.content.kinds import ContentKind, ContentStatus, searchable_text, validate_payload
from api.services.content.workflow import TRANSITIONS, S, status_after_edit, transition_refusal
from api.services.principals import Principal
from api.services.transactions import transaction
from learnstream.db import Queryable


async def _check_skills(db: Queryable, tenant_id: str, skill_ids: list[str], field: str) -> None:
    unknown = await skill_service.unknown_skill_ids(db, tenant_id=tenant_id, skill_ids=skill_ids)
    if unknown:
        raise InvalidInputError(
            f"unknown skills: {', '.join(unknown)}",
            field=field,
            reason=f"unknown skills: {', '.join(unknown)}",
        )


async def _append_version(
    conn: Queryable,
    *,
    tenant_id: str,
    item_id: str,
    version: int,
    kind: ContentKind,
    title: str,
    skill_ids: list[str],
    payload: dict[str, Any],
    note: str,
    actor_id: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO content_versions (tenant_id, item_id, version, title, skill_ids, payload,
                                      note, created_by, created_at, search_vector)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9,
                setweight(to_tsvector('english', $4), 'A')
                || setweight(to_tsvector('english', $10), 'B'))
        """,
        tenant_id,
        item_id,
        version,
        title,
        sorted(set(skill_ids)),
        json.dumps(payload),
        note,
        actor_id,
        now,
        searchable_text(kind, payload),
    )


async def create_item(
    db: Queryable,
    principal: Principal,
    *,
    item_id: str | None,
    kind: ContentKind,
    title: str,
    skill_ids: list[str],
    payload: Any,
    now: datetime,
) -> ContentItem:
    """A new draft at version 1; ConflictError if ``item_id`` is taken."""
    normalized, problems = validate_payload(kind, payload)
    if normalized is None:
        raise InvalidInputError("payload does not fit its kind", errors=problems)
    item_id = item_id or str(uuid.uuid4())
    async with transaction(db) as conn:
        await _check_skills(conn, principal.tenant_id, skill_ids, "body.skill_ids")
        inserted = await conn.fetchval(
            """
            INSERT INTO content_items (tenant_id, item_id, kind, status, current_version,
                                       created_by, created_at, updated_at)
            VALUES ($1, $2, $3, 'draft', 1, $4, $5, $5)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            principal.tenant_id,
            item_id,
            kind.value,
            actor_id_of(principal),
            now,
        )
        if inserted is None:
            raise ConflictError(
                f"content item {item_id} exists", field="body.item_id", reason="already exists"
            )
        await _append_version(
            conn,
            tenant_id=principal.tenant_id,
            item_id=item_id,
            version=1,
            kind=kind,
            title=title,
            skill_ids=skill_ids,
            payload=normalized,
            note="created",
            actor_id=actor_id_of(principal),
            now=now,
        )
        return await get_item(conn, principal, item_id=item_id)


async def edit_item(
    db: Queryable,
    principal: Principal,
    *,
    item_id: str,
    title: str,
    skill_ids: list[str],
    payload: Any,
    note: str,
    base_version: int | None,
    now: datetime,
) -> ContentItem:
    """Append a new version. ``base_version``, when given, must be the current version
    (ConflictError otherwise), so two editors cannot silently overwrite each other."""
    async with transaction(db) as conn:
        row = await _lock_item(conn, principal.tenant_id, item_id)
        kind = ContentKind(row["kind"])
        normalized, problems = validate_payload(kind, payload)
        if normalized is None:
            raise InvalidInputError("payload does not fit its kind", errors=problems)
        if base_version is not None and base_version != row["current_version"]:
            raise ConflictError(
                f"item is at version {row['current_version']}, not {base_version}; "
                "reload and apply your edit again",
                field="body.base_version",
                reason="stale version",
            )
        await _check_skills(conn, principal.tenant_id, skill_ids, "body.skill_ids")
        await _write_next_version(
            conn,
            principal,
            row,
            title=title,
            skill_ids=skill_ids,
            payload=normalized,
            note=note,
            now=now,
        )
        return await get_item(conn, principal, item_id=item_id)


async def rollback_item(
    db: Queryable, principal: Principal, *, item_id: str, to_version: int, now: datetime
) -> ContentItem:
    """Append a new version equal to ``to_version`` (history is kept, nothing is deleted)."""
    async with transaction(db) as conn:
        row = await _lock_item(conn, principal.tenant_id, item_id)
        old = await conn.fetchrow(
            """
            SELECT title, skill_ids, payload FROM content_versions
            WHERE tenant_id = $1 AND item_id = $2 AND version = $3
            """,
            principal.tenant_id,
            item_id,
            to_version,
        )
        if old is None:
            raise NotFoundError(
                f"item {item_id} has no version {to_version}",
                field="body.version",
                reason="no such version",
            )
        await _write_next_version(
            conn,
            principal,
            row,
            title=old["title"],
            skill_ids=list(old["skill_ids"]),
            payload=json.loads(old["payload"]),
            note=f"rollback to version {to_version}",
            now=now,
        )
        return await get_item(conn, principal, item_id=item_id)


async def _lock_item(conn: Queryable, tenant_id: str, item_id: str) -> Any:
    row = await conn.fetchrow(
        """
        SELECT item_id, kind, status, current_version FROM content_items
        WHERE tenant_id = $1 AND item_id = $2 FOR UPDATE
        """,
        tenant_id,
        item_id,
    )
    if row is None:
        raise NotFoundError(f"no content item {item_id}", field="path.item_id", reason="not found")
    return row


async def _write_next_version(
    conn: Queryable,
    principal: Principal,
    row: Any,
    *,
    title: str,
    skill_ids: list[str],
    payload: dict[str, Any],
    note: str,
    now: datetime,
) -> None:
    version = row["current_version"] + 1
    kind = ContentKind(row["kind"])
    await _append_version(
        conn,
        tenant_id=principal.tenant_id,
        item_id=row["item_id"],
        version=version,
        kind=kind,
        title=title,
        skill_ids=skill_ids,
        payload=payload,
        note=note,
        actor_id=actor_id_of(principal),
        now=now,
    )
    current = ContentStatus(row["status"])
    after = status_after_edit(current)
    await conn.execute(
        """
        UPDATE content_items SET current_version = $3, status = $4, updated_at = $5
        WHERE tenant_id = $1 AND item_id = $2
        """,
        principal.tenant_id,
        row["item_id"],
        version,
        after.value,
        now,
    )
    if after is not current:
        await _record_transition(
            conn, principal, row["item_id"], version, current, after, "edited: back to draft", now
        )


async def transition_item(
    db: Queryable,
    principal: Principal,
    *,
    item_id: str,
    target: ContentStatus,
    comment: str,
    now: datetime,
) -> ContentItem:
    """Move the item one workflow step; ForbiddenError/ConflictError say why not."""
    async with transaction(db) as conn:
        row = await _lock_item(conn, principal.tenant_id, item_id)
        current = ContentStatus(row["status"])
        author = await conn.fetchval(
            """
            SELECT created_by FROM content_versions
            WHERE tenant_id = $1 AND item_id = $2 AND version = $3
            """,
            principal.tenant_id,
            item_id,
            row["current_version"],
        )
        refusal = transition_refusal(
            current,
            target,
            roles=access.usable_roles(principal),
            actor_id=principal.subject_id,
            version_author_id=str(author) if author else None,
        )
        if refusal is not None:
            step_exists = (current, target) in TRANSITIONS
            error = ForbiddenError if step_exists else ConflictError
            raise error(refusal, field="body.to_status", reason=refusal)
        published = row["current_version"] if target is S.PUBLISHED else None
        await conn.execute(
            """
            UPDATE content_items SET status = $3, updated_at = $4,
                published_version = coalesce($5, published_version)
            WHERE tenant_id = $1 AND item_id = $2
            """,
            principal.tenant_id,
            item_id,
            target.value,
            now,
            published,
        )
        await _record_transition(
            conn, principal, item_id, row["current_version"], current, target, comment, now
        )
        return await get_item(conn, principal, item_id=item_id)


async def _record_transition(
    conn: Queryable,
    principal: Principal,
    item_id: str,
    version: int,
    current: ContentStatus,
    target: ContentStatus,
    comment: str,
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO content_transitions (tenant_id, item_id, version, from_status, to_status,
                                         actor_id, comment, occurred_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        principal.tenant_id,
        item_id,
        version,
        current.value,
        target.value,
        actor_id_of(principal),
        comment,
        now,
    )
