"""Knowledge gaps: is a learner's skill a gap, how severe, how sure, from BKT mastery.

Pure functions over the learner's per-skill evidence and the prerequisite graph;
time is an argument. The stream adapter is :mod:`processors.gaps`.

A skill's state is one of :class:`GapState`:

* ``insufficient_data``: too few answers (``min_attempts``), or a posterior too
  close to the decision threshold to call (``confidence < min_confidence``). This is
  stated explicitly instead of guessing either way.
* ``open``: enough evidence that the skill is not mastered (``p_mastery`` below
  ``open_below``).
* ``resolved``: an open gap whose mastery rose to ``resolve_at`` or more.
* ``clear``: enough evidence, no gap (the skill was never an open gap, or its
  mastery is in between the thresholds without having been open).

Hysteresis: an open gap stays open until ``p_mastery >= resolve_at`` (a higher bar
than ``open_below``), so a learner hovering around the threshold does not flap
between open and resolved on every answer.

Confidence is ``evidence × certainty``: ``evidence = 1 - exp(-attempts / evidence_scale)``
grows with the number of answers, ``certainty = |p - open_below| / max(open_below,
1 - open_below)`` is how far the BKT posterior sits from the threshold, scaled so the
far end of either side is 1. Both are in [0, 1], so the product is too.

Severity of an open gap, in [0, 1], is a weighted mean of three parts:

* deficit: ``(open_below - p) / open_below`` — how far below the bar;
* blocked: ``blocked / (blocked + blocked_scale)`` — how many not-yet-mastered skills
  depend on it, directly or through other skills (saturating);
* recency: ``0.5 ** (age / recency_half_life_s)`` — evidence of the gap seen recently
  matters more than evidence from months ago.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class GapState(StrEnum):
    """State of one (learner, skill); the values are those stored in ``knowledge_gaps``."""

    INSUFFICIENT_DATA = "insufficient_data"
    OPEN = "open"
    RESOLVED = "resolved"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class GapConfig:
    """Thresholds and weights of gap detection (probabilities in [0, 1], times in s)."""

    open_below: float = 0.6  # a gap opens when p_mastery < this (with enough evidence)
    resolve_at: float = 0.8  # an open gap resolves when p_mastery >= this
    mastered_at: float = 0.95  # a dependent skill counts as mastered from here (BKT convention)
    min_attempts: int = 3  # fewer answers on the skill: insufficient data
    min_confidence: float = 0.3  # below: insufficient data (too close to call)
    evidence_scale: float = 3.0  # attempts at which evidence reaches 1 - 1/e
    blocked_scale: float = 3.0  # blocked dependents at which that part reaches 1/2
    recency_half_life_s: float = 7 * 24 * 3600.0
    weight_deficit: float = 0.5
    weight_blocked: float = 0.3
    weight_recency: float = 0.2

    def __post_init__(self) -> None:
        for name in ("open_below", "resolve_at", "mastered_at", "min_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"gap {name} must be in [0, 1], got {value}")
        if not 0.0 < self.open_below <= self.resolve_at:
            raise ValueError(
                f"need 0 < open_below <= resolve_at, got {self.open_below}, {self.resolve_at}"
            )
        if self.min_attempts < 1:
            raise ValueError(f"min_attempts must be >= 1, got {self.min_attempts}")
        positive = ("evidence_scale", "blocked_scale", "recency_half_life_s")
        if any(getattr(self, name) <= 0 for name in positive):
            raise ValueError(f"{', '.join(positive)} must be > 0")
        weights = (self.weight_deficit, self.weight_blocked, self.weight_recency)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"severity weights must be >= 0 with a positive sum, got {weights}")


DEFAULT_GAP_CONFIG = GapConfig()


@dataclass(frozen=True, slots=True)
class GapAssessment:
    """The verdict on one (learner, skill) at one time."""

    state: GapState
    severity: float  # in [0, 1]; 0 unless the state is OPEN
    confidence: float  # in [0, 1]
    blocked_skills: int  # not-yet-mastered skills that depend on this one (transitively)


class ConceptGraph:
    """A tenant's prerequisite graph with each skill's transitive dependents precomputed.

    Built once per graph version; ``dependents(s)`` is O(1). A cycle (which the CMS
    refuses, but a direct database edit could create) does not loop: a skill on a
    cycle simply counts the others on it among its dependents.
    """

    __slots__ = ("_dependents", "version")

    def __init__(self, requires: Mapping[str, Iterable[str]], version: int = 0) -> None:
        """``requires[s]`` lists the prerequisites of skill ``s``; ``version`` tags the source."""
        unlocks: dict[str, set[str]] = {}
        for skill, prerequisites in requires.items():
            for prerequisite in prerequisites:
                if prerequisite != skill:
                    unlocks.setdefault(prerequisite, set()).add(skill)
        closure: dict[str, frozenset[str]] = {}
        for start in unlocks:
            seen: set[str] = set()
            queue = deque(unlocks[start])
            while queue:
                skill = queue.popleft()
                if skill in seen or skill == start:
                    continue
                seen.add(skill)
                queue.extend(unlocks.get(skill, ()))
            closure[start] = frozenset(seen)
        self._dependents = closure
        self.version = version

    def dependents(self, skill_id: str) -> frozenset[str]:
        """Every skill that requires ``skill_id`` directly or through others."""
        return self._dependents.get(skill_id, frozenset())


EMPTY_GRAPH = ConceptGraph({})


def blocked_count(
    skill_id: str, graph: ConceptGraph, p_mastery: Mapping[str, float], mastered_at: float
) -> int:
    """Dependents of ``skill_id`` the learner has not mastered (no evidence counts as not)."""
    return sum(1 for d in graph.dependents(skill_id) if p_mastery.get(d, 0.0) < mastered_at)


def evidence(attempts: int, config: GapConfig = DEFAULT_GAP_CONFIG) -> float:
    """Weight in [0, 1) of ``attempts`` answers: 0 for none, 1 - 1/e at ``evidence_scale``."""
    return 1.0 - math.exp(-max(attempts, 0) / config.evidence_scale)


def confidence(p_mastery: float, attempts: int, config: GapConfig = DEFAULT_GAP_CONFIG) -> float:
    """Confidence in [0, 1] that the skill is on the side of ``open_below`` that p says.

    ``p_mastery`` in [0, 1] is the BKT posterior; ``attempts`` the answers behind it.
    """
    span = max(config.open_below, 1.0 - config.open_below)
    certainty = min(abs(p_mastery - config.open_below) / span, 1.0)
    return evidence(attempts, config) * certainty


def severity(
    p_mastery: float, blocked: int, age_s: float, config: GapConfig = DEFAULT_GAP_CONFIG
) -> float:
    """Severity in [0, 1] of a gap with mastery ``p_mastery`` (in [0, 1]).

    ``blocked`` dependents not yet mastered (>= 0); ``age_s`` seconds since the last
    evidence on the skill (negative, from clock skew, counts as 0).
    """
    deficit = min(max((config.open_below - p_mastery) / config.open_below, 0.0), 1.0)
    blocked_part = blocked / (blocked + config.blocked_scale) if blocked > 0 else 0.0
    recency = float(0.5 ** (max(age_s, 0.0) / config.recency_half_life_s))
    total = config.weight_deficit + config.weight_blocked + config.weight_recency
    return (
        config.weight_deficit * deficit
        + config.weight_blocked * blocked_part
        + config.weight_recency * recency
    ) / total


def next_state(
    previous: GapState | None,
    p_mastery: float,
    attempts: int,
    config: GapConfig = DEFAULT_GAP_CONFIG,
) -> GapState:
    """The state after new evidence; ``previous`` is None for a skill never assessed.

    See the module docstring for the rules; an open gap only leaves by resolving.
    """
    if previous is GapState.OPEN:
        return GapState.RESOLVED if p_mastery >= config.resolve_at else GapState.OPEN
    if attempts < config.min_attempts:
        return GapState.INSUFFICIENT_DATA
    if p_mastery < config.open_below:
        if confidence(p_mastery, attempts, config) >= config.min_confidence:
            return GapState.OPEN
        return GapState.INSUFFICIENT_DATA
    if previous is GapState.RESOLVED:
        return GapState.RESOLVED
    return GapState.CLEAR


def assess(
    *,
    skill_id: str,
    previous: GapState | None,
    p_mastery: float,
    attempts: int,
    last_evidence_at: datetime,
    now: datetime,
    graph: ConceptGraph,
    learner_mastery: Mapping[str, float],
    config: GapConfig = DEFAULT_GAP_CONFIG,
) -> GapAssessment:
    """The full verdict on one (learner, skill) at time ``now`` (UTC).

    ``learner_mastery`` maps the learner's other skills to their p_mastery (for the
    blocked count); ``last_evidence_at`` is the time of the last answer on the skill.
    """
    state = next_state(previous, p_mastery, attempts, config)
    blocked = blocked_count(skill_id, graph, learner_mastery, config.mastered_at)
    gap_severity = 0.0
    if state is GapState.OPEN:
        age_s = (now - last_evidence_at).total_seconds()
        gap_severity = severity(p_mastery, blocked, age_s, config)
    return GapAssessment(
        state=state,
        severity=gap_severity,
        confidence=confidence(p_mastery, attempts, config),
        blocked_skills=blocked,
    )


def is_reported(previous: GapState | None, current: GapState) -> bool:
    """Whether a change from ``previous`` to ``current`` is announced as GapDetected.

    Every change into open, resolved or insufficient data is; a change into ``clear``
    is not (the event contract has no "no gap" status; the view shows it).
    """
    return current != previous and current is not GapState.CLEAR
