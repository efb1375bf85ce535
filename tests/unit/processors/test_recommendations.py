"""The pure step of the recommendations processor: sessions, bandit rewards, rankings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from learnstream.events.v1 import experiment_pb2
from processors.events import LearnerKey, MasteryChange, MasteryStep
from processors.events import SkillEvidence as Reported
from processors.recommendation_content import TenantContent
from processors.recommendation_experiments import experiment_exposure
from processors.recommendations import (
    BatchState,
    chain_recommendations,
)
from scheduler.bandit import PRIOR, SessionStrategy, gain_to_success
from scheduler.experiments import RunningExperiment, Variant
from scheduler.gaps import ConceptGraph
from scheduler.recommend import ContentItem

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
KEY = LearnerKey("t", "u")
CATALOG = (
    ContentItem("q1", "question", "Q1", ("add",)),
    ContentItem("q2", "question", "Q2", ("add",), difficulty=1.0),
    ContentItem("l1", "lesson", "L1", ("add",)),
)
CONTENT = {"t": TenantContent(CATALOG, {}, ConceptGraph({}))}


def step(
    minutes: float, p_before: float, p: float, attempts: int, session: str = ""
) -> MasteryStep:
    change = MasteryChange(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{minutes}-{attempts}")),
        tenant_id="t",
        user_id="u",
        session_id=session,
        occurred_at=T0 + timedelta(minutes=minutes),
        skills=(Reported("add", p, attempts),),
    )
    return MasteryStep(change, {"add": p_before})


def fresh_state() -> BatchState:
    return BatchState(learners={}, bandits={}, sessions={})


def test_closing_a_session_rewards_its_strategy_with_the_mastery_gain() -> None:
    state = fresh_state()
    first = [step(0, 0.3, 0.4, 1), step(5, 0.4, 0.6, 2)]
    chain_recommendations(first, state, CONTENT, {})
    opened = state.learners[KEY]
    assert opened.session_start == {"add": 0.3}
    assert opened.session_end == {"add": 0.6}
    # 45 minutes later (idle > 30): a new session; the first one's gain is 0.6 - 0.3.
    chain_recommendations([step(50, 0.6, 0.5, 3)], state, CONTENT, {})
    alpha, beta = state.bandits["t"].belief(opened.bucket, opened.strategy)
    success = gain_to_success(0.6 - 0.3)
    assert (alpha, beta) == (PRIOR[0] + success, PRIOR[1] + 1 - success)
    assert state.sessions[("t", opened.bucket)] == 1
    assert state.learners[KEY].session_start == {"add": 0.6}


def test_a_duplicate_estimate_changes_nothing_and_announces_nothing() -> None:
    state = fresh_state()
    chain_recommendations([step(0, 0.3, 0.4, 1)], state, CONTENT, {})
    before = state.learners[KEY].copy()
    assert chain_recommendations([step(1, 0.3, 0.4, 1)], state, CONTENT, {}) == []
    assert state.learners[KEY] == before


def test_replays_are_identical_and_name_only_catalog_items() -> None:
    steps = [step(10 * n, 0.2 + 0.05 * n, 0.25 + 0.05 * n, n + 1) for n in range(8)]
    first = chain_recommendations(steps, fresh_state(), CONTENT, {KEY: {}})
    again = chain_recommendations(steps, fresh_state(), CONTENT, {})
    assert first == again
    assert len(first) == len(steps)
    assert {i.item_id for r in first for i in r.items} <= {c.item_id for c in CATALOG}


def test_a_learners_daily_minutes_bound_their_session() -> None:
    catalog = tuple(
        ContentItem(f"q{n}", "question", "Q", (f"s{n % 4}",), expected_minutes=3.0)
        for n in range(12)
    )
    content = {"t": TenantContent(catalog, {}, ConceptGraph({}))}
    short = chain_recommendations(
        [step(0, 0.3, 0.4, 1)], fresh_state(), content, {}, budgets={KEY: 7.0}
    )
    default = chain_recommendations([step(0, 0.3, 0.4, 1)], fresh_state(), content, {})
    assert len(short[0].items) == 2  # 2 x 3 minutes fit in 7
    assert len(default[0].items) > 2


def test_a_running_experiment_fixes_the_session_strategy_of_the_learners_variant() -> None:
    review_only = RunningExperiment(
        "00000000-0000-4000-8000-00000000000e",
        (Variant("control", 1e-9, "bandit"), Variant("review", 1.0, "review")),
    )
    steps = [step(0, 0.3, 0.4, 1), step(5, 0.4, 0.6, 2), step(50, 0.6, 0.5, 3)]
    rankings = chain_recommendations(
        steps, fresh_state(), CONTENT, {}, experiments={"t": review_only}
    )
    assert [r.strategy for r in rankings] == [SessionStrategy.REVIEW] * 3
    # One exposure per session opened (two here), none within a session.
    exposures = [r.exposure for r in rankings]
    assert exposures[1] is None
    assert exposures[0] == exposures[2] == (review_only, review_only.variants[1])
    assert rankings[0].exposure is not None
    record = experiment_exposure(
        rankings[0].step.change, rankings[0].exposure, topic="x.experiments.v1"
    )
    event = experiment_pb2.ExperimentExposure.FromString(record.value)
    assert (event.experiment_id, event.variant, event.strategy) == (
        review_only.experiment_id,
        "review",
        "review",
    )
    assert event.cause_event_id == steps[0].change.event_id


def test_without_experiments_nothing_is_exposed() -> None:
    rankings = chain_recommendations([step(0, 0.3, 0.4, 1)], fresh_state(), CONTENT, {})
    assert rankings[0].exposure is None
