"""Content items: kinds and their payloads, versions, the review workflow, search.

Rules:
- Each kind has its own payload schema (a question needs an answer key, a code
  exercise at least one test, a video an http(s) URL ...).
- Every edit, rollback included, appends a new version; versions never change.
  An edit of an item under review or approved sends it back to draft (what was
  approved is not what is there now); an edit of a published item leaves the
  published version live until a newer one is published.
- The workflow is draft -> in_review -> approved -> published -> archived, with
  the moves and roles in ``TRANSITIONS``; nobody approves a version they wrote.
- Learners, teachers and client apps see only live published versions; authors,
  reviewers and admins see every status and the current version.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)

from api.exceptions import (
    ConflictError,
    FieldProblem,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from api.services import access
from api.services import skills as skill_service
from api.services.principals import Principal, Role
from api.services.transactions import transaction

ITEM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
STAFF_ROLES = frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN})
EDITOR_ROLES = frozenset({Role.AUTHOR, Role.ADMIN})


class ContentKind(StrEnum):
    QUESTION = "question"
    CODE_EXERCISE = "code_exercise"
    LESSON = "lesson"
    READING = "reading"
    VIDEO = "video"


class ContentStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PUBLISHED = "published"
    ARCHIVED = "archived"


# --- payloads ----------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class QuestionPayload(_Payload):
    """A question; with ``choices`` every answer must be one of them."""

    prompt: str = Field(min_length=1, max_length=20_000)
    choices: list[Annotated[str, Field(min_length=1, max_length=2000)]] | None = Field(
        default=None, min_length=2, max_length=20
    )
    answer_key: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=20, description="accepted answers"
    )
    explanation: str = Field(default="", max_length=20_000)

    @model_validator(mode="after")
    def _answers_are_choices(self) -> QuestionPayload:
        if self.choices is not None:
            missing = [a for a in self.answer_key if a not in self.choices]
            if missing:
                raise ValueError(f"answer_key entries not among choices: {missing}")
        return self


class CodeTest(_Payload):
    name: str = Field(min_length=1, max_length=200)
    code: str = Field(min_length=1, max_length=50_000, description="test source")


class CodeExercisePayload(_Payload):
    """A programming task graded by its tests."""

    prompt: str = Field(min_length=1, max_length=20_000)
    language: Literal["python", "javascript", "java", "c", "cpp", "sql"]
    starter_code: str = Field(default="", max_length=50_000)
    tests: list[CodeTest] = Field(min_length=1, max_length=100)
    reference_solution: str = Field(default="", max_length=50_000)


class LessonPayload(_Payload):
    """A lesson or a reading: text to learn from."""

    body_markdown: str = Field(min_length=1, max_length=200_000)
    estimated_minutes: int = Field(default=5, ge=1, le=600)


class VideoPayload(_Payload):
    url: HttpUrl
    duration_s: int = Field(ge=1, le=24 * 3600)
    transcript: str = Field(default="", max_length=200_000)


PAYLOAD_MODELS: dict[ContentKind, type[_Payload]] = {
    ContentKind.QUESTION: QuestionPayload,
    ContentKind.CODE_EXERCISE: CodeExercisePayload,
    ContentKind.LESSON: LessonPayload,
    ContentKind.READING: LessonPayload,
    ContentKind.VIDEO: VideoPayload,
}


def validate_payload(
    kind: ContentKind, payload: Any, *, field_prefix: str = "body.payload"
) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    """The normalised payload for ``kind`` and no problems, or None and what is wrong."""
    try:
        model = PAYLOAD_MODELS[kind].model_validate(payload)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            field = f"{field_prefix}.{where}" if where else field_prefix
            problems.append(FieldProblem(field, str(error["msg"])))
        return None, problems
    return model.model_dump(mode="json"), []


def searchable_text(kind: ContentKind, payload: dict[str, Any]) -> str:
    """The words of a payload worth finding it by (prompt, body, transcript, ...)."""
    keys = {
        ContentKind.QUESTION: ("prompt", "explanation"),
        ContentKind.CODE_EXERCISE: ("prompt",),
        ContentKind.LESSON: ("body_markdown",),
        ContentKind.READING: ("body_markdown",),
        ContentKind.VIDEO: ("transcript",),
    }[kind]
    parts = [str(payload.get(key, "")) for key in keys]
    if kind is ContentKind.QUESTION and payload.get("choices"):
        parts.extend(payload["choices"])
    return "\n".join(parts)


# --- workflow ------------------------------------------------------------------------------

S = ContentStatus
TRANSITIONS: dict[tuple[ContentStatus, ContentStatus], frozenset[Role]] = {
    (S.DRAFT, S.IN_REVIEW): frozenset({Role.AUTHOR, Role.ADMIN}),
    (S.DRAFT, S.ARCHIVED): frozenset({Role.AUTHOR, Role.ADMIN}),
    (S.IN_REVIEW, S.DRAFT): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.IN_REVIEW, S.APPROVED): frozenset({Role.REVIEWER, Role.ADMIN}),
    (S.APPROVED, S.DRAFT): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.APPROVED, S.PUBLISHED): frozenset({Role.REVIEWER, Role.ADMIN}),
    (S.PUBLISHED, S.ARCHIVED): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.ARCHIVED, S.DRAFT): frozenset({Role.AUTHOR, Role.ADMIN}),
}


def transition_refusal(
    current: ContentStatus,
    target: ContentStatus,
    *,
    roles: frozenset[Role],
    actor_id: str,
    version_author_id: str | None,
) -> str | None:
    """Why ``actor_id`` with ``roles`` may not move an item from ``current`` to ``target``."""
    allowed = TRANSITIONS.get((current, target))
    if allowed is None:
        moves = sorted(t.value for (c, t) in TRANSITIONS if c is current)
        step = f"{current.value} -> {target.value}"
        return f"{step} is not a workflow step; from {current.value}: {', '.join(moves)}"
    if roles.isdisjoint(allowed):
        return f"{current.value} -> {target.value} needs one of: {', '.join(sorted(allowed))}"
    if target is S.APPROVED and version_author_id == actor_id:
        return "nobody approves a version they wrote; ask another reviewer"
    return None


def status_after_edit(current: ContentStatus) -> ContentStatus:
    """Status of an item after a new version is written in ``current``."""
    return S.DRAFT if current in (S.IN_REVIEW, S.APPROVED, S.PUBLISHED) else current


# --- data access ------------------------------------------------------------------------------


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


def _version_from_row(row: Any) -> ContentVersion:
    return ContentVersion(
        version=row["version"],
        title=row["title"],
        skill_ids=tuple(row["skill_ids"]),
        payload=json.loads(row["payload"]),
        note=row["note"],
        created_by=str(row["created_by"]) if row["created_by"] else None,
        created_at=row["created_at"],
    )


def _item_from_row(row: Any) -> ContentItem:
    return ContentItem(
        item_id=row["item_id"],
        kind=ContentKind(row["kind"]),
        status=ContentStatus(row["status"]),
        current_version=row["current_version"],
        published_version=row["published_version"],
        created_at=row["item_created_at"],
        updated_at=row["updated_at"],
        shown=_version_from_row(row),
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


async def get_item(db: Any, principal: Principal, *, item_id: str) -> ContentItem:
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
    return _as_seen_by(staff, _item_from_row(row))


async def _check_skills(db: Any, tenant_id: str, skill_ids: list[str], field: str) -> None:
    unknown = await skill_service.unknown_skill_ids(db, tenant_id=tenant_id, skill_ids=skill_ids)
    if unknown:
        raise InvalidInputError(
            f"unknown skills: {', '.join(unknown)}",
            field=field,
            reason=f"unknown skills: {', '.join(unknown)}",
        )


async def _append_version(
    conn: Any,
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
    db: Any,
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
            _user_id(principal),
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
            actor_id=_user_id(principal),
            now=now,
        )
        return await get_item(conn, principal, item_id=item_id)


async def edit_item(
    db: Any,
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
    db: Any, principal: Principal, *, item_id: str, to_version: int, now: datetime
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


async def _lock_item(conn: Any, tenant_id: str, item_id: str) -> Any:
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
    conn: Any,
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
        actor_id=_user_id(principal),
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
    db: Any,
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
    conn: Any,
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
        _user_id(principal),
        comment,
        now,
    )


async def versions(db: Any, principal: Principal, *, item_id: str) -> list[ContentVersion]:
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
    return [_version_from_row(r) for r in rows]


async def transitions(db: Any, principal: Principal, *, item_id: str) -> list[Transition]:
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


async def search(db: Any, principal: Principal, query: SearchQuery) -> list[ContentItem]:
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
    return [_as_seen_by(staff, _item_from_row(r)) for r in rows]


def _user_id(principal: Principal) -> str | None:
    return principal.subject_id if not principal.is_client_app else None
