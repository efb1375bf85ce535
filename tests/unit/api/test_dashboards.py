"""Dashboard rules: streaks, milestones, percentiles and class standing, gap bands, risk,
filled trend days, common gaps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.services import dashboards
from api.services.dashboards import (
    LearnerSignals,
    class_standing,
    common_gaps,
    fill_days,
    gap_band,
    mean_mastery,
    milestones,
    percentile_rank,
    risk_reasons,
    streak,
)
from api.services.mastery import SkillMastery, mastery_label

D0 = date(2024, 3, 1)
NOW = datetime(2024, 3, 20, 12, tzinfo=UTC)


def days(*offsets: int) -> list[date]:
    return [D0 + timedelta(days=o) for o in offsets]


def test_streak_counts_runs_and_keeps_the_current_one_alive_until_tomorrow() -> None:
    active = days(0, 1, 2, 5, 6, 10, 11, 12, 13)
    assert streak(active, today=D0 + timedelta(days=13)).current_days == 4
    # Yesterday's practice keeps the streak: today's may still come.
    assert streak(active, today=D0 + timedelta(days=14)).current_days == 4
    broken = streak(active, today=D0 + timedelta(days=15))
    assert broken.current_days == 0
    assert broken.longest_days == 4
    assert broken.active_days == 9
    assert broken.last_active_on == D0 + timedelta(days=13)


def test_streak_of_nothing_and_of_duplicates() -> None:
    assert streak([], today=D0) == dashboards.Streak(0, 0, 0, None)
    assert streak(days(0, 0, 1, 1), today=D0 + timedelta(days=1)).current_days == 2


@given(st.sets(st.integers(min_value=0, max_value=60), max_size=40))
def test_streak_bounds(offsets: set[int]) -> None:
    active = days(*offsets)
    found = streak(active, today=D0 + timedelta(days=61))
    assert 0 <= found.current_days <= found.longest_days <= found.active_days == len(offsets)


def test_milestones_report_progress_and_when_answers_were_reached() -> None:
    tenth = NOW - timedelta(days=2)
    found = {
        m.key: m
        for m in milestones(
            answers=12,
            nth_answer_at={1: NOW - timedelta(days=3), 10: tenth},
            skills_mastered=1,
            longest_streak_days=4,
        )
    }
    assert found["answers_10"].achieved
    assert found["answers_10"].achieved_at == tenth
    assert not found["answers_50"].achieved
    assert (found["answers_50"].progress, found["answers_50"].target) == (12, 50)
    assert found["answers_50"].achieved_at is None
    assert found["mastered_1"].achieved
    assert not found["mastered_5"].achieved
    assert found["streak_3"].achieved
    assert not found["streak_7"].achieved
    assert found["answers_1"].title == "first answer"


def test_percentile_rank_uses_mid_ranks() -> None:
    population = [0.2, 0.4, 0.4, 0.6, 0.8]
    assert percentile_rank(0.2, population) == pytest.approx(10.0)
    assert percentile_rank(0.4, population) == pytest.approx(40.0)
    assert percentile_rank(0.8, population) == pytest.approx(90.0)
    with pytest.raises(ValueError, match="empty"):
        percentile_rank(0.5, [])


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=50), st.data())
def test_percentile_rank_is_in_range_and_monotone(scores: list[float], data: st.DataObject) -> None:
    own = data.draw(st.sampled_from(scores))
    rank = percentile_rank(own, scores)
    assert 0 < rank < 100 or len(scores) == 1
    higher = [s for s in scores if s > own]
    if higher:
        assert percentile_rank(min(higher), scores) > rank


def test_class_standing_is_withheld_for_small_classes_and_no_evidence() -> None:
    small = class_standing(
        class_id="c", class_name="7B", own_score=0.5, class_scores=[0.5, 0.7], min_class_size=5
    )
    assert not small.available
    assert small.percentile is None
    assert "fewer than 5" in (small.reason or "")
    none = class_standing(
        class_id="c", class_name="7B", own_score=None, class_scores=[0.1] * 9, min_class_size=5
    )
    assert not none.available
    assert none.reason == "no evidence yet"
    shown = class_standing(
        class_id="c",
        class_name="7B",
        own_score=0.6,
        class_scores=[0.2, 0.4, 0.6, 0.8, 0.9],
        min_class_size=5,
    )
    assert shown.available
    assert shown.percentile == pytest.approx(50.0)
    assert shown.learners_compared == 5


def skill(p: float, attempts: int) -> SkillMastery:
    return SkillMastery("s", p, mastery_label(p, attempts), attempts, 0, NOW, NOW)


def test_mean_mastery_ignores_skills_without_answers() -> None:
    assert mean_mastery([skill(0.9, 0), skill(0.2, 3), skill(0.4, 1)]) == pytest.approx(0.3)
    assert mean_mastery([skill(0.9, 0)]) is None


@pytest.mark.parametrize(
    ("severity", "band"),
    [(0.0, "low"), (0.32, "low"), (0.33, "medium"), (0.66, "high"), (1, "high")],
)
def test_gap_bands(severity: float, band: str) -> None:
    assert gap_band(severity) == band


def test_risk_reasons_name_each_rule_that_holds() -> None:
    calm = LearnerSignals([("a", 0.3)], 0.7, 40, 2, NOW - timedelta(days=1))
    assert risk_reasons(calm, now=NOW) == []
    worried = LearnerSignals(
        [("fractions", 0.8), ("decimals", 0.61), ("percent", 0.2)],
        0.3,
        25,
        30,
        NOW - timedelta(days=20),
    )
    reasons = risk_reasons(worried, now=NOW)
    assert reasons[0] == "2 severe knowledge gaps: decimals, fractions"
    assert reasons[1].startswith("low mastery: mean 0.30 after 25 answers")
    assert reasons[2] == "30 reviews overdue"
    assert reasons[3] == "inactive for 20 days with 30 reviews due"
    # Low mastery needs enough answers to count; inactivity needs something due.
    new = LearnerSignals([], 0.1, 3, 0, NOW - timedelta(days=60))
    assert risk_reasons(new, now=NOW) == []


def test_fill_days_covers_every_day_with_accuracy_only_where_answered() -> None:
    filled = fill_days(
        {D0: (4, 3, 2), D0 + timedelta(days=2): (2, 0, 1)}, first=D0, last=D0 + timedelta(days=3)
    )
    assert [d.attempts for d in filled] == [4, 0, 2, 0]
    assert [d.accuracy for d in filled] == [0.75, None, 0.0, None]
    assert filled[0].skills_practised == 2


def test_common_gaps_rank_by_learners_then_severity() -> None:
    found = common_gaps(
        {
            "u1": [("fractions", 0.5), ("percent", 0.9)],
            "u2": [("fractions", 0.7)],
            "u3": [("decimals", 0.95)],
        },
        {"fractions": "Fractions"},
    )
    assert [(g.skill_id, g.learners) for g in found] == [
        ("fractions", 2),
        ("decimals", 1),
        ("percent", 1),
    ]
    assert found[0].name == "Fractions"
    assert found[0].mean_severity == pytest.approx(0.6)
    assert found[1].name == "decimals"
