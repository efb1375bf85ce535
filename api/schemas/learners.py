"""Request and response bodies of the learners routes (api/routes/learners.py)."""

from __future__ import annotations

from datetime import datetime, time

from pydantic import BaseModel, Field

from api.services.content import ContentKind
from api.services.mastery import MasteryLabel
from api.services.profiles import Channel, OnboardingStep


class SkillMasteryPublic(BaseModel):
    """One skill's BKT estimate with its rule-style label."""

    skill_id: str
    p_mastery: float = Field(ge=0, le=1, description="P(skill mastered), in [0, 1]")
    label: MasteryLabel = Field(description="not started / practising / familiar / ...")
    attempts: int = Field(ge=0)
    correct: int = Field(ge=0)
    last_attempt_at: datetime = Field(description="UTC time of the latest attempt counted")
    updated_at: datetime = Field(description="UTC time the estimate was last written")


class LearnerMasteryPublic(BaseModel):
    """Every skill the learner has evidence on, ordered by skill_id."""

    user_id: str
    skills: list[SkillMasteryPublic]


class PreferencesModel(BaseModel):
    daily_minutes: int = Field(default=20, ge=1, le=600, description="daily time budget, minutes")
    preferred_kinds: list[ContentKind] = Field(default_factory=list)
    notification_channels: list[Channel] = Field(default_factory=lambda: [Channel.IN_APP])
    quiet_hours_start: time | None = Field(default=None, description="local time, e.g. 22:00")
    quiet_hours_end: time | None = Field(default=None, description="local time, e.g. 07:00")


class ProfileUpdate(BaseModel):
    display_name: str = Field(min_length=1, max_length=200)
    goals: list[str] = Field(default_factory=list, max_length=20)
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone")
    locale: str = Field(default="en", max_length=35)
    preferences: PreferencesModel | None = None


class ProfilePublic(BaseModel):
    user_id: str
    display_name: str
    goals: list[str]
    timezone: str
    locale: str
    preferences: PreferencesModel
    updated_at: datetime | None


class StepPublic(BaseModel):
    step: OnboardingStep
    completed_at: datetime | None
    skipped: bool


class OnboardingPublic(BaseModel):
    steps: list[StepPublic]
    next_step: OnboardingStep | None
    progress: float = Field(ge=0, le=1, description="share of steps done")


class StepCompletion(BaseModel):
    skipped: bool = False


class ErasureRequest(BaseModel):
    confirm: bool = Field(description="must be true: erasure cannot be undone")
    password: str | None = Field(
        default=None, max_length=1024, description="required when erasing your own account"
    )


class ErasurePublic(BaseModel):
    subject_id: str
    rows_deleted: dict[str, int]
    account_deleted: bool
    redis_keys_deleted: int
    erased_at: datetime
    lake_rows_deleted: int
    lake_files_rewritten: int
    published: bool
