"""Dashboards: what a learner sees about themself, and a teacher's overview of a class.

Everything is read from the views the processors write (``skill_mastery``,
``learner_ability``, ``knowledge_gaps``, ``review_schedule``, ``attempts``) under the
learner id of each account (:mod:`api.services.learner_ids`), in the caller's tenant.
The rules that turn rows into what a dashboard says are pure functions here
(streaks, milestones, percentiles, gap bands, risk), tested on their own.

Where a view does not exist yet (recommendations, the notification inbox) the
dashboard says ``available: false`` with the reason instead of inventing content.

Days are calendar days in the learner's profile timezone (UTC without a profile).
The progress trend covers the ``days`` days that end on the learner's latest active
day, so a learner back from a break, or a replayed historical log, shows its last
stretch of work rather than an empty month.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from api.exceptions import NotFoundError
from api.services import learner_ids, placement
from api.services.classes import MemberRole, SchoolClass
from api.services.identifiers import is_uuid
from api.services.mastery import (
    FAMILIAR_AT,
    MasteryLabel,
    SkillMastery,
    learner_mastery,
    skill_mastery_from_row,
)

# Milestones: answers given, skills mastered, longest streak (days). Thresholds are
# the conventional round numbers learners recognise.
ANSWER_MILESTONES = (1, 10, 50, 100, 500, 1000)
MASTERY_MILESTONES = (1, 5, 10, 25)
STREAK_MILESTONES = (3, 7, 30)

# Gap severity bands (severity in [0, 1]): lower bounds of "medium" and "high".
MEDIUM_GAP_AT = 0.33
HIGH_GAP_AT = 0.66

# A learner is at risk when any of these holds (see :func:`risk_reasons`).
RISK_SEVERE_GAP_AT = 0.6  # an open gap at least this severe
RISK_LOW_MASTERY_MIN_ATTEMPTS = 10  # enough answers for a low mean mastery to count
RISK_OVERDUE_REVIEWS = 20  # this many reviews overdue
RISK_INACTIVE_DAYS = 14  # no answer for this many days while reviews are overdue

DUE_SOON = timedelta(hours=24)
MAX_LISTED = 20  # due reviews, gaps and feedback rows listed per dashboard


# --- pure rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Streak:
    """Practice streaks in days: ``current`` ends today or yesterday (0 otherwise)."""

    current_days: int
    longest_days: int
    active_days: int
    last_active_on: date | None


def streak(active_days: Iterable[date], *, today: date) -> Streak:
    """Streaks from the distinct days with at least one answer, as of ``today``.

    A streak is a run of consecutive days; the current one is still alive if its
    last day is today or yesterday (today's practice may not have happened yet).
    """
    days = sorted(set(active_days))
    if not days:
        return Streak(0, 0, 0, None)
    longest = run = 1
    for before, after in pairwise(days):
        run = run + 1 if after - before == timedelta(days=1) else 1
        longest = max(longest, run)
    current = run if today - days[-1] <= timedelta(days=1) else 0
    return Streak(current, longest, len(days), days[-1])


@dataclass(frozen=True, slots=True)
class Milestone:
    """One milestone: ``progress`` of ``target`` (achieved when progress >= target).

    ``achieved_at`` (UTC) is known for answer counts (the time of the n-th answer);
    mastery and streak milestones only say whether they are reached.
    """

    key: str
    title: str
    target: int
    progress: int
    achieved: bool
    achieved_at: datetime | None


def milestones(
    *,
    answers: int,
    nth_answer_at: Mapping[int, datetime],
    skills_mastered: int,
    longest_streak_days: int,
) -> list[Milestone]:
    """Every milestone with its progress; answer milestones carry when they were reached."""
    found = [
        Milestone(
            f"answers_{n}",
            "first answer" if n == 1 else f"{n} answers",
            n,
            min(answers, n),
            answers >= n,
            nth_answer_at.get(n) if answers >= n else None,
        )
        for n in ANSWER_MILESTONES
    ]
    found += [
        Milestone(
            f"mastered_{n}",
            f"{n} skill{'s' if n > 1 else ''} mastered",
            n,
            min(skills_mastered, n),
            skills_mastered >= n,
            None,
        )
        for n in MASTERY_MILESTONES
    ]
    found += [
        Milestone(
            f"streak_{n}",
            f"{n}-day streak",
            n,
            min(longest_streak_days, n),
            longest_streak_days >= n,
            None,
        )
        for n in STREAK_MILESTONES
    ]
    return found


def percentile_rank(value: float, population: Sequence[float]) -> float:
    """Percentile rank (0-100) of ``value`` within ``population`` (which includes it).

    Mid-rank convention: (below + ½ · equal) / n · 100, so the middle of a class is 50
    and ties share one rank.
    """
    if not population:
        raise ValueError("percentile of an empty population")
    below = sum(1 for v in population if v < value)
    equal = sum(1 for v in population if v == value)
    return 100.0 * (below + 0.5 * equal) / len(population)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a learner stands in one class; never names or shows a classmate."""

    class_id: str
    class_name: str
    available: bool
    percentile: float | None  # 0-100 of the class's mean mastery
    learners_compared: int  # classmates with evidence, the learner included
    reason: str | None  # why it is not available


def class_standing(
    *,
    class_id: str,
    class_name: str,
    own_score: float | None,
    class_scores: Sequence[float],
    min_class_size: int,
) -> Standing:
    """Standing from mean-mastery scores (each in [0, 1]) of the class's learners.

    ``class_scores`` covers learners with evidence, the learner included when they have
    any. Withheld while the learner has no evidence, or while fewer than
    ``min_class_size`` learners do (in a class of two, a percentile reveals the other).
    """
    if own_score is None:
        return Standing(class_id, class_name, False, None, len(class_scores), "no evidence yet")
    if len(class_scores) < min_class_size:
        return Standing(
            class_id,
            class_name,
            False,
            None,
            len(class_scores),
            f"fewer than {min_class_size} learners with evidence in this class",
        )
    return Standing(
        class_id,
        class_name,
        True,
        round(percentile_rank(own_score, class_scores), 1),
        len(class_scores),
        None,
    )


def mean_mastery(skills: Iterable[SkillMastery]) -> float | None:
    """Mean p_mastery over skills with at least one attempt; None if there are none."""
    practised = [s.p_mastery for s in skills if s.attempts > 0]
    return sum(practised) / len(practised) if practised else None


def gap_band(severity: float) -> str:
    """ "low", "medium" or "high" for a gap severity in [0, 1]."""
    if severity >= HIGH_GAP_AT:
        return "high"
    if severity >= MEDIUM_GAP_AT:
        return "medium"
    return "low"


@dataclass(frozen=True, slots=True)
class LearnerSignals:
    """What the risk rules look at for one learner; times UTC."""

    open_gap_severities: Sequence[tuple[str, float]]  # (skill, severity)
    mean_p_mastery: float | None
    total_attempts: int
    overdue_reviews: int
    last_attempt_at: datetime | None


def risk_reasons(signals: LearnerSignals, *, now: datetime) -> list[str]:
    """Why a learner is at risk, one sentence per rule that holds; empty if none."""
    reasons = []
    severe = sorted(
        (skill for skill, sev in signals.open_gap_severities if sev >= RISK_SEVERE_GAP_AT)
    )
    if severe:
        reasons.append(
            f"{len(severe)} severe knowledge gap{'s' if len(severe) > 1 else ''}: "
            + ", ".join(severe[:5])
        )
    if (
        signals.mean_p_mastery is not None
        and signals.mean_p_mastery < FAMILIAR_AT
        and signals.total_attempts >= RISK_LOW_MASTERY_MIN_ATTEMPTS
    ):
        reasons.append(
            f"low mastery: mean {signals.mean_p_mastery:.2f} after {signals.total_attempts} answers"
        )
    if signals.overdue_reviews >= RISK_OVERDUE_REVIEWS:
        reasons.append(f"{signals.overdue_reviews} reviews overdue")
    if signals.last_attempt_at is not None and signals.overdue_reviews > 0:
        idle = now - signals.last_attempt_at
        if idle >= timedelta(days=RISK_INACTIVE_DAYS):
            reasons.append(
                f"inactive for {idle.days} days with {signals.overdue_reviews} reviews due"
            )
    return reasons


@dataclass(frozen=True, slots=True)
class TrendDay:
    """One day of the progress trend; ``accuracy`` in [0, 1] or None without answers."""

    day: date
    attempts: int
    correct: int
    accuracy: float | None
    skills_practised: int


def fill_days(
    rows: Mapping[date, tuple[int, int, int]], *, first: date, last: date
) -> list[TrendDay]:
    """Every day from ``first`` to ``last``: (attempts, correct, skills) from ``rows``, else 0."""
    days = []
    day = first
    while day <= last:
        attempts, correct, skills = rows.get(day, (0, 0, 0))
        days.append(
            TrendDay(day, attempts, correct, correct / attempts if attempts else None, skills)
        )
        day += timedelta(days=1)
    return days


# --- learner dashboard ---------------------------------------------------------------------


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
class Recommendation:
    """One ranked recommendation and why; ``score`` from scheduler.scoring; times UTC."""

    rank: int
    item_id: str
    title: str | None  # None when the item is no longer published
    kind: str
    skill_ids: list[str]
    score: float
    reason: str  # due_review, gap, difficulty_match, learning_path, variety
    reason_detail: str
    strategy: str
    computed_at: datetime
    feedback: str | None  # the learner's latest verdict on this item


@dataclass(frozen=True, slots=True)
class Recommendations:
    """The learner's recommendations, or ``available: false`` and why not."""

    available: bool
    reason: str | None
    items: list[Recommendation]


@dataclass(frozen=True, slots=True)
class Notification:
    """One inbox entry; ``created_at``/``read_at`` UTC."""

    notification_id: str
    kind: str  # review_due, milestone, streak, strategy_suggestion
    title: str
    body: str
    item_ids: list[str]
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class Inbox:
    """The notification inbox (delivered entries, newest first), or why it is missing."""

    available: bool
    reason: str | None
    unread: int
    items: list[Notification]


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


async def _skill_names(db: Any, tenant_id: str) -> dict[str, str]:
    rows = await db.fetch("SELECT skill_id, name FROM skills WHERE tenant_id = $1", tenant_id)
    return {r["skill_id"]: r["name"] for r in rows}


async def _timezone(db: Any, tenant_id: str, user_id: str) -> str:
    found = await db.fetchval(
        "SELECT timezone FROM learner_profiles WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        user_id,
    )
    return str(found) if found else "UTC"


async def _view_exists(db: Any, name: str) -> bool:
    return bool(await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{name}"))


# The recommendation and notification processors own these views; a deployment without
# them (or with a shape this API does not know) gets "available: false" and the reason.
_UNREADABLE = (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError)

_RECOMMENDATIONS = """
    SELECT r.rank, r.item_id, p.title, r.kind, r.skill_ids, r.score, r.reason, r.reason_detail,
           r.strategy, r.computed_at,
           (SELECT f.verdict FROM recommendation_feedback f
            WHERE f.tenant_id = r.tenant_id AND f.learner_id = r.user_id AND f.item_id = r.item_id
            ORDER BY f.given_at DESC LIMIT 1) AS feedback
    FROM recommendations r
    LEFT JOIN published_content p ON p.tenant_id = r.tenant_id AND p.item_id = r.item_id
    WHERE r.tenant_id = $1 AND r.user_id = $2
    ORDER BY r.rank LIMIT $3
"""


async def recommendations_part(db: Any, *, tenant_id: str, learner_id: str) -> Recommendations:
    """Ranked recommendations with reasons, from the ``recommendations`` view if it exists."""
    if not await _view_exists(db, "recommendations"):
        return Recommendations(
            False, "no recommendations view in this deployment yet (processors/recommend)", []
        )
    try:
        rows = await db.fetch(_RECOMMENDATIONS, tenant_id, learner_id, MAX_LISTED)
    except _UNREADABLE as exc:
        return Recommendations(False, f"recommendations view not readable: {exc}", [])
    return Recommendations(
        True,
        None,
        [
            Recommendation(
                r["rank"],
                r["item_id"],
                r["title"],
                r["kind"],
                list(r["skill_ids"]),
                r["score"],
                r["reason"],
                r["reason_detail"],
                r["strategy"],
                r["computed_at"],
                r["feedback"],
            )
            for r in rows
        ],
    )


# A review digest lists every item due when it was made, so the newest one supersedes
# the older ones: the inbox shows (and counts) only that one, not one per past day.
_INBOX = """
    SELECT notification_id, kind, title, body, item_ids, created_at, read_at,
           count(*) FILTER (WHERE read_at IS NULL) OVER () AS unread
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY kind = 'review_due' ORDER BY created_at DESC, notification_id
        ) AS newest_first
        FROM notifications
        WHERE tenant_id = $1 AND user_id = $2 AND deliver_after <= $3
    ) delivered
    WHERE kind <> 'review_due' OR newest_first = 1
    ORDER BY created_at DESC, notification_id LIMIT $4
"""


async def notifications_part(db: Any, *, tenant_id: str, learner_id: str, now: datetime) -> Inbox:
    """The inbox: notifications delivered by ``now`` (quiet hours respected), newest first.

    Of the review digests only the newest is listed: it supersedes the earlier ones.
    """
    if not await _view_exists(db, "notifications"):
        return Inbox(
            False, "no notifications view in this deployment yet (processors/notify)", 0, []
        )
    try:
        rows = await db.fetch(_INBOX, tenant_id, learner_id, now, MAX_LISTED)
    except _UNREADABLE as exc:
        return Inbox(False, f"notifications view not readable: {exc}", 0, [])
    return Inbox(
        True,
        None,
        int(rows[0]["unread"]) if rows else 0,
        [
            Notification(
                str(r["notification_id"]),
                r["kind"],
                r["title"],
                r["body"],
                list(r["item_ids"]),
                r["created_at"],
                r["read_at"],
            )
            for r in rows
        ],
    )


async def mark_notification_read(
    db: Any, *, tenant_id: str, learner_id: str, notification_id: str, now: datetime
) -> datetime:
    """Mark one of the learner's notifications read (idempotent); returns ``read_at``.

    NotFoundError when the learner has no such notification, or the view is missing.
    """
    found = None
    if is_uuid(notification_id) and await _view_exists(db, "notifications"):
        found = await db.fetchval(
            """
            UPDATE notifications SET read_at = coalesce(read_at, $4)
            WHERE tenant_id = $1 AND user_id = $2 AND notification_id = $3
            RETURNING read_at
            """,
            tenant_id,
            learner_id,
            notification_id,
            now,
        )
    if found is None:
        raise NotFoundError(
            "no such notification for this learner",
            field="path.notification_id",
            reason="not found",
        )
    read_at: datetime = found
    return read_at


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
    db: Any, *, tenant_id: str, learner_id: str, names: Mapping[str, str]
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


async def due_reviews(db: Any, *, tenant_id: str, learner_id: str, now: datetime) -> DueReviews:
    """Reviews due by ``now`` (oldest first, with titles) and the count due within a day."""
    counts = await db.fetchrow(
        """
        SELECT count(*) FILTER (WHERE due_at <= $3) AS due_now,
               count(*) FILTER (WHERE due_at > $3 AND due_at <= $4) AS due_soon
        FROM review_schedule WHERE tenant_id = $1 AND user_id = $2
        """,
        tenant_id,
        learner_id,
        now,
        now + DUE_SOON,
    )
    rows = await db.fetch(
        """
        SELECT r.item_id, p.title, r.due_at, r.reviews
        FROM review_schedule r
        LEFT JOIN published_content p ON p.tenant_id = r.tenant_id AND p.item_id = r.item_id
        WHERE r.tenant_id = $1 AND r.user_id = $2 AND r.due_at <= $3
        ORDER BY r.due_at, r.item_id LIMIT $4
        """,
        tenant_id,
        learner_id,
        now,
        MAX_LISTED,
    )
    return DueReviews(
        counts["due_now"],
        counts["due_soon"],
        [DueReview(r["item_id"], r["title"], r["due_at"], r["reviews"]) for r in rows],
    )


async def trend(
    db: Any, *, tenant_id: str, learner_id: str, timezone: str, days: int, today: date
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


async def _active_days(db: Any, tenant_id: str, learner_id: str, timezone: str) -> list[date]:
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
    db: Any, tenant_id: str, learner_id: str
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


async def _ability(db: Any, tenant_id: str, learner_id: str) -> Ability | None:
    row = await db.fetchrow(
        "SELECT ability, ability_se, n_responses FROM learner_ability "
        "WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        learner_id,
    )
    return Ability(row["ability"], row["ability_se"], row["n_responses"]) if row else None


async def _class_mean_scores(
    db: Any, tenant_id: str, learner_ids_: Sequence[str]
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
    db: Any, *, tenant_id: str, user_id: str, learner_id: str, min_class_size: int
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


async def recent_feedback(db: Any, *, tenant_id: str, user_id: str) -> list[FeedbackGiven]:
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
    db: Any,
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
    names = await _skill_names(db, tenant_id)
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


# --- class overview (teachers) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeatmapRow:
    """One learner's row of the heat map: cells align with the overview's ``skills``."""

    user_id: str
    display_name: str
    learner_id: str
    p_mastery: list[float | None]  # None: no evidence on that skill
    labels: list[str | None]
    mean_p_mastery: float | None
    last_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class SkillColumn:
    """A skill of the class with its summary over the class's learners."""

    skill_id: str
    name: str
    learners_with_evidence: int
    mean_p_mastery: float | None
    label_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class AtRisk:
    user_id: str
    display_name: str
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class CommonGap:
    """A skill that is an open gap for ``learners`` learners of the class."""

    skill_id: str
    name: str
    learners: int
    mean_severity: float


@dataclass(frozen=True, slots=True)
class ClassOverview:
    class_id: str
    name: str
    generated_at: datetime
    learners: int
    skills: list[SkillColumn]
    heatmap: list[HeatmapRow]
    at_risk: list[AtRisk]
    common_gaps: list[CommonGap]


async def class_overview(db: Any, school_class: SchoolClass, *, now: datetime) -> ClassOverview:
    """Heat map, per-skill summary, learners at risk and common gaps of a class.

    The caller checked that the principal manages ``school_class``.
    """
    tenant_id = school_class.tenant_id
    members = [m for m in school_class.members if m.member_role is MemberRole.LEARNER]
    mapping = await learner_ids.learner_ids_of(
        db, tenant_id=tenant_id, user_ids=[m.user_id for m in members]
    )
    ids = [mapping[m.user_id] for m in members if m.user_id in mapping]
    names = await _skill_names(db, tenant_id)
    rows = await db.fetch(
        """
        SELECT user_id, skill_id, p_mastery, attempts, correct, last_attempt_at, updated_at
        FROM skill_mastery WHERE tenant_id = $1 AND user_id = ANY($2::text[])
        """,
        tenant_id,
        ids,
    )
    by_learner: dict[str, dict[str, SkillMastery]] = {i: {} for i in ids}
    for row in rows:
        by_learner[row["user_id"]][row["skill_id"]] = skill_mastery_from_row(row)
    skill_ids = sorted({skill for cells in by_learner.values() for skill in cells})
    gaps = await db.fetch(
        """
        SELECT user_id, skill_id, severity FROM knowledge_gaps
        WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND status = 'open'
        """,
        tenant_id,
        ids,
    )
    gaps_by_learner: dict[str, list[tuple[str, float]]] = {}
    for g in gaps:
        gaps_by_learner.setdefault(g["user_id"], []).append((g["skill_id"], g["severity"]))
    overdue = {
        r["user_id"]: r["overdue"]
        for r in await db.fetch(
            """
            SELECT user_id, count(*) AS overdue FROM review_schedule
            WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND due_at <= $3
            GROUP BY user_id
            """,
            tenant_id,
            ids,
            now,
        )
    }
    heatmap = []
    at_risk = []
    for member in members:
        learner_id = mapping.get(member.user_id)
        if learner_id is None:
            continue
        cells = by_learner.get(learner_id, {})
        last = max((c.last_attempt_at for c in cells.values() if c.attempts > 0), default=None)
        mean = mean_mastery(cells.values())
        heatmap.append(
            HeatmapRow(
                member.user_id,
                member.display_name,
                learner_id,
                [cells[s].p_mastery if s in cells else None for s in skill_ids],
                [cells[s].label.value if s in cells else None for s in skill_ids],
                mean,
                last,
            )
        )
        reasons = risk_reasons(
            LearnerSignals(
                open_gap_severities=gaps_by_learner.get(learner_id, []),
                mean_p_mastery=mean,
                total_attempts=sum(c.attempts for c in cells.values()),
                overdue_reviews=int(overdue.get(learner_id, 0)),
                last_attempt_at=last,
            ),
            now=now,
        )
        if reasons:
            at_risk.append(AtRisk(member.user_id, member.display_name, reasons))
    at_risk.sort(key=lambda r: (-len(r.reasons), r.display_name, r.user_id))
    columns = []
    for skill in skill_ids:
        cells_of_skill = [c[skill] for c in by_learner.values() if skill in c]
        practised = [c for c in cells_of_skill if c.attempts > 0]
        columns.append(
            SkillColumn(
                skill,
                names.get(skill, skill),
                len(practised),
                sum(c.p_mastery for c in practised) / len(practised) if practised else None,
                dict(Counter(c.label.value for c in cells_of_skill)),
            )
        )
    return ClassOverview(
        class_id=school_class.class_id,
        name=school_class.name,
        generated_at=now,
        learners=len(members),
        skills=columns,
        heatmap=heatmap,
        at_risk=at_risk,
        common_gaps=common_gaps(gaps_by_learner, names),
    )


def common_gaps(
    gaps_by_learner: Mapping[str, Sequence[tuple[str, float]]], names: Mapping[str, str]
) -> list[CommonGap]:
    """Skills by how many learners have them as an open gap (then by mean severity)."""
    severities: dict[str, list[float]] = {}
    for gaps in gaps_by_learner.values():
        for skill, sev in gaps:
            severities.setdefault(skill, []).append(sev)
    found = [
        CommonGap(skill, names.get(skill, skill), len(values), sum(values) / len(values))
        for skill, values in severities.items()
    ]
    found.sort(key=lambda g: (-g.learners, -g.mean_severity, g.skill_id))
    return found[:MAX_LISTED]
