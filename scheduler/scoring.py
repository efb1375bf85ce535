"""What to practise next: one scoring function over candidate items, one greedy selector.

Every candidate gets a score that is a weighted sum of components, each in [0, 1]::

    score = w_due  * due            (review due or overdue; grows with lateness)
          + w_gap  * gap            (severity of the gap in the item's skill)
          + w_diff * difficulty     (P(success) inside the target band, e.g. 0.70-0.85)
          + w_path * path           (the item's skill is next on the learning path)
          + w_var  * variety        (skill not yet practised in this session)
          - w_rec  * recency        (seen moments ago: penalised, fading with time)

The weighted component that contributes most among due / gap / difficulty / path is the
pick's *reason*, shown to the learner ("due for review", "closes a gap", ...).

:func:`score_candidates` is vectorised over numpy arrays (no Python loop over items);
:func:`select_session` applies the session constraints greedily: it repeatedly takes
the highest-scoring item that still fits the time budget, the per-skill cap and the
per-type cap, then lowers the variety of that skill for the remaining candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.irt import p_correct

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


class PickReason(StrEnum):
    """Why an item was picked: its largest weighted motivating component."""

    DUE_REVIEW = "due_review"
    GAP = "gap"
    DIFFICULTY_MATCH = "difficulty_match"
    LEARNING_PATH = "learning_path"
    # None of the four applies (all zero): picked only to fill the session with variety.
    VARIETY = "variety"


# Order of the reason components in the stacked matrix (ties go to the earlier one).
_REASONS = (
    PickReason.DUE_REVIEW,
    PickReason.GAP,
    PickReason.DIFFICULTY_MATCH,
    PickReason.LEARNING_PATH,
)
_ALL_REASONS = (*_REASONS, PickReason.VARIETY)


def _float_vector(values: npt.ArrayLike, name: str, n: int | None) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        raise ValueError(f"{name} must be a vector of length {n}, got shape {array.shape}")
    return array


def _index_vector(values: npt.ArrayLike, name: str, n: int) -> IndexArray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must be a vector of length {n}, got shape {array.shape}")
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0):
        raise ValueError(f"{name} must hold non-negative integers")
    return array.astype(np.intp, copy=False)


@dataclass(frozen=True, slots=True, eq=False)
class Candidates:
    """Candidate items for one learner, as parallel arrays of length n.

    * ``item_ids``: any dtype (ints, strings); returned as picked.
    * ``skill_index``: ≥ 0, index into the learner's skill table (for per-skill caps,
      variety, and a per-skill ability vector).
    * ``difficulty`` / ``discrimination``: IRT ``b`` (logits) and ``a`` (> 0).
    * ``overdue_days``: now − due_at in days (≥ 0 due or overdue, < 0 not yet due,
      NaN no review schedule, e.g. a new item).
    * ``gap_severity``: in [0, 1], severity of the gap in the item's skill(s).
    * ``days_since_seen``: days since the learner last saw the item (NaN or inf: never).
    * ``item_type``: ≥ 0 type code (question, exercise, code task, ...).
    * ``expected_minutes``: > 0, expected time to do the item.
    * ``path_priority``: in [0, 1], 1 for items of the next skill on the learning path
      (see :func:`scheduler.path.path_priority`); zeros when omitted.
    """

    item_ids: npt.NDArray[Any]
    skill_index: IndexArray
    difficulty: FloatArray
    discrimination: FloatArray
    overdue_days: FloatArray
    gap_severity: FloatArray
    days_since_seen: FloatArray
    item_type: IndexArray
    expected_minutes: FloatArray
    path_priority: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        ids = np.asarray(self.item_ids)
        if ids.ndim != 1:
            raise ValueError(f"item_ids must be a vector, got shape {ids.shape}")
        n = ids.shape[0]
        set_ = object.__setattr__  # frozen: normalise the arrays once, here
        set_(self, "item_ids", ids)
        set_(self, "skill_index", _index_vector(self.skill_index, "skill_index", n))
        set_(self, "item_type", _index_vector(self.item_type, "item_type", n))
        for name in (
            "difficulty",
            "discrimination",
            "overdue_days",
            "gap_severity",
            "days_since_seen",
            "expected_minutes",
        ):
            set_(self, name, _float_vector(getattr(self, name), name, n))
        path = np.asarray(self.path_priority, dtype=np.float64)
        if path.size == 0:
            path = np.zeros(n)
        set_(self, "path_priority", _float_vector(path, "path_priority", n))
        if n and not np.all(self.discrimination > 0):
            raise ValueError("discrimination (IRT a) must be > 0")
        if n and not np.all(self.expected_minutes > 0):
            raise ValueError("expected_minutes must be > 0")
        for name in ("gap_severity", "path_priority"):
            values = getattr(self, name)
            if n and not np.all((values >= 0) & (values <= 1)):
                raise ValueError(f"{name} must be in [0, 1]")

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """Weights (≥ 0) of the score components and the shape of each component.

    * ``target_low``/``target_high``: the P(success) band where practice is most
      useful (0 < low ≤ high < 1); ``band_width`` how fast the difficulty match decays
      outside it (Gaussian, in probability units).
    * ``overdue_scale_days``: an item exactly due scores 0.5 on ``due``, rising towards
      1 as it becomes overdue with this time constant.
    * ``recency_half_life_days``: the recency penalty halves every so many days.
    """

    due_review: float = 1.0
    gap: float = 0.8
    difficulty_match: float = 0.6
    learning_path: float = 0.4
    variety: float = 0.3
    recency_penalty: float = 0.5
    target_low: float = 0.70
    target_high: float = 0.85
    band_width: float = 0.15
    overdue_scale_days: float = 7.0
    recency_half_life_days: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "due_review",
            "gap",
            "difficulty_match",
            "learning_path",
            "variety",
            "recency_penalty",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"weight {name} must be finite and >= 0, got {value}")
        if not 0.0 < self.target_low <= self.target_high < 1.0:
            raise ValueError(
                f"need 0 < target_low <= target_high < 1, got {self.target_low}, {self.target_high}"
            )
        for name in ("band_width", "overdue_scale_days", "recency_half_life_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


DEFAULT_WEIGHTS = ScoringWeights()


@dataclass(frozen=True, slots=True, eq=False)
class CandidateScores:
    """Scores of every candidate: ``total`` and the weighted components it sums.

    ``components`` has shape (4, n): due, gap, difficulty match, learning path, each
    already multiplied by its weight (the motivating parts, used for the reason);
    ``variety`` and ``recency`` are the weighted bonus and penalty (penalty ≥ 0).
    """

    total: FloatArray
    components: FloatArray
    variety: FloatArray
    recency: FloatArray
    p_success: FloatArray


def score_candidates(
    candidates: Candidates,
    ability: float | npt.ArrayLike,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
    skill_practice_counts: npt.ArrayLike | None = None,
) -> CandidateScores:
    """Score every candidate; O(n) numpy, no Python loop over items.

    ``ability`` is the learner's IRT θ (logits): a scalar, or a vector indexed by
    ``skill_index`` for per-skill abilities. ``skill_practice_counts[s]`` is how many
    items of skill ``s`` the learner already did in this session (variety is
    ``1 / (1 + count)``); omitted means none. In :func:`select_session` these counts
    feed variety only; the per-skill cap counts the session's own picks.
    """
    skill = candidates.skill_index
    theta: FloatArray | float
    if np.ndim(ability) == 0:
        theta = float(np.asarray(ability))
    else:
        theta = np.asarray(ability, dtype=np.float64)[skill]
    p_success = p_correct(theta, candidates.discrimination, candidates.difficulty)

    overdue = candidates.overdue_days
    with np.errstate(invalid="ignore"):  # NaN (no schedule) compares False: not due
        is_due = overdue >= 0
    due = np.where(
        is_due,
        1.0 - 0.5 * np.exp(-np.where(is_due, overdue, 0.0) / weights.overdue_scale_days),
        0.0,
    )

    below = np.maximum(weights.target_low - p_success, 0.0)
    above = np.maximum(p_success - weights.target_high, 0.0)
    match = np.exp(-(((below + above) / weights.band_width) ** 2))

    components = np.stack(
        [
            weights.due_review * due,
            weights.gap * candidates.gap_severity,
            weights.difficulty_match * match,
            weights.learning_path * candidates.path_priority,
        ]
    )

    if skill_practice_counts is None:
        variety = np.full(len(candidates), weights.variety)
    else:
        counts = np.asarray(skill_practice_counts, dtype=np.float64)
        variety = weights.variety / (1.0 + counts[skill])

    seen = candidates.days_since_seen
    never_seen = ~np.isfinite(seen)
    recency = np.where(
        never_seen,
        0.0,
        weights.recency_penalty
        * np.exp2(
            -np.maximum(np.where(never_seen, 0.0, seen), 0.0) / weights.recency_half_life_days
        ),
    )
    total = components.sum(axis=0) + variety - recency
    return CandidateScores(
        total=total, components=components, variety=variety, recency=recency, p_success=p_success
    )


def _reason_codes(scores: CandidateScores) -> IndexArray:
    # Index into _REASONS, or len(_REASONS) (VARIETY) where every component is zero.
    codes = np.argmax(scores.components, axis=0)
    return np.where(scores.components.max(axis=0) > 0, codes, len(_REASONS)).astype(np.intp)


def pick_reasons(scores: CandidateScores) -> list[PickReason]:
    """The main reason of each candidate: its largest weighted motivating component."""
    return [_ALL_REASONS[k] for k in _reason_codes(scores)]


@dataclass(frozen=True, slots=True)
class SessionConstraints:
    """Hard limits on one session.

    ``time_budget_minutes`` bounds the summed expected minutes (> 0); ``max_items``
    the number of picks; ``max_items_per_skill`` and ``max_items_per_type`` keep the
    session varied (a cap equal to ``max_items`` disables it).
    """

    time_budget_minutes: float
    max_items: int = 20
    max_items_per_skill: int = 3
    max_items_per_type: int = 10

    def __post_init__(self) -> None:
        if not self.time_budget_minutes > 0:
            raise ValueError(f"time_budget_minutes must be > 0, got {self.time_budget_minutes}")
        for name in ("max_items", "max_items_per_skill", "max_items_per_type"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True, slots=True)
class SessionPick:
    """One chosen item: its id, its position in ``candidates``, score and reason."""

    item_id: Any
    candidate_index: int
    score: float
    reason: PickReason
    expected_minutes: float
    p_success: float


def _python_scalar(value: Any) -> Any:
    # numpy scalars (np.int64, np.str_) become int/str so picks serialise as JSON.
    return value.item() if isinstance(value, np.generic) else value


def select_session(
    candidates: Candidates,
    ability: float | npt.ArrayLike,
    constraints: SessionConstraints,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
    skill_practice_counts: npt.ArrayLike | None = None,
) -> list[SessionPick]:
    """A ranked session that satisfies every constraint, chosen greedily by score.

    Each step takes the best remaining candidate that fits the remaining time and the
    skill and type caps (ties: lowest candidate index), then recomputes only the
    variety bonus of that skill. Stops when nothing fits or ``max_items`` is reached.
    O(k·n) for k picks.
    """
    n = len(candidates)
    if n == 0:
        return []
    n_skills = int(candidates.skill_index.max()) + 1
    counts = np.zeros(n_skills, dtype=np.float64)
    if skill_practice_counts is not None:
        prior = np.asarray(skill_practice_counts, dtype=np.float64)
        counts[: min(prior.shape[0], n_skills)] = prior[:n_skills]
    scores = score_candidates(candidates, ability, weights, counts)
    reasons = _reason_codes(scores)
    base = scores.total - scores.variety  # variety is the only term that changes

    skill = candidates.skill_index
    item_type = candidates.item_type
    minutes = candidates.expected_minutes
    picked_per_skill = np.zeros(n_skills, dtype=np.intp)
    picked_per_type = np.zeros(int(item_type.max()) + 1, dtype=np.intp)
    available = np.ones(n, dtype=bool)
    remaining = float(constraints.time_budget_minutes)
    picks: list[SessionPick] = []

    while len(picks) < constraints.max_items:
        eligible = (
            available
            & (minutes <= remaining)
            & (picked_per_skill[skill] < constraints.max_items_per_skill)
            & (picked_per_type[item_type] < constraints.max_items_per_type)
        )
        if not eligible.any():
            break
        current = base + weights.variety / (1.0 + counts[skill])
        best = int(np.argmax(np.where(eligible, current, -np.inf)))
        picks.append(
            SessionPick(
                item_id=_python_scalar(candidates.item_ids[best]),
                candidate_index=best,
                score=float(current[best]),
                reason=_ALL_REASONS[int(reasons[best])],
                expected_minutes=float(minutes[best]),
                p_success=float(scores.p_success[best]),
            )
        )
        available[best] = False
        remaining -= float(minutes[best])
        picked_per_skill[skill[best]] += 1
        picked_per_type[item_type[best]] += 1
        counts[skill[best]] += 1.0
    return picks
