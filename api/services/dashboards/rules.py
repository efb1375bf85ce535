"""The rules that turn view rows into what a dashboard says: streaks, milestones,
percentiles and class standing, gap bands, risk, filled trend days, common gaps.

Pure functions over small frozen dataclasses (no I/O), tested on their own in
tests/unit/api/test_dashboards.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise

from api.services.mastery import FAMILIAR_AT, SkillMastery

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


@dataclass(frozen=True, slots=True)
class CommonGap:
    """A skill that is an open gap for ``learners`` learners of the class."""

    skill_id: str
    name: str
    learners: int
    mean_severity: float


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
