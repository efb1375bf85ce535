"""Request and response bodies of the skills routes (api/routes/skills.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.services import skills


class SkillFields(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    prerequisites: list[str] = Field(
        default_factory=list, max_length=200, description="ids of the skills this one requires"
    )


class SkillCreate(SkillFields):
    skill_id: str = Field(pattern=skills.SKILL_ID_PATTERN)


class SkillPublic(BaseModel):
    skill_id: str
    name: str
    description: str
    prerequisites: list[str]
    created_at: datetime
    updated_at: datetime


class LearningOrderPublic(BaseModel):
    skill_ids: list[str] = Field(description="every skill, prerequisites first")
