"""The session selector never breaks a constraint; score parts stay in range."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.scoring import (
    Candidates,
    ScoringWeights,
    SessionConstraints,
    score_candidates,
    select_session,
)


@st.composite
def candidate_sets(draw: st.DrawFn) -> Candidates:
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_skills = draw(st.integers(1, 8))
    n_types = draw(st.integers(1, 4))
    overdue = rng.normal(0, 10, n)
    overdue[rng.random(n) < 0.3] = np.nan
    seen = rng.exponential(5, n)
    seen[rng.random(n) < 0.3] = np.inf
    return Candidates(
        item_ids=np.arange(n),
        skill_index=rng.integers(0, n_skills, n),
        difficulty=rng.normal(0, 2, n),
        discrimination=rng.uniform(0.2, 3, n),
        overdue_days=overdue,
        gap_severity=rng.random(n) * (rng.random(n) < 0.5),
        days_since_seen=seen,
        item_type=rng.integers(0, n_types, n),
        expected_minutes=rng.uniform(0.2, 15, n),
        path_priority=rng.random(n) * (rng.random(n) < 0.3),
    )


constraint_sets = st.builds(
    SessionConstraints,
    time_budget_minutes=st.floats(0.5, 120),
    max_items=st.integers(1, 30),
    max_items_per_skill=st.integers(1, 5),
    max_items_per_type=st.integers(1, 10),
)
weight_sets = st.builds(
    ScoringWeights,
    due_review=st.floats(0, 3),
    gap=st.floats(0, 3),
    difficulty_match=st.floats(0, 3),
    learning_path=st.floats(0, 3),
    variety=st.floats(0, 3),
    recency_penalty=st.floats(0, 3),
)


@settings(max_examples=150, deadline=None)
@given(candidate_sets(), constraint_sets, weight_sets, st.floats(-3, 3))
def test_session_respects_every_constraint(
    candidates: Candidates,
    constraints: SessionConstraints,
    weights: ScoringWeights,
    ability: float,
) -> None:
    picks = select_session(candidates, ability, constraints, weights)
    chosen = np.array([p.candidate_index for p in picks], dtype=np.intp)
    assert len(picks) <= constraints.max_items
    assert len(set(chosen.tolist())) == len(chosen)
    assert candidates.expected_minutes[chosen].sum() <= constraints.time_budget_minutes + 1e-9
    skill_counts = np.bincount(candidates.skill_index[chosen], minlength=1)
    type_counts = np.bincount(candidates.item_type[chosen], minlength=1)
    assert skill_counts.max(initial=0) <= constraints.max_items_per_skill
    assert type_counts.max(initial=0) <= constraints.max_items_per_type
    # Greedy stops only when nothing else fits: every leftover breaks some constraint.
    if len(picks) < constraints.max_items:
        remaining = constraints.time_budget_minutes - candidates.expected_minutes[chosen].sum()
        for index in set(range(len(candidates))) - set(chosen.tolist()):
            skill = candidates.skill_index[index]
            item_type = candidates.item_type[index]
            assert (
                candidates.expected_minutes[index] > remaining
                or np.sum(candidates.skill_index[chosen] == skill)
                >= constraints.max_items_per_skill
                or np.sum(candidates.item_type[chosen] == item_type)
                >= constraints.max_items_per_type
            )
    for pick in picks:
        assert 0.0 <= pick.p_success <= 1.0


@settings(max_examples=100, deadline=None)
@given(candidate_sets(), weight_sets, st.floats(-6, 6))
def test_score_components_are_bounded(
    candidates: Candidates, weights: ScoringWeights, ability: float
) -> None:
    scores = score_candidates(candidates, ability, weights)
    assert np.all((scores.p_success >= 0) & (scores.p_success <= 1))
    caps = np.array(
        [weights.due_review, weights.gap, weights.difficulty_match, weights.learning_path]
    )
    assert np.all(scores.components >= 0)
    assert np.all(scores.components <= caps[:, None] + 1e-12)
    assert np.all((scores.recency >= 0) & (scores.recency <= weights.recency_penalty + 1e-12))
    assert np.all(np.isfinite(scores.total))
