"""Request and response bodies of the dashboards routes (api/routes/dashboards.py)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.placement import PlacementResultPublic
from api.services.feedback import Verdict
from api.services.mastery import MasteryLabel


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SkillMasteryNamedPublic(_Public):
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
    mastery: list[SkillMasteryNamedPublic]
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
