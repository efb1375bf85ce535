"""Learner read views: mastery per skill."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from api.deps import (
    CurrentUser,
    LearnerAccount,
    LearnerViewer,
    Now,
    PoolDep,
    PublisherDep,
    RedisDep,
    SettingsDep,
)
from api.exceptions import InvalidInputError, NotAuthenticatedError, NotFoundError
from api.services import access, accounts, mastery, privacy, profiles
from api.services.content import ContentKind
from api.services.mastery import MasteryLabel
from api.services.profiles import Channel, OnboardingStep

router = APIRouter(prefix="/v1/learners", tags=["learners"])

UserIdPath = Path(min_length=1, max_length=200, description="The learner's id in the tenant")


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


@router.get("/{user_id}/mastery", summary="Mastery per skill with labels")
async def get_mastery(
    principal: LearnerViewer,
    pool: PoolDep,
    user_id: str = UserIdPath,
) -> LearnerMasteryPublic:
    """The learner's per-skill mastery in the caller's tenant.

    404 when the tenant knows no such learner (neither an account nor any
    mastery row); an account without evidence yet gets an empty list.
    """
    await access.ensure_can_read_learner(pool, principal, user_id)
    if not await mastery.learner_known(pool, tenant_id=principal.tenant_id, user_id=user_id):
        raise NotFoundError(
            "no learner with this id in your tenant", field="path.user_id", reason="not found"
        )
    rows = await mastery.learner_mastery(pool, tenant_id=principal.tenant_id, user_id=user_id)
    return LearnerMasteryPublic(
        user_id=user_id,
        skills=[SkillMasteryPublic.model_validate(row, from_attributes=True) for row in rows],
    )


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


def _profile(found: profiles.Profile) -> ProfilePublic:
    return ProfilePublic.model_validate(found, from_attributes=True)


def _onboarding(found: profiles.Onboarding) -> OnboardingPublic:
    return OnboardingPublic.model_validate(found, from_attributes=True)


@router.get("/{user_id}/profile", summary="Profile and learning preferences")
async def get_profile(
    principal: CurrentUser, pool: PoolDep, user_id: str = UserIdPath
) -> ProfilePublic:
    await access.ensure_can_read_learner(pool, principal, user_id)
    return _profile(
        await profiles.get_profile(pool, tenant_id=principal.tenant_id, user_id=user_id)
    )


@router.put("/{user_id}/profile", summary="Replace profile and preferences")
async def put_profile(
    body: ProfileUpdate,
    principal: LearnerAccount,
    pool: PoolDep,
    now: Now,
    user_id: str = UserIdPath,
) -> ProfilePublic:
    """Completes onboarding's profile step, and its preferences step when given."""
    await access.ensure_can_manage_learner(pool, principal, user_id)
    prefs = body.preferences
    saved = await profiles.save_profile(
        pool,
        tenant_id=principal.tenant_id,
        user_id=user_id,
        display_name=body.display_name,
        goals=body.goals,
        timezone=body.timezone,
        locale=body.locale,
        preferences=profiles.Preferences(
            daily_minutes=prefs.daily_minutes,
            preferred_kinds=tuple(prefs.preferred_kinds),
            notification_channels=tuple(prefs.notification_channels),
            quiet_hours_start=prefs.quiet_hours_start,
            quiet_hours_end=prefs.quiet_hours_end,
        )
        if prefs is not None
        else None,
        now=now,
    )
    return _profile(saved)


@router.get("/{user_id}/onboarding", summary="Onboarding progress")
async def get_onboarding(
    principal: CurrentUser, pool: PoolDep, user_id: str = UserIdPath
) -> OnboardingPublic:
    await access.ensure_can_read_learner(pool, principal, user_id)
    return _onboarding(
        await profiles.get_onboarding(pool, tenant_id=principal.tenant_id, user_id=user_id)
    )


@router.post("/{user_id}/onboarding/{step}", summary="Complete (or skip) an onboarding step")
async def complete_onboarding_step(
    step: OnboardingStep,
    body: StepCompletion,
    principal: LearnerAccount,
    pool: PoolDep,
    now: Now,
    user_id: str = UserIdPath,
) -> OnboardingPublic:
    """409 naming the steps that must come first; only the placement test may be skipped."""
    await access.ensure_can_manage_learner(pool, principal, user_id)
    state = await profiles.complete_step(
        pool,
        tenant_id=principal.tenant_id,
        user_id=user_id,
        step=step,
        skipped=body.skipped,
        now=now,
    )
    return _onboarding(state)


@router.get("/{user_id}/privacy/export", summary="Everything held about the learner (JSON)")
async def privacy_export(
    principal: LearnerAccount,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    now: Now,
    user_id: str = UserIdPath,
) -> dict[str, Any]:
    """Account, roles, sessions, every learner table's rows, lake rows and Redis keys
    (each with where it came from), and security events; audited."""
    await access.ensure_can_manage_learner(pool, principal, user_id)
    return await privacy.export_learner(
        pool, principal, subject_id=user_id, now=now, redis=redis, settings=settings
    )


@router.post(
    "/{user_id}/privacy/erasure",
    status_code=status.HTTP_200_OK,
    summary="Erase the learner's personal data everywhere",
)
async def privacy_erasure(
    body: ErasureRequest,
    principal: LearnerAccount,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    publisher: PublisherDep,
    now: Now,
    user_id: str = UserIdPath,
) -> ErasurePublic:
    """Deletes rows, account and cache keys and writes a tombstone; audited. Erasing
    your own account needs your password."""
    await access.ensure_can_manage_learner(pool, principal, user_id)
    if not body.confirm:
        raise InvalidInputError(
            "set confirm to true: erasure cannot be undone",
            field="body.confirm",
            reason="must be true",
        )
    erasing_self = principal.subject_id == user_id and not principal.is_client_app
    if erasing_self and (
        body.password is None
        or not await accounts.check_password(
            pool, settings, user_id=user_id, password=body.password
        )
    ):
        raise NotAuthenticatedError(
            "confirm with your password", field="body.password", reason="wrong or missing"
        )
    report = await privacy.erase_learner(
        pool,
        redis,
        settings,
        tenant_id=principal.tenant_id,
        subject_id=user_id,
        requested_by=(principal.kind.value, principal.subject_id),
        now=now,
        publisher=publisher,
    )
    return ErasurePublic.model_validate(report, from_attributes=True)
