"""Knowledge-gap states, hysteresis, confidence, severity and the concept graph."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.bkt import DEFAULT_PARAMS, update
from scheduler.gaps import (
    DEFAULT_GAP_CONFIG,
    EMPTY_GRAPH,
    ConceptGraph,
    GapConfig,
    GapState,
    assess,
    blocked_count,
    confidence,
    evidence,
    is_reported,
    next_state,
    severity,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
# fractions needs integers; decimals and ratios need fractions; percentages needs both.
CURRICULUM = {
    "fractions": ["integers"],
    "decimals": ["fractions"],
    "ratios": ["fractions"],
    "percentages": ["decimals", "ratios"],
}


def bkt_after(answers: list[int]) -> float:
    """p_mastery after a sequence of 0/1 answers under the default BKT parameters."""
    p = DEFAULT_PARAMS.prior
    for answer in answers:
        p = update(p, float(answer), DEFAULT_PARAMS)
    return p


def replay(answers: list[int], config: GapConfig = DEFAULT_GAP_CONFIG) -> list[GapState]:
    """The state after each answer of one learner on one skill."""
    states: list[GapState] = []
    previous: GapState | None = None
    for n in range(1, len(answers) + 1):
        previous = next_state(previous, bkt_after(answers[:n]), n, config)
        states.append(previous)
    return states


def test_too_few_answers_is_insufficient_data_not_a_guess() -> None:
    # Two wrong answers push p_mastery far down, but two answers are not enough evidence.
    assert bkt_after([0, 0]) < DEFAULT_GAP_CONFIG.open_below
    assert replay([0, 0]) == [GapState.INSUFFICIENT_DATA] * 2


def test_repeated_wrong_answers_open_a_gap_once_evidence_suffices() -> None:
    states = replay([0, 0, 0, 0])
    assert states[: DEFAULT_GAP_CONFIG.min_attempts - 1] == [GapState.INSUFFICIENT_DATA] * 2
    assert states[DEFAULT_GAP_CONFIG.min_attempts - 1 :] == [GapState.OPEN] * 2


def test_open_gap_resolves_only_at_the_higher_bar_then_stays_resolved() -> None:
    answers = [0, 0, 0, 1, 1, 1, 1, 1, 1]
    states = replay(answers)
    first_resolved = states.index(GapState.RESOLVED)
    # Until the resolve bar is reached the gap stays open, even above open_below.
    for n in range(3, first_resolved):
        assert states[n - 1] is GapState.OPEN or states[n - 1] is GapState.INSUFFICIENT_DATA
    assert bkt_after(answers[: first_resolved + 1]) >= DEFAULT_GAP_CONFIG.resolve_at
    assert bkt_after(answers[:first_resolved]) < DEFAULT_GAP_CONFIG.resolve_at
    assert set(states[first_resolved:]) == {GapState.RESOLVED}


def test_hysteresis_keeps_an_open_gap_open_between_the_thresholds() -> None:
    config = DEFAULT_GAP_CONFIG
    between = (config.open_below + config.resolve_at) / 2
    assert next_state(GapState.OPEN, between, 10) is GapState.OPEN
    assert next_state(None, between, 10) is GapState.CLEAR
    assert next_state(GapState.RESOLVED, between, 10) is GapState.RESOLVED


def test_resolved_gap_reopens_when_mastery_falls_again() -> None:
    assert next_state(GapState.RESOLVED, 0.05, 12) is GapState.OPEN


def test_posterior_near_the_threshold_is_insufficient_data() -> None:
    p = DEFAULT_GAP_CONFIG.open_below - 0.01
    assert confidence(p, 50) < DEFAULT_GAP_CONFIG.min_confidence
    assert next_state(None, p, 50) is GapState.INSUFFICIENT_DATA


def test_confidence_grows_with_evidence_and_with_distance_from_the_threshold() -> None:
    assert confidence(0.1, 0) == 0.0
    assert confidence(0.1, 2) < confidence(0.1, 5) < confidence(0.1, 20) < 1.0
    assert confidence(0.5, 10) < confidence(0.3, 10) < confidence(0.0, 10)
    assert evidence(3) == pytest.approx(1 - math.exp(-1))


def test_severity_combines_deficit_blocked_dependents_and_recency() -> None:
    base = severity(0.3, blocked=0, age_s=0)
    assert severity(0.1, blocked=0, age_s=0) > base  # deeper deficit
    assert severity(0.3, blocked=4, age_s=0) > base  # blocks more skills
    assert severity(0.3, blocked=0, age_s=30 * 86400) < base  # older evidence
    # Every part at its maximum gives 1; at its minimum, 0.
    assert severity(0.0, blocked=10**9, age_s=0) == pytest.approx(1.0, abs=1e-6)
    assert severity(1.0, blocked=0, age_s=1e12) == pytest.approx(0.0, abs=1e-9)
    half_life = DEFAULT_GAP_CONFIG.recency_half_life_s
    recency_weight = DEFAULT_GAP_CONFIG.weight_recency
    total = recency_weight + DEFAULT_GAP_CONFIG.weight_deficit + DEFAULT_GAP_CONFIG.weight_blocked
    drop = severity(0.3, 0, 0) - severity(0.3, 0, half_life)
    assert drop == pytest.approx(0.5 * recency_weight / total)


def test_concept_graph_counts_transitive_dependents_not_yet_mastered() -> None:
    graph = ConceptGraph(CURRICULUM)
    assert graph.dependents("integers") == {"fractions", "decimals", "ratios", "percentages"}
    assert graph.dependents("decimals") == {"percentages"}
    assert graph.dependents("percentages") == frozenset()
    mastery = {"fractions": 0.99, "decimals": 0.2}
    # fractions is mastered; decimals, ratios (no evidence) and percentages are not.
    assert blocked_count("integers", graph, mastery, mastered_at=0.95) == 3


def test_concept_graph_with_a_cycle_terminates() -> None:
    graph = ConceptGraph({"a": ["b"], "b": ["a"], "c": ["a"]})
    assert graph.dependents("a") == {"b", "c"}
    assert graph.dependents("b") == {"a", "c"}


def test_assess_reports_blocked_skills_and_severity_only_for_open_gaps() -> None:
    graph = ConceptGraph(CURRICULUM)
    open_gap = assess(
        skill_id="fractions",
        previous=None,
        p_mastery=0.05,
        attempts=6,
        last_evidence_at=NOW - timedelta(days=1),
        now=NOW,
        graph=graph,
        learner_mastery={"fractions": 0.05},
    )
    assert open_gap.state is GapState.OPEN
    assert open_gap.blocked_skills == 3
    assert 0.0 < open_gap.severity <= 1.0
    without_graph = assess(
        skill_id="fractions",
        previous=None,
        p_mastery=0.05,
        attempts=6,
        last_evidence_at=NOW - timedelta(days=1),
        now=NOW,
        graph=EMPTY_GRAPH,
        learner_mastery={},
    )
    assert without_graph.severity < open_gap.severity
    clear = assess(
        skill_id="fractions",
        previous=None,
        p_mastery=0.97,
        attempts=6,
        last_evidence_at=NOW,
        now=NOW,
        graph=graph,
        learner_mastery={},
    )
    assert clear.state is GapState.CLEAR
    assert clear.severity == 0.0


def test_only_changes_into_open_resolved_or_insufficient_data_are_reported() -> None:
    assert is_reported(None, GapState.INSUFFICIENT_DATA)
    assert is_reported(GapState.INSUFFICIENT_DATA, GapState.OPEN)
    assert is_reported(GapState.OPEN, GapState.RESOLVED)
    assert not is_reported(GapState.OPEN, GapState.OPEN)
    assert not is_reported(GapState.INSUFFICIENT_DATA, GapState.CLEAR)


@pytest.mark.parametrize(
    "changes",
    [
        {"open_below": 0.9, "resolve_at": 0.8},
        {"open_below": 0.0},
        {"min_attempts": 0},
        {"evidence_scale": 0.0},
        {"weight_deficit": 0.0, "weight_blocked": 0.0, "weight_recency": 0.0},
        {"mastered_at": 1.5},
    ],
)
def test_config_refuses_inconsistent_thresholds(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"gap|must|need"):
        GapConfig(**changes)  # type: ignore[arg-type]  # ints and floats by field
