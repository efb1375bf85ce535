"""Candidate scoring components, reasons and the greedy session selector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scheduler.irt import p_correct
from scheduler.scoring import (
    Candidates,
    PickReason,
    ScoringWeights,
    SessionConstraints,
    pick_reasons,
    score_candidates,
    select_session,
)

NAN = float("nan")
INF = float("inf")


def make(**overrides: Any) -> Candidates:
    """Three neutral candidates (not due, no gap, never seen); override any column."""
    columns: dict[str, Any] = {
        "item_ids": np.array(["q1", "q2", "q3"]),
        "skill_index": np.array([0, 1, 2]),
        "difficulty": np.zeros(3),
        "discrimination": np.ones(3),
        "overdue_days": np.full(3, NAN),
        "gap_severity": np.zeros(3),
        "days_since_seen": np.full(3, INF),
        "item_type": np.zeros(3, dtype=int),
        "expected_minutes": np.ones(3),
    }
    columns.update(overrides)
    return Candidates(**columns)


ONLY_MOTIVES = ScoringWeights(variety=0.0, recency_penalty=0.0)


def test_due_component_rises_with_lateness_and_ignores_undue_items() -> None:
    weights = ScoringWeights(
        gap=0, difficulty_match=0, learning_path=0, variety=0, recency_penalty=0
    )
    scores = score_candidates(make(overdue_days=np.array([-2.0, 0.0, 14.0])), 0.0, weights)
    assert scores.total[0] == 0.0
    assert scores.total[1] == pytest.approx(0.5)
    assert 0.5 < scores.total[2] < 1.0


def test_difficulty_match_peaks_inside_the_target_band() -> None:
    weights = ScoringWeights(due_review=0, gap=0, learning_path=0, variety=0, recency_penalty=0)
    # With theta = 0 and a = 1: b = -1.5 gives P = 0.82 (in band), b = 0 gives 0.5, b = -4 0.98.
    candidates = make(difficulty=np.array([-1.5, 0.0, -4.0]))
    scores = score_candidates(candidates, 0.0, weights)
    assert scores.p_success == pytest.approx(p_correct(0.0, 1.0, candidates.difficulty))
    assert scores.total[0] == pytest.approx(weights.difficulty_match)
    assert scores.total[0] > scores.total[1]
    assert scores.total[0] > scores.total[2]


def test_per_skill_ability_is_indexed_by_skill() -> None:
    candidates = make(difficulty=np.zeros(3))
    scores = score_candidates(candidates, np.array([-1.0, 0.0, 1.0]), ONLY_MOTIVES)
    assert scores.p_success[0] < scores.p_success[1] < scores.p_success[2]


def test_recency_penalty_halves_per_half_life_and_never_seen_is_free() -> None:
    weights = ScoringWeights(
        due_review=0,
        gap=0,
        difficulty_match=0,
        learning_path=0,
        variety=0,
        recency_half_life_days=2.0,
    )
    scores = score_candidates(make(days_since_seen=np.array([0.0, 2.0, INF])), 0.0, weights)
    assert scores.recency[0] == pytest.approx(weights.recency_penalty)
    assert scores.recency[1] == pytest.approx(weights.recency_penalty / 2)
    assert scores.recency[2] == 0.0


def test_reasons_name_the_largest_weighted_component() -> None:
    candidates = make(
        overdue_days=np.array([10.0, NAN, NAN]),
        gap_severity=np.array([0.0, 0.9, 0.0]),
        difficulty=np.array([5.0, 5.0, 5.0]),  # far too hard: no difficulty match
        path_priority=np.array([0.0, 0.0, 1.0]),
    )
    reasons = pick_reasons(score_candidates(candidates, 0.0, ONLY_MOTIVES))
    assert reasons == [PickReason.DUE_REVIEW, PickReason.GAP, PickReason.LEARNING_PATH]
    nothing = ScoringWeights(due_review=0, gap=0, difficulty_match=0, learning_path=0)
    assert set(pick_reasons(score_candidates(candidates, 0.0, nothing))) == {PickReason.VARIETY}


def test_selector_interleaves_skills_through_variety() -> None:
    # Four equally good items of skill 0 and one slightly worse of skill 1.
    candidates = Candidates(
        item_ids=np.arange(5),
        skill_index=np.array([0, 0, 0, 0, 1]),
        difficulty=np.full(5, -1.5),
        discrimination=np.ones(5),
        overdue_days=np.full(5, NAN),
        gap_severity=np.array([0.5, 0.5, 0.5, 0.5, 0.45]),
        days_since_seen=np.full(5, INF),
        item_type=np.zeros(5, dtype=int),
        expected_minutes=np.ones(5),
    )
    picks = select_session(candidates, 0.0, SessionConstraints(time_budget_minutes=2))
    assert [p.item_id for p in picks] == [0, 4]
    no_variety = ScoringWeights(variety=0.0)
    picks = select_session(candidates, 0.0, SessionConstraints(time_budget_minutes=2), no_variety)
    assert [p.item_id for p in picks] == [0, 1]


def test_selector_respects_budget_and_caps() -> None:
    rng = np.random.default_rng(7)
    n = 200
    candidates = Candidates(
        item_ids=np.arange(n),
        skill_index=rng.integers(0, 5, n),
        difficulty=rng.normal(size=n),
        discrimination=rng.uniform(0.5, 2.0, n),
        overdue_days=rng.normal(0, 5, n),
        gap_severity=rng.random(n),
        days_since_seen=rng.exponential(3, n),
        item_type=rng.integers(0, 3, n),
        expected_minutes=rng.uniform(0.5, 6, n),
    )
    constraints = SessionConstraints(
        time_budget_minutes=25, max_items=12, max_items_per_skill=2, max_items_per_type=4
    )
    picks = select_session(candidates, 0.2, constraints)
    chosen = np.array([p.candidate_index for p in picks])
    assert 0 < len(picks) <= 12
    assert len(set(chosen)) == len(chosen)
    assert candidates.expected_minutes[chosen].sum() <= 25
    assert np.bincount(candidates.skill_index[chosen]).max() <= 2
    assert np.bincount(candidates.item_type[chosen]).max() <= 4
    assert all(isinstance(p.item_id, int) for p in picks)  # numpy scalars unwrapped for JSON


def test_selector_on_no_candidates_and_nothing_fitting() -> None:
    empty = make(**{k: v[:0] for k, v in vars_of(make()).items()})
    assert select_session(empty, 0.0, SessionConstraints(time_budget_minutes=10)) == []
    too_long = make(expected_minutes=np.full(3, 30.0))
    assert select_session(too_long, 0.0, SessionConstraints(time_budget_minutes=10)) == []


def vars_of(candidates: Candidates) -> dict[str, Any]:
    return {name: getattr(candidates, name) for name in Candidates.__dataclass_fields__}


def test_invalid_inputs_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="gap_severity"):
        make(gap_severity=np.array([0.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="difficulty"):
        make(difficulty=np.zeros(2))
    with pytest.raises(ValueError, match="skill_index"):
        make(skill_index=np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="target_low"):
        ScoringWeights(target_low=0.9, target_high=0.8)
    with pytest.raises(ValueError, match="gap"):
        ScoringWeights(gap=-1.0)
