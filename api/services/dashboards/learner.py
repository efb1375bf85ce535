"""The learner dashboard: what a learner sees about themself.

Everything is read from the views the processors write (``skill_mastery``,
``learner_ability``, ``knowledge_gaps``, ``review_schedule``, ``attempts``) under the
learner id of the account (:mod:`api.services.learner_ids`), in the caller's tenant; the
rules that turn rows into what the dashboard says are in :mod:`.rules`, the
recommendation and notification feeds in :mod:`.inbox`.

Days are calendar days in the learner's profile timezone (UTC without a profile).
The progress trend covers the ``days`` days that end on the learner's latest active
day, so a learner back from a break, or a replayed historical log, shows its last
stretch of work rather than an empty month.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from api.services import learner_ids, placement
from api.services.dashboards.inbox import (
    Inbox,
    Recommendations,
    notifications_part,
    recommendations_part,
)
from api.services.dashboards.rules import (
    ANSWER_MILESTONES,
    DUE_SOON,
    MAX_LISTED,
    Milestone,
    Standing,
    Streak,
    TrendDay,
    class_standing,
    fill_days,
    gap_band,
    mean_mastery,
    milestones,
    streak,
)
from api.services.mastery import MasteryLabel, SkillMastery, learner_mastery
from learnstream.db import Queryable
from learnstream.views import ability as ability_view
from learnstream.views import reviews as reviews_view


@dataclass(frozen=True, slots=True)
class NamedSkillMastery:
    """A skill's mastery with its label and the skill's name from the CMS (id if none)."""

    skill_id: str
    name: str
    p_mastery: float
    label: MasteryLabel
    attempts: int
    correct: int
    last_attempt_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Ability:
    """IRT ability (logits) with its standard error, after ``n_responses`` answers."""

    ability: float
    ability_se: float
    n_responses: int


@dataclass(frozen=True, slots=True)
class Gap:
    """An open knowledge gap; severity and confidence in [0, 1]; opened_at UTC."""

    skill_id: str
    name: str
    severity: float
    band: str
    confidence: float
    p_mastery: float
    attempts: int
    blocked_skills: int
    opened_at: datetime | None


@dataclass(frozen=True, slots=True)
class DueReview:
    """An item whose spaced-repetition review is due (``due_at`` UTC)."""

    item_id: str
    title: str | None  # None when the item is not (or no longer) published
    due_at: datetime
    reviews: int


@dataclass(frozen=True, slots=True)
class DueReviews:
    due_now: int
    due_next_24h: int
    items: list[DueReview]


@dataclass(frozen=True, slots=True)
class Trend:
    timezone: str
    first_day: date
    last_day: date
    days: list[TrendDay]


@dataclass(frozen=True, slots=True)
class FeedbackGiven:
    item_id: str
    verdict: str
    given_at: datetime


@dataclass(frozen=True, slots=True)
class LearnerDashboard:
    """Everything the learner view shows, for one account."""

    user_id: str
    learner_id: str
    display_name: str
    generated_at: datetime
    mastery: list[NamedSkillMastery]
    mean_p_mastery: float | None
    label_counts: dict[str, int]
    ability: Ability | None
    gaps: list[Gap]
    due_reviews: DueReviews
    recommendations: Recommendations
    trend: Trend
    streak: Streak
    milestones: list[Milestone]
    class_standing: list[Standing]
    notifications: Inbox
    placement: placement.PlacementResult | None
    feedback: list[FeedbackGiven]


async def skill_names(db: Queryable, tenant_id: str) -> dict[str, str]:
    """Skill id -> display name in ``tenant_id``."""
    rows = await db.fetch("SELECT skill_id, name FROM skills WHERE tenant_id = $1", tenant_id)
    return {r["skill_id"]: r["name"] for r in rows}


async def _timezone(db: Queryable, tenant_id: str, user_id: str) -> str:
    found = await db.fetchval(
        "SELECT timezone FROM learner_profiles WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        user_id,
    )
    return str(found) if found else "UTC"


def _with_names(rows: Sequence[SkillMastery], names: Mapping[str, str]) -> list[NamedSkillMastery]:
    return [
        NamedSkillMastery(
            s.skill_id,
            names.get(s.skill_id, s.skill_id),
            s.p_mastery,
            s.label,
            s.attempts,
            s.correct,
            s.last_attempt_at,
            s.updated_at,
        )
        for s in rows
    ]


async def open_gaps(
    db: Queryable, *, tenant_id: str, learner_id: str, names: Mapping[str, str]
) -> list[Gap]:
    """The learner's open gaps, most severe first."""
    rows = await db.fetch(
        """
        SELECT skill_id, severity, confidence, p_mastery, attempts, blocked_skills, opened_at
        FROM knowledge_gaps WHERE tenant_id = $1 AND user_id = $2 AND status = 'open'
        ORDER BY severity DESC, skill_id LIMIT $3
        """,
        tenant_id,
        learner_id,
        MAX_LISTED,
    )
    return [
        Gap(
            r["skill_id"],
            names.get(r["skill_id"], r["skill_id"]),
            r["severity"],
            gap_band(r["severity"]),
            r["confidence"],
            r["p_mastery"],
            r["attempts"],
            r["blocked_skills"],
            r["opened_at"],
        )
        for r in rows
    ]


async def due_reviews(
    db: Queryable, *, tenant_id: str, learner_id: str, now: datetime
) -> DueReviews:
    """Reviews due by ``now`` (oldest first, with titles) and the count due within a day."""
    due_now, due_soon = await reviews_view.due_counts(
        db, tenant_id=tenant_id, user_id=learner_id, now=now, soon_until=now + DUE_SOON
    )
    rows = await reviews_view.due_list(
        db, tenant_id=tenant_id, user_id=learner_id, now=now, limit=MAX_LISTED
    )
    return DueReviews(
        due_now,
        due_soon,
        [DueReview(r["item_id"], r["title"], r["due_at"], r["reviews"]) for r in rows],
    )


async def trend(
    db: Queryable, *, tenant_id: str, learner_id: str, timezone: str, days: int, today: date
) -> Trend:
    """Daily answers and accuracy over ``days`` days ending on the latest active day."""
    latest = await db.fetchval(
        "SELECT max(occurred_at) FROM attempts WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        learner_id,
    )
    zone = ZoneInfo(timezone)
    last = latest.astimezone(zone).date() if latest is not None else today
    first = last - timedelta(days=days - 1)
    start = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    rows = await db.fetch(
        """
        SELECT (occurred_at AT TIME ZONE $3)::date AS day, count(*) AS attempts,
               count(*) FILTER (WHERE correct) AS correct,
               count(DISTINCT s.skill_id) AS skills
        FROM attempts a CROSS JOIN LATERAL unnest(a.skill_ids) AS s(skill_id)
        WHERE a.tenant_id = $1 AND a.user_id = $2 AND a.occurred_at >= $4 AND a.occurred_at < $5
        GROUP BY 1
        """,
        tenant_id,
        learner_id,
        timezone,
        start,
        end,
    )
    # The lateral join repeats an answer once per skill; count answers, not pairs.
    answers = await db.fetch(
        """
        SELECT (occurred_at AT TIME ZONE $3)::date AS day, count(*) AS attempts,
               count(*) FILTER (WHERE correct) AS correct
        FROM attempts WHERE tenant_id = $1 AND user_id = $2
          AND occurred_at >= $4 AND occurred_at < $5
        GROUP BY 1
        """,
        tenant_id,
        learner_id,
        timezone,
        start,
        end,
    )
    skills = {r["day"]: r["skills"] for r in rows}
    per_day = {r["day"]: (r["attempts"], r["correct"], skills.get(r["day"], 0)) for r in answers}
    return Trend(timezone, first, last, fill_days(per_day, first=first, last=last))


async def _active_days(db: Queryable, tenant_id: str, learner_id: str, timezone: str) -> list[date]:
    rows = await db.fetch(
        """
        SELECT DISTINCT (occurred_at AT TIME ZONE $3)::date AS day
        FROM attempts WHERE tenant_id = $1 AND user_id = $2
        """,
        tenant_id,
        learner_id,
        timezone,
    )
    return [r["day"] for r in rows]


async def _answer_milestone_times(
    db: Queryable, tenant_id: str, learner_id: str
) -> tuple[int, dict[int, datetime]]:
    total = await db.fetchval(
        "SELECT count(*) FROM attempts WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        learner_id,
    )
    rows = await db.fetch(
        """
        SELECT n, occurred_at FROM (
            SELECT occurred_at, row_number() OVER (ORDER BY occurred_at, event_id) AS n
            FROM attempts WHERE tenant_id = $1 AND user_id = $2) numbered
        WHERE n = ANY($3::bigint[])
        """,
        tenant_id,
        learner_id,
        list(ANSWER_MILESTONES),
    )
    return int(total), {int(r["n"]): r["occurred_at"] for r in rows}


async def _ability(db: Queryable, tenant_id: str, learner_id: str) -> Ability | None:
    row = await ability_view.learner_ability(db, tenant_id=tenant_id, user_id=learner_id)
    return Ability(row["ability"], row["ability_se"], row["n_responses"]) if row else None


async def _class_mean_scores(
    db: Queryable, tenant_id: str, learner_ids_: Sequence[str]
) -> dict[str, float]:
    """Learner id -> mean p_mastery over practised skills, for learners with evidence."""
    rows = await db.fetch(
        """
        SELECT user_id, avg(p_mastery) AS score FROM skill_mastery
        WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND attempts > 0
        GROUP BY user_id
        """,
        tenant_id,
        list(learner_ids_),
    )
    return {r["user_id"]: float(r["score"]) for r in rows}


async def standings(
    db: Queryable, *, tenant_id: str, user_id: str, learner_id: str, min_class_size: int
) -> list[Standing]:
    """The learner's standing in each class they are enrolled in as a learner."""
    classes = await db.fetch(
        """
        SELECT c.class_id, c.name FROM classes c
        JOIN class_members m ON m.tenant_id = c.tenant_id AND m.class_id = c.class_id
        WHERE c.tenant_id = $1 AND m.user_id::text = $2 AND m.member_role = 'learner'
        ORDER BY c.name, c.class_id
        """,
        tenant_id,
        user_id,
    )
    found = []
    for row in classes:
        members = await db.fetch(
            "SELECT user_id::text AS user_id FROM class_members "
            "WHERE tenant_id = $1 AND class_id = $2 AND member_role = 'learner'",
            tenant_id,
            row["class_id"],
        )
        mapping = await learner_ids.learner_ids_of(
            db, tenant_id=tenant_id, user_ids=[m["user_id"] for m in members]
        )
        scores = await _class_mean_scores(db, tenant_id, list(mapping.values()))
        found.append(
            class_standing(
                class_id=str(row["class_id"]),
                class_name=row["name"],
                own_score=scores.get(learner_id),
                class_scores=list(scores.values()),
                min_class_size=min_class_size,
            )
        )
    return found


async def recent_feedback(db: Queryable, *, tenant_id: str, user_id: str) -> list[FeedbackGiven]:
    """The learner's latest feedback on recommendations, newest first."""
    rows = await db.fetch(
        """
        SELECT item_id, verdict, given_at FROM recommendation_feedback
        WHERE tenant_id = $1 AND user_id::text = $2 ORDER BY given_at DESC LIMIT $3
        """,
        tenant_id,
        user_id,
        MAX_LISTED,
    )
    return [FeedbackGiven(r["item_id"], r["verdict"], r["given_at"]) for r in rows]


async def learner_dashboard(
    db: Queryable,
    *,
    tenant_id: str,
    user_id: str,
    now: datetime,
    trend_days: int,
    min_class_size: int,
) -> LearnerDashboard:
    """The learner view of account ``user_id`` (NotFoundError if no such account)."""
    learner_id = await learner_ids.require_learner_id(db, tenant_id=tenant_id, user_id=user_id)
    display_name = await db.fetchval(
        "SELECT display_name FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, user_id
    )
    names = await skill_names(db, tenant_id)
    timezone = await _timezone(db, tenant_id, user_id)
    today = now.astimezone(ZoneInfo(timezone)).date()
    skills = await learner_mastery(db, tenant_id=tenant_id, user_id=learner_id)
    streaks = streak(await _active_days(db, tenant_id, learner_id, timezone), today=today)
    answers, nth = await _answer_milestone_times(db, tenant_id, learner_id)
    mastered = sum(1 for s in skills if s.label is MasteryLabel.MASTERED)
    return LearnerDashboard(
        user_id=user_id,
        learner_id=learner_id,
        display_name=display_name or "",
        generated_at=now,
        mastery=_with_names(skills, names),
        mean_p_mastery=mean_mastery(skills),
        label_counts=dict(Counter(s.label.value for s in skills)),
        ability=await _ability(db, tenant_id, learner_id),
        gaps=await open_gaps(db, tenant_id=tenant_id, learner_id=learner_id, names=names),
        due_reviews=await due_reviews(db, tenant_id=tenant_id, learner_id=learner_id, now=now),
        recommendations=await recommendations_part(db, tenant_id=tenant_id, learner_id=learner_id),
        trend=await trend(
            db,
            tenant_id=tenant_id,
            learner_id=learner_id,
            timezone=timezone,
            days=trend_days,
            today=today,
        ),
        streak=streaks,
        milestones=milestones(
            answers=answers,
            nth_answer_at=nth,
            skills_mastered=mastered,
            longest_streak_days=streaks.longest_days,
        ),
        class_standing=await standings(
            db,
            tenant_id=tenant_id,
            user_id=user_id,
            learner_id=learner_id,
            min_class_size=min_class_size,
        ),
        notifications=await notifications_part(
            db, tenant_id=tenant_id, learner_id=learner_id, now=now
        ),
        placement=await placement.latest_result(db, tenant_id=tenant_id, user_id=user_id),
        feedback=await recent_feedback(db, tenant_id=tenant_id, user_id=user_id),
    )
