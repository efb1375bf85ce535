"""Request and response bodies of the content routes (api/routes/content.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.services import content
from api.services.content import ContentKind, ContentStatus

# Versions are PostgreSQL integers (int4): larger numbers are refused as input (422)
# instead of overflowing the query parameter (a 500).
INT4_MAX = 2**31 - 1


class ItemFields(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    skill_ids: list[str] = Field(default_factory=list, max_length=50)
    payload: dict[str, Any] = Field(description="kind-specific; see the payload schemas")


class ItemCreate(ItemFields):
    kind: ContentKind
    item_id: str | None = Field(default=None, pattern=content.ITEM_ID_PATTERN)


class ItemEdit(ItemFields):
    note: str = Field(default="", max_length=2000)
    base_version: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="the version you edited; 409 if it moved on"
    )


class RollbackRequest(BaseModel):
    version: int = Field(ge=1, le=INT4_MAX, description="an earlier version number")


class TransitionRequest(BaseModel):
    to_status: ContentStatus
    comment: str = Field(default="", max_length=2000)


class VersionPublic(BaseModel):
    version: int
    title: str
    skill_ids: list[str]
    payload: dict[str, Any]
    note: str
    created_by: str | None
    created_at: datetime


class ItemPublic(BaseModel):
    item_id: str
    kind: ContentKind
    status: ContentStatus
    current_version: int
    published_version: int | None
    created_at: datetime
    updated_at: datetime
    shown: VersionPublic = Field(description="current version for staff, published for others")


class TransitionPublic(BaseModel):
    version: int
    from_status: ContentStatus
    to_status: ContentStatus
    actor_id: str | None
    comment: str
    occurred_at: datetime


class RowProblemPublic(BaseModel):
    field: str
    reason: str


class ImportReportPublic(BaseModel):
    dry_run: bool
    applied: bool
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    errors: list[RowProblemPublic]
