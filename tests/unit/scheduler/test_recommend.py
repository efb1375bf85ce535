"""Recommendations over published content: only catalog items, constraints, reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.bandit import SessionStrategy
from scheduler.gaps import ConceptGraph
from scheduler.recommend import (
    ALL_KINDS,
    DEFAULT_RECOMMEND_CONFIG,
    RESOURCE_KINDS,
    ContentItem,
    RecommendConfig,
    SkillEvidence,
    recommend,
    session_gain,
    starts_new_session,
)
from scheduler.scoring import PickReason, SessionConstraints

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
REQUIRES = {"fractions": ["addition"], "algebra": ["fractions"]}
GRAPH = ConceptGraph(REQUIRES)


def _catalog() -> list[ContentItem]:
    items = [
        ContentItem(f"q-{skill}-{n}", "question", f"Q {n}", (skill,), difficulty=n - 2.0)
        for skill in ("addition", "fractions", "algebra")
        for n in range(4)
    ]
    items.append(
        ContentItem("lesson-fractions", "lesson", "Fractions", ("fractions",), expected_minutes=8)
    )
    items.append(ContentItem("video-addition", "video", "Sums", ("addition",), expected_minutes=8))
    return items


def test_gap_skill_items_and_resources_rank_first_with_gap_reason() -> None:
    mastery = {
        "addition": SkillEvidence(0.97, 10, NOW - timedelta(hours=1)),
        "fractions": SkillEvidence(0.15, 8, NOW - timedelta(hours=1)),
    }
    roomy = RecommendConfig(constraints=SessionConstraints(60.0, 12, 5, 8))
    ranked = recommend(
        _catalog(), mastery, {}, GRAPH, REQUIRES, NOW, SessionStrategy.PRACTICE, roomy
    )
    assert ranked[0].reason is PickReason.GAP
    assert "fractions" in ranked[0].skill_ids
    assert "lesson-fractions" in {r.item_id for r in ranked}
    # A resource on a mastered skill (no gap, not on the path) is not offered.
    assert "video-addition" not in {r.item_id for r in ranked}
    assert [r.rank for r in ranked] == list(range(1, len(ranked) + 1))


def test_due_review_is_the_reason_under_the_review_strategy() -> None:
    mastery = {"addition": SkillEvidence(0.9, 5, NOW - timedelta(days=3))}
    due = {"q-addition-1": NOW - timedelta(days=2)}
    ranked = recommend(_catalog(), mastery, due, GRAPH, REQUIRES, NOW, SessionStrategy.REVIEW)
    assert ranked[0].item_id == "q-addition-1"
    assert ranked[0].reason is PickReason.DUE_REVIEW
    assert ranked[0].reason_detail == "review due 2.0 days ago"


def test_mock_test_offers_no_learning_resources() -> None:
    mastery = {"fractions": SkillEvidence(0.1, 8, NOW)}
    ranked = recommend(_catalog(), mastery, {}, GRAPH, REQUIRES, NOW, SessionStrategy.MOCK_TEST)
    assert ranked
    assert all(r.kind not in RESOURCE_KINDS for r in ranked)


def test_empty_catalog_gives_no_recommendation() -> None:
    assert recommend([], {}, {}, GRAPH, REQUIRES, NOW, SessionStrategy.PRACTICE) == []


_items = st.lists(
    st.builds(
        ContentItem,
        item_id=st.text("abcdef", min_size=1, max_size=4),
        kind=st.sampled_from(ALL_KINDS),
        title=st.just("t"),
        skill_ids=st.lists(
            st.sampled_from(["s1", "s2", "s3", "s4"]), min_size=1, max_size=2, unique=True
        ).map(tuple),
        difficulty=st.floats(-3, 3),
        discrimination=st.floats(0.3, 2.5),
        expected_minutes=st.floats(0.5, 40),
    ),
    max_size=30,
    unique_by=lambda item: item.item_id,
)
_mastery = st.dictionaries(
    st.sampled_from(["s1", "s2", "s3", "s4"]),
    st.builds(SkillEvidence, st.floats(0, 1), st.integers(1, 30), st.just(NOW)),
)


@settings(max_examples=150, deadline=None)
@given(_items, _mastery, st.sampled_from(list(SessionStrategy)))
def test_recommendations_are_published_items_within_every_constraint(
    catalog: list[ContentItem], mastery: dict[str, SkillEvidence], strategy: SessionStrategy
) -> None:
    requires = {"s2": ["s1"], "s3": ["s2"]}
    graph = ConceptGraph(requires)
    ranked = recommend(catalog, mastery, {}, graph, requires, NOW, strategy)
    by_id = {item.item_id: item for item in catalog}
    limits = DEFAULT_RECOMMEND_CONFIG.constraints
    assert all(r.item_id in by_id for r in ranked)
    assert len({r.item_id for r in ranked}) == len(ranked) <= limits.max_items
    assert sum(by_id[r.item_id].expected_minutes for r in ranked) <= limits.time_budget_minutes
    for kind in ALL_KINDS:
        assert sum(r.kind == kind for r in ranked) <= limits.max_items_per_type
    assert ranked == recommend(list(reversed(catalog)), mastery, {}, graph, requires, NOW, strategy)


def test_session_gain_is_the_mean_mastery_change_of_practised_skills() -> None:
    assert session_gain({"a": 0.2, "b": 0.5}, {"a": 0.4, "b": 0.4, "c": 0.9}) == pytest.approx(
        (0.2 - 0.1) / 2
    )
    assert session_gain({}, {"a": 1.0}) == 0.0


def test_a_session_ends_on_a_new_id_or_after_idle_time() -> None:
    assert starts_new_session(None, None, "s", NOW)
    assert not starts_new_session("s", NOW, "s", NOW + timedelta(minutes=29))
    assert starts_new_session("s", NOW, "s", NOW + timedelta(minutes=31))
    assert starts_new_session("s", NOW, "t", NOW + timedelta(minutes=1))
