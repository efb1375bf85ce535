"""Request and response bodies of the classes routes (api/routes/classes.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.learners import SkillMasteryPublic
from api.services.classes import MemberRole


class ClassCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class MemberAdd(BaseModel):
    user_id: str = Field(min_length=1, max_length=100)
    member_role: MemberRole = MemberRole.LEARNER


class ClassMemberPublic(BaseModel):
    user_id: str
    member_role: MemberRole
    display_name: str


class ClassPublic(BaseModel):
    class_id: str
    name: str
    created_at: datetime
    members: list[ClassMemberPublic] = Field(description="empty unless you manage the class")


class LearnerMasteryRow(BaseModel):
    user_id: str
    skills: list[SkillMasteryPublic]


class ClassMasteryPublic(BaseModel):
    class_id: str
    learners: list[LearnerMasteryRow]
