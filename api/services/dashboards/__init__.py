"""Dashboards: what a learner sees about themself, and a teacher's overview of a class.

* :mod:`.rules` — the pure rules (streaks, milestones, percentiles, gap bands, risk,
  trend days, common gaps);
* :mod:`.learner` — the learner view (mastery, ability, gaps, reviews, trend, standing);
* :mod:`.inbox` — the learner's recommendations and notification inbox;
* :mod:`.class_view` — the class overview for teachers.

The names the routes and tests use are importable from here.
"""

from api.services.dashboards.class_view import (
    AtRisk,
    ClassOverview,
    HeatmapRow,
    SkillColumn,
    class_overview,
)
from api.services.dashboards.inbox import (
    Inbox,
    Notification,
    Recommendation,
    Recommendations,
    mark_notification_read,
    notifications_part,
    recommendations_part,
)
from api.services.dashboards.learner import (
    Ability,
    DueReview,
    DueReviews,
    FeedbackGiven,
    Gap,
    LearnerDashboard,
    NamedSkillMastery,
    Trend,
    learner_dashboard,
)
from api.services.dashboards.rules import (
    CommonGap,
    LearnerSignals,
    Milestone,
    Standing,
    Streak,
    TrendDay,
    class_standing,
    common_gaps,
    fill_days,
    gap_band,
    mean_mastery,
    milestones,
    percentile_rank,
    risk_reasons,
    streak,
)

__all__ = [
    "Ability",
    "AtRisk",
    "ClassOverview",
    "CommonGap",
    "DueReview",
    "DueReviews",
    "FeedbackGiven",
    "Gap",
    "HeatmapRow",
    "Inbox",
    "LearnerDashboard",
    "LearnerSignals",
    "Milestone",
    "NamedSkillMastery",
    "Notification",
    "Recommendation",
    "Recommendations",
    "SkillColumn",
    "Standing",
    "Streak",
    "Trend",
    "TrendDay",
    "class_overview",
    "class_standing",
    "common_gaps",
    "fill_days",
    "gap_band",
    "learner_dashboard",
    "mark_notification_read",
    "mean_mastery",
    "milestones",
    "notifications_part",
    "percentile_rank",
    "recommendations_part",
    "risk_reasons",
    "streak",
]
