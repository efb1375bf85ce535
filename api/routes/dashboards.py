"""Dashboards: the learner view (with feedback on recommendations) and the class overview.

Learner paths take the account id (or ``me``); the data comes from the views under
that account's learner id (:mod:`api.services.learner_ids`). Who may read: the
learner, teachers of a class the learner is in, MFA-signed-in admins, the tenant's
client app's key with views:read (:func:`api.services.access.ensure_can_read_learner`);
feedback and notification reads: the learner, admins, a key with feedback:write.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

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
from api.routes.placement import PlacementResultPublic, result_public
from api.services import access, classes, dashboards, feedback, learner_ids
from api.services.feedback import Verdict
from api.services.mastery import MasteryLabel
from api.services.principals import Principal

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])

AccountPath = Path(
    min_length=1, max_length=100, description="the learner's account id, or `me` for yourself"
)
ITEM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SkillPublic(_Public):
    skill_id: str
    name: str
    p_mastery: float = Field(ge=0, le=1, description="P(skill mastered), in [0, 1]")
    label: MasteryLabel
    attempts: int
    correct: int
    last_attempt_at: datetime
    updated_at: datetime


class AbilityPublic(_Public):
    ability: float = Field(description="IRT ability, logits")
    ability_se: float = Field(description="its standard error, logits")
    n_responses: int


class GapPublic(_Public):
    skill_id: str
    name: str
    severity: float = Field(ge=0, le=1)
    band: str = Field(description="low, medium or high")
    confidence: float = Field(ge=0, le=1)
    p_mastery: float = Field(ge=0, le=1)
    attempts: int
    blocked_skills: int = Field(description="not-yet-mastered skills that depend on this one")
    opened_at: datetime | None


class DueReviewPublic(_Public):
    item_id: str
    title: str | None
    due_at: datetime
    reviews: int


class DueReviewsPublic(_Public):
    due_now: int
    due_next_24h: int
    items: list[DueReviewPublic]


class RecommendationPublic(_Public):
    rank: int = Field(ge=1, description="1 = best")
    item_id: str
    title: str | None
    kind: str
    skill_ids: list[str]
    score: float
    reason: str = Field(description="due_review, gap, difficulty_match, learning_path, variety")
    reason_detail: str
    strategy: str
    computed_at: datetime
    feedback: str | None = Field(description="your latest verdict on this item")


class RecommendationsPublic(_Public):
    available: bool = Field(description="always true: migrations create the recommendations view")
    reason: str | None
    items: list[RecommendationPublic]


class NotificationPublic(_Public):
    notification_id: str
    kind: str
    title: str
    body: str
    item_ids: list[str]
    created_at: datetime
    read_at: datetime | None


class InboxPublic(_Public):
    available: bool = Field(description="always true: migrations create the notifications view")
    reason: str | None
    unread: int
    items: list[NotificationPublic]


class ReadPublic(BaseModel):
    notification_id: str
    read_at: datetime


class TrendDayPublic(_Public):
    day: date
    attempts: int
    correct: int
    accuracy: float | None = Field(description="correct / attempts, null without answers")
    skills_practised: int


class TrendPublic(_Public):
    timezone: str
    first_day: date
    last_day: date = Field(description="the learner's latest active day (today without any)")
    days: list[TrendDayPublic]


class StreakPublic(_Public):
    current_days: int
    longest_days: int
    active_days: int
    last_active_on: date | None


class MilestonePublic(_Public):
    key: str
    title: str
    target: int
    progress: int
    achieved: bool
    achieved_at: datetime | None


class StandingPublic(_Public):
    class_id: str
    class_name: str
    available: bool
    percentile: float | None = Field(description="0-100, of the mean mastery in the class")
    learners_compared: int
    reason: str | None


class FeedbackPublic(_Public):
    item_id: str
    verdict: str
    given_at: datetime


class LearnerDashboardPublic(_Public):
    """The learner view: mastery, gaps, reviews, progress, standing and more."""

    user_id: str
    learner_id: str = Field(description="the id the learner's events carry")
    display_name: str
    generated_at: datetime
    mastery: list[SkillPublic]
    mean_p_mastery: float | None
    label_counts: dict[str, int]
    ability: AbilityPublic | None
    gaps: list[GapPublic]
    due_reviews: DueReviewsPublic
    recommendations: RecommendationsPublic
    trend: TrendPublic
    streak: StreakPublic
    milestones: list[MilestonePublic]
    class_standing: list[StandingPublic]
    notifications: InboxPublic
    placement: PlacementResultPublic | None
    feedback: list[FeedbackPublic]


class FeedbackCreate(BaseModel):
    verdict: Verdict
    comment: str = Field(default="", max_length=1000)


class FeedbackStoredPublic(BaseModel):
    feedback_id: str
    item_id: str
    verdict: Verdict
    comment: str
    given_at: datetime
    event_published: bool = Field(description="UserActivityEvent acknowledged by the broker")


class HeatmapRowPublic(_Public):
    user_id: str
    display_name: str
    learner_id: str
    p_mastery: list[float | None] = Field(description="aligned with `skills`; null: no evidence")
    labels: list[str | None]
    mean_p_mastery: float | None
    last_attempt_at: datetime | None


class SkillColumnPublic(_Public):
    skill_id: str
    name: str
    learners_with_evidence: int
    mean_p_mastery: float | None
    label_counts: dict[str, int]


class AtRiskPublic(_Public):
    user_id: str
    display_name: str
    reasons: list[str]


class CommonGapPublic(_Public):
    skill_id: str
    name: str
    learners: int
    mean_severity: float


class ClassOverviewPublic(_Public):
    """The teacher's class view: heat map, per-skill summary, at-risk learners, gaps."""

    class_id: str
    name: str
    generated_at: datetime
    learners: int
    skills: list[SkillColumnPublic]
    heatmap: list[HeatmapRowPublic]
    at_risk: list[AtRiskPublic]
    common_gaps: list[CommonGapPublic]


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
