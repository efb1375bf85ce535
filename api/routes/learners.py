"""Learner read views: mastery per skill."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, status

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
from api.schemas.learners import (
    ErasurePublic,
    ErasureRequest,
    LearnerMasteryPublic,
    OnboardingPublic,
    ProfilePublic,
    ProfileUpdate,
    SkillMasteryPublic,
    StepCompletion,
)
from api.services import access, accounts, mastery, privacy, profiles
from api.services.profiles import OnboardingStep

router = APIRouter(prefix="/v1/learners", tags=["learners"])

UserIdPath = Path(min_length=1, max_length=200, description="The learner's id in the tenant")


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
