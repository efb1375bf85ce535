"""Recommendations: rank a tenant's published content for one learner, with a reason each.

Pure glue over :mod:`scheduler.scoring` (score and greedy session selection),
:mod:`scheduler.path` (learning path) and :mod:`scheduler.gaps` (gap severity); the
stream adapter is :mod:`processors.recommendations`. Time is always an argument.

Candidates are the catalog the caller passes (only published content: the caller
reads the ``published_content`` view), in two families:

* practice items (``question``, ``code_exercise``): every one is a candidate;
* learning resources (``lesson``, ``reading``, ``video``): a candidate only when one
  of its skills is an open gap or the next skill on the learning path. A resource has
  no IRT difficulty, so it gets no difficulty-match credit (its ``b`` is placed far
  above the learner's ability, where the match component is ~0).

An item tagged with several skills is scored on the skill with the largest gap
severity (ties: the first tag). The learner's per-skill ability is
``logit(p_mastery)`` (clipped to [0.02, 0.98], unseen skills 0.5), a proxy that
depends only on the learner's own mastery stream; item ``b``/``a`` come from IRT
calibration when present, else ``b = 0``, ``a = 1``.

The session strategy (chosen by :mod:`scheduler.bandit`) re-weights the score:
``review`` favours due reviews, ``practice`` gaps and difficulty match, ``mock_test``
difficulty match and drops learning resources. "Helped similar learners" is not
produced: no collaborative table exists yet to compute it from honestly.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from scheduler.bandit import SessionStrategy
from scheduler.exceptions import PrerequisiteCycleError
from scheduler.gaps import DEFAULT_GAP_CONFIG, ConceptGraph, GapConfig, GapState, assess
from scheduler.path import learning_path, path_priority
from scheduler.scoring import (
    DEFAULT_WEIGHTS,
    Candidates,
    PickReason,
    ScoringWeights,
    SessionConstraints,
    SessionPick,
    select_session,
)

PRACTICE_KINDS = ("question", "code_exercise")
RESOURCE_KINDS = ("lesson", "reading", "video")
ALL_KINDS = (*PRACTICE_KINDS, *RESOURCE_KINDS)
# Minutes an item takes when its payload does not say (``expected_minutes``).
DEFAULT_MINUTES = {
    "question": 2.0,
    "code_exercise": 10.0,
    "lesson": 8.0,
    "reading": 6.0,
    "video": 8.0,
}
UNSEEN_P_MASTERY = 0.5  # ability proxy of a skill with no evidence yet
# Offset (logits) that puts a resource's pseudo-difficulty out of the match band.
_NO_MATCH_OFFSET = 20.0

STRATEGY_WEIGHTS: Mapping[SessionStrategy, ScoringWeights] = {
    SessionStrategy.PRACTICE: replace(
        DEFAULT_WEIGHTS, due_review=0.5, gap=1.0, difficulty_match=0.8
    ),
    SessionStrategy.REVIEW: replace(DEFAULT_WEIGHTS, due_review=1.5, gap=0.5),
    SessionStrategy.MOCK_TEST: replace(
        DEFAULT_WEIGHTS, due_review=0.3, gap=0.3, difficulty_match=1.2, learning_path=0.2
    ),
}


@dataclass(frozen=True, slots=True)
class ContentItem:
    """One published item: ids, kind, skills, IRT parameters (logits) and minutes (> 0)."""

    item_id: str
    kind: str  # one of ALL_KINDS
    title: str
    skill_ids: tuple[str, ...]
    difficulty: float = 0.0  # IRT b
    discrimination: float = 1.0  # IRT a, > 0
    expected_minutes: float = 2.0


@dataclass(frozen=True, slots=True)
class SkillEvidence:
    """A learner's mastery of one skill: p_mastery in [0, 1], answers so far, last answer (UTC)."""

    p_mastery: float
    attempts: int
    last_evidence_at: datetime


@dataclass(frozen=True, slots=True)
class RecommendConfig:
    """Session limits, the mastery bar (probability) and how far the path horizon reaches."""

    constraints: SessionConstraints = field(
        default_factory=lambda: SessionConstraints(
            time_budget_minutes=30.0, max_items=10, max_items_per_skill=3, max_items_per_type=6
        )
    )
    mastered_at: float = 0.95
    path_horizon: int = 3
    gaps: GapConfig = DEFAULT_GAP_CONFIG


DEFAULT_RECOMMEND_CONFIG = RecommendConfig()


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One recommendation: the item, its kind and skills, score (rank order) and reason."""

    rank: int  # 1 = best
    item_id: str
    kind: str
    skill_ids: tuple[str, ...]
    score: float
    reason: PickReason
    reason_detail: str


def ability_of(p_mastery: float) -> float:
    """Per-skill ability proxy (logits): logit of p_mastery clipped to [0.02, 0.98]."""
    p = min(0.98, max(0.02, p_mastery))
    return math.log(p / (1.0 - p))


def gap_severities(
    mastery: Mapping[str, SkillEvidence],
    graph: ConceptGraph,
    now: datetime,
    config: GapConfig = DEFAULT_GAP_CONFIG,
) -> dict[str, float]:
    """Severity in (0, 1] of each skill that is an open gap now (others left out).

    Stateless :func:`scheduler.gaps.assess` (no previous state, so no hysteresis):
    the knowledge_gaps view keeps the hysteresis; here only the ranking needs it.
    """
    p_by_skill = {skill: ev.p_mastery for skill, ev in mastery.items()}
    severities: dict[str, float] = {}
    for skill, ev in sorted(mastery.items()):
        verdict = assess(
            skill_id=skill,
            previous=None,
            p_mastery=ev.p_mastery,
            attempts=ev.attempts,
            last_evidence_at=ev.last_evidence_at,
            now=now,
            graph=graph,
            learner_mastery=p_by_skill,
            config=config,
        )
        if verdict.state is GapState.OPEN and verdict.severity > 0:
            severities[skill] = verdict.severity
    return severities


def _detail(
    reason: PickReason,
    item: ContentItem,
    skill: str,
    *,
    overdue_days: float,
    severity: float,
    p_success: float,
) -> str:
    if reason is PickReason.DUE_REVIEW:
        return f"review due {overdue_days:.1f} days ago"
    if reason is PickReason.GAP:
        return f"closes a gap in {skill} (severity {severity:.2f})"
    if reason is PickReason.DIFFICULTY_MATCH:
        return f"P(success) {p_success:.2f} suits your level"
    if reason is PickReason.LEARNING_PATH:
        return f"next on your learning path: {skill}"
    return f"adds variety ({item.kind} on {skill})"


def _eligible(
    catalog: Sequence[ContentItem],
    severity: Mapping[str, float],
    near_path: set[str],
    strategy: SessionStrategy,
) -> list[tuple[ContentItem, str]]:
    """(item, the skill it is scored on) for every item the strategy may offer, by item id.

    Resources only for a skill with an open gap or near the learning path; untagged items never.
    """
    allowed_kinds = PRACTICE_KINDS if strategy is SessionStrategy.MOCK_TEST else ALL_KINDS
    eligible: list[tuple[ContentItem, str]] = []
    for item in sorted(catalog, key=lambda c: c.item_id):
        if item.kind not in allowed_kinds or not item.skill_ids:
            continue
        if item.kind in RESOURCE_KINDS and not any(
            s in severity or s in near_path for s in item.skill_ids
        ):
            continue
        # Score on the most severe gap among its skills; ties keep the first tag.
        skill = max(item.skill_ids, key=lambda s: (severity.get(s, 0.0), -item.skill_ids.index(s)))
        eligible.append((item, skill))
    return eligible


def _ranked(
    picks: Sequence[SessionPick],
    eligible: Sequence[tuple[ContentItem, str]],
    overdue: npt.NDArray[np.float64],
    severity: Mapping[str, float],
) -> list[RankedItem]:
    """The picks in order as :class:`RankedItem` (rank from 1) with their reason in words."""
    ranked: list[RankedItem] = []
    for rank, pick in enumerate(picks, start=1):
        item, skill = eligible[pick.candidate_index]
        ranked.append(
            RankedItem(
                rank=rank,
                item_id=item.item_id,
                kind=item.kind,
                skill_ids=item.skill_ids,
                score=pick.score,
                reason=pick.reason,
                reason_detail=_detail(
                    pick.reason,
                    item,
                    skill,
                    overdue_days=float(overdue[pick.candidate_index]),
                    severity=severity.get(skill, 0.0),
                    p_success=pick.p_success,
                ),
            )
        )
    return ranked


def recommend(
    catalog: Sequence[ContentItem],
    mastery: Mapping[str, SkillEvidence],
    due_at: Mapping[str, datetime],
    graph: ConceptGraph,
    requires: Mapping[str, Sequence[str]],
    now: datetime,
    strategy: SessionStrategy,
    config: RecommendConfig = DEFAULT_RECOMMEND_CONFIG,
) -> list[RankedItem]:
    """The learner's ranked next items over ``catalog`` (published content only).

    ``graph`` and ``requires`` are the same prerequisite graph (``requires[s]``: the
    skills ``s`` requires); a cycle in it leaves the learning path out. ``mastery``:
    the learner's skills with evidence; ``due_at``: item_id -> next review (UTC) for
    items with a review schedule; ``now``: event time (UTC). The
    result respects ``config.constraints`` (time budget, per-skill and per-type caps,
    max items) and only ever names items of ``catalog``; deterministic.
    """
    severity = gap_severities(mastery, graph, now, config.gaps)
    mastered = {s for s, ev in mastery.items() if ev.p_mastery >= config.mastered_at}
    tagged = sorted({s for item in catalog for s in item.skill_ids})
    try:
        path = learning_path(tagged, requires, mastered)
    except PrerequisiteCycleError:
        path = []  # the CMS refuses cycles; a hand-edited one only costs the path credit
    near_path = set(path[: config.path_horizon])

    eligible = _eligible(catalog, severity, near_path, strategy)
    if not eligible:
        return []

    skills = sorted({skill for _, skill in eligible})
    index = {skill: k for k, skill in enumerate(skills)}
    abilities = np.array(
        [ability_of(mastery[s].p_mastery if s in mastery else UNSEEN_P_MASTERY) for s in skills]
    )
    day = timedelta(days=1)
    overdue = np.array(
        [
            (now - due_at[item.item_id]) / day if item.item_id in due_at else math.nan
            for item, _ in eligible
        ]
    )
    difficulty = np.array(
        [
            abilities[index[skill]] + _NO_MATCH_OFFSET
            if item.kind in RESOURCE_KINDS
            else item.difficulty
            for item, skill in eligible
        ]
    )
    candidates = Candidates(
        item_ids=np.array([item.item_id for item, _ in eligible], dtype=object),
        skill_index=np.array([index[skill] for _, skill in eligible]),
        difficulty=difficulty,
        discrimination=np.array([item.discrimination for item, _ in eligible]),
        overdue_days=overdue,
        gap_severity=np.array([severity.get(skill, 0.0) for _, skill in eligible]),
        days_since_seen=np.full(len(eligible), math.inf),
        item_type=np.array([ALL_KINDS.index(item.kind) for item, _ in eligible]),
        expected_minutes=np.array([item.expected_minutes for item, _ in eligible]),
        path_priority=path_priority(path, skills, config.path_horizon)[
            np.array([index[skill] for _, skill in eligible])
        ],
    )
    picks = select_session(candidates, abilities, config.constraints, STRATEGY_WEIGHTS[strategy])
    return _ranked(picks, eligible, overdue, severity)


def starts_new_session(
    previous_session_id: str | None,
    previous_at: datetime | None,
    session_id: str,
    at: datetime,
    idle: timedelta = timedelta(minutes=30),
) -> bool:
    """True when an event at ``at`` opens a new learning session.

    A new session starts on the learner's first event, when the session_id changes,
    or after ``idle`` without events (event time; covers clients that send no
    session_id).
    """
    if previous_session_id is None or previous_at is None:
        return True
    return session_id != previous_session_id or at - previous_at > idle


def session_gain(start: Mapping[str, float], end: Mapping[str, float]) -> float:
    """Learning gain of a session, in [-1, 1]: mean over practised skills of Δp_mastery.

    ``start[s]`` is p_mastery of skill s before the session's first answer on it,
    ``end[s]`` after its last one; skills in only one mapping are ignored. 0 when none.
    """
    skills = sorted(set(start) & set(end))
    if not skills:
        return 0.0
    return sum(end[s] - start[s] for s in skills) / len(skills)


def strategy_seed(cause_event_id: str) -> int:
    """A 64-bit RNG seed from an event id, so a replayed Thompson draw is identical."""
    return uuid.UUID(cause_event_id).int & ((1 << 64) - 1)
