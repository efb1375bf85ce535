"""Dashboards: the learner view (with feedback on recommendations) and the class overview.

Learner paths take the account id (or ``me``); the data comes from the views under
that account's learner id (:mod:`api.services.learner_ids`). Who may read: the
learner, teachers of a class the learner is in, MFA-signed-in admins, the tenant's
client app's key with views:read (:func:`api.services.access.ensure_can_read_learner`);
feedback and notification reads: the learner, admins, a key with feedback:write.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from api.deps import (
    LearnerActor,
    LearnerViewer,
    Now,
    PoolDep,
    PublisherDep,
    SettingsDep,
    TeacherOrAdmin,
)
from api.exceptions import InvalidInputError
from api.schemas.dashboards import (
    ClassOverviewPublic,
    FeedbackCreate,
    FeedbackStoredPublic,
    LearnerDashboardPublic,
    ReadPublic,
)
from api.schemas.placement import result_public
from api.services import access, classes, dashboards, feedback, learner_ids
from api.services.principals import Principal

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])

AccountPath = Path(
    min_length=1, max_length=100, description="the learner's account id, or `me` for yourself"
)
ITEM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


def _account_id(principal: Principal, user_id: str) -> str:
    if user_id != "me":
        return user_id
    if principal.is_client_app:
        raise InvalidInputError(
            "`me` names a signed-in user; client apps pass the account id",
            field="path.user_id",
            reason="no user behind an API key",
        )
    return principal.subject_id


@router.get("/learners/{user_id}", summary="The learner dashboard")
async def learner_dashboard(
    principal: LearnerViewer,
    pool: PoolDep,
    settings: SettingsDep,
    now: Now,
    user_id: str = AccountPath,
    days: Annotated[int, Query(ge=1, le=365, description="days of the progress trend")] = 30,
) -> LearnerDashboardPublic:
    """Mastery with labels, open gaps, due reviews, trend, streaks, milestones, class
    standing, latest placement; recommendations and the inbox say whether they exist."""
    account = _account_id(principal, user_id)
    await access.ensure_can_read_learner(pool, principal, account)
    found = await dashboards.learner_dashboard(
        pool,
        tenant_id=principal.tenant_id,
        user_id=account,
        now=now,
        trend_days=days,
        min_class_size=settings.dashboard_min_class_size,
    )
    placement = None if found.placement is None else result_public(found.placement)
    return LearnerDashboardPublic.model_validate({**asdict(found), "placement": placement})


@router.post(
    "/learners/{user_id}/recommendations/{item_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    summary="Feedback on a recommended item (done, skipped, helpful, not helpful)",
)
async def recommendation_feedback(
    body: FeedbackCreate,
    principal: LearnerActor,
    pool: PoolDep,
    publisher: PublisherDep,
    now: Now,
    user_id: str = AccountPath,
    item_id: str = Path(pattern=ITEM_ID_PATTERN),
) -> FeedbackStoredPublic:
    """Stored, and published as a RECOMMENDATION_FEEDBACK UserActivityEvent; the learner,
    an MFA-signed-in admin or a key with feedback:write may give it. 404 unless the item is
    published in the tenant."""
    account = _account_id(principal, user_id)
    await access.ensure_can_act_for_learner(pool, principal, account)
    learner_id = await learner_ids.require_learner_id(
        pool, tenant_id=principal.tenant_id, user_id=account
    )
    stored = await feedback.record(
        pool,
        publisher,
        tenant_id=principal.tenant_id,
        user_id=account,
        learner_id=learner_id,
        item_id=item_id,
        verdict=body.verdict,
        comment=body.comment,
        now=now,
    )
    return FeedbackStoredPublic.model_validate(stored, from_attributes=True)


@router.post(
    "/learners/{user_id}/notifications/{notification_id}/read",
    summary="Mark an inbox notification read",
)
async def mark_read(
    principal: LearnerActor,
    pool: PoolDep,
    now: Now,
    notification_id: str,
    user_id: str = AccountPath,
) -> ReadPublic:
    """Idempotent (the first read time stays); the learner, an MFA-signed-in admin or
    a key with feedback:write. 404 for a notification that is not this learner's."""
    account = _account_id(principal, user_id)
    await access.ensure_can_act_for_learner(pool, principal, account)
    learner_id = await learner_ids.require_learner_id(
        pool, tenant_id=principal.tenant_id, user_id=account
    )
    read_at = await dashboards.mark_notification_read(
        pool,
        tenant_id=principal.tenant_id,
        learner_id=learner_id,
        notification_id=notification_id,
        now=now,
    )
    return ReadPublic(notification_id=notification_id, read_at=read_at)


@router.get("/classes/{class_id}", summary="Class overview (its teachers, admins)")
async def class_overview(
    class_id: str, principal: TeacherOrAdmin, pool: PoolDep, now: Now
) -> ClassOverviewPublic:
    """Mastery heat map by skill, per-skill summary, learners at risk with reasons,
    the most common open gaps. Drill down with /v1/dashboards/learners/{user_id}."""
    found = await classes.require_managed_class(pool, principal, class_id=class_id)
    overview = await dashboards.class_overview(pool, found, now=now)
    return ClassOverviewPublic.model_validate(overview, from_attributes=True)
