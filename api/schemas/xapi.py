"""Request and response bodies of the xAPI mapping routes (api/routes/xapi.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.content import INT4_MAX
from api.services import skills


class ActivityMappingFields(BaseModel):
    activity_id: str = Field(
        min_length=1, max_length=2048, description="the xAPI object.id (an IRI) statements name"
    )
    item_id: str = Field(min_length=1, max_length=200, description="the CMS item it stands for")
    item_version: int = Field(
        default=0, ge=0, le=INT4_MAX, description="content version shown; 0 unknown"
    )
    skill_ids: list[Annotated[str, Field(pattern=skills.SKILL_ID_PATTERN)]] = Field(
        min_length=1, max_length=50, description="skills an answer to it exercises"
    )


class ActivityMappingsUpdate(BaseModel):
    activities: list[ActivityMappingFields] = Field(min_length=1, max_length=1000)


class ActivityMappingPublic(ActivityMappingFields):
    updated_at: datetime | None


class XapiSettingsPublic(BaseModel):
    unmapped: Literal["store", "refuse"] = Field(
        description="statements that describe no mapped answer: kept (store) or 400 (refuse)"
    )
