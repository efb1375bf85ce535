"""SM-2 against the SuperMemo text, FSRS against the fsrs package, the attempt mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fsrs import Card, Rating
from fsrs import Scheduler as ReferenceFSRS

from scheduler.exceptions import ReviewStateError, SchedulerError
from scheduler.srs import (
    DEFAULT_ALGORITHM,
    Attempt,
    FSRSScheduler,
    FSRSState,
    QualityThresholds,
    SM2Scheduler,
    SM2State,
    attempt_quality,
    make_scheduler,
    quality_to_rating,
    sm2_review,
)
from scheduler.srs.sm2 import MIN_EASINESS, next_easiness

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def replay_sm2(qualities: list[int]) -> list[SM2State]:
    states, state, at = [], SM2State(), T0
    for quality in qualities:
        state = sm2_review(state, quality, at)
        states.append(state)
        assert state.due_at is not None
        at = state.due_at
    return states


# --- SM-2 --------------------------------------------------------------------------


def test_sm2_intervals_follow_the_spec_with_constant_easiness() -> None:
    # q = 4 leaves EF unchanged (0.1 - 1 * (0.08 + 0.02) = 0), so I(n) = ceil(I(n-1) * 2.5).
    states = replay_sm2([4, 4, 4, 4, 4])
    assert [s.interval_days for s in states] == [1, 6, 15, 38, 95]
    assert all(s.easiness == pytest.approx(2.5) for s in states)
    assert [s.repetitions for s in states] == [1, 2, 3, 4, 5]


def test_sm2_interval_uses_easiness_before_this_review() -> None:
    states = replay_sm2([5, 5, 5])
    # EF 2.5 -> 2.6 -> 2.7 -> 2.8; the third interval is 6 * 2.7 = 16.2, rounded up.
    assert [round(s.easiness, 10) for s in states] == [2.6, 2.7, 2.8]
    assert states[2].interval_days == 17


@pytest.mark.parametrize(
    ("interval", "easiness", "expected"),
    [(10, 2.41, 25), (10, 1.3, 13), (6, 2.6, 16), (7, 1.5, 11)],
)
def test_sm2_rounds_fractional_intervals_up(interval: int, easiness: float, expected: int) -> None:
    state = SM2State(repetitions=2, easiness=easiness, interval_days=interval)
    assert sm2_review(state, 4, T0).interval_days == expected


@pytest.mark.parametrize(("quality", "delta"), [(5, 0.10), (4, 0.0), (3, -0.14)])
def test_sm2_easiness_formula(quality: int, delta: float) -> None:
    assert next_easiness(2.0, quality) == pytest.approx(2.0 + delta)


@pytest.mark.parametrize("quality", [0, 1, 2])
def test_sm2_failure_restarts_repetitions_without_changing_easiness(quality: int) -> None:
    before = replay_sm2([5, 4, 4, 3])[-1]
    after = sm2_review(before, quality, T0)
    assert after.repetitions == 0
    assert after.interval_days == 1
    assert after.easiness == before.easiness
    # Repetitions start from the beginning: I(1) = 1, I(2) = 6.
    again = sm2_review(after, 4, T0 + timedelta(days=1))
    assert again.interval_days == 1
    assert sm2_review(again, 4, T0 + timedelta(days=2)).interval_days == 6


def test_sm2_easiness_never_falls_below_floor() -> None:
    states = replay_sm2([3] * 12)
    assert min(s.easiness for s in states) == MIN_EASINESS
    assert states[-1].easiness == MIN_EASINESS


def test_sm2_due_time_and_same_day_flag() -> None:
    local = datetime(2024, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    scheduled = SM2Scheduler().review_quality(SM2State(), 3, local)
    assert scheduled.due_at == T0 + timedelta(days=1)
    assert scheduled.due_at.tzinfo == UTC
    assert scheduled.state.repeat_same_day  # q < 4: SM-2 drills it again today
    assert not sm2_review(SM2State(), 4, T0).repeat_same_day


def test_sm2_refuses_bad_quality_and_naive_time() -> None:
    with pytest.raises(ValueError, match="0-5"):
        sm2_review(SM2State(), 6, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        sm2_review(SM2State(), 4, datetime(2024, 3, 1))


def test_sm2_predicted_recall_is_90_percent_at_the_due_date() -> None:
    scheduler = SM2Scheduler()
    assert scheduler.predicted_recall(SM2State(), T0) == 0.0
    state = replay_sm2([4, 4, 4])[-1]
    assert state.last_reviewed_at is not None
    assert state.due_at is not None
    assert scheduler.predicted_recall(state, state.last_reviewed_at) == pytest.approx(1.0)
    assert scheduler.predicted_recall(state, state.due_at) == pytest.approx(0.9)
    later = state.due_at + timedelta(days=state.interval_days)
    assert scheduler.predicted_recall(state, later) == pytest.approx(0.81)


def test_sm2_state_round_trips_through_json() -> None:
    scheduler = SM2Scheduler()
    state = replay_sm2([5, 2, 4])[-1]
    payload = json.loads(json.dumps(scheduler.state_to_dict(state)))
    assert payload["algorithm"] == "sm2"
    assert scheduler.state_from_dict(payload) == state
    assert scheduler.state_from_dict(scheduler.state_to_dict(SM2State())) == SM2State()


# --- attempt -> grade ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "quality"),
    [
        (Attempt(correct=True, response_time_ms=2_000), 5),
        (Attempt(correct=True, response_time_ms=9_000), 4),
        (Attempt(correct=True), 4),
        (Attempt(correct=True, response_time_ms=60_000), 3),
        (Attempt(correct=True, response_time_ms=2_000, hint_count=1), 4),
        (Attempt(correct=True, response_time_ms=2_000, hint_count=5), 3),
        (Attempt(correct=True, response_time_ms=2_000, score=0.9), 4),
        (Attempt(correct=False, score=0.6), 2),
        (Attempt(correct=False, score=0.2), 1),
        (Attempt(correct=False), 0),
        (Attempt(correct=False, response_time_ms=1_000, hint_count=2), 0),
    ],
)
def test_attempt_quality_mapping(attempt: Attempt, quality: int) -> None:
    assert attempt_quality(attempt) == quality


def test_attempt_quality_thresholds_are_configurable() -> None:
    slow_task = QualityThresholds(fluent_ms=60_000, struggle_ms=300_000)
    assert attempt_quality(Attempt(correct=True, response_time_ms=45_000), slow_task) == 5
    with pytest.raises(ValueError, match="fluent_ms"):
        QualityThresholds(fluent_ms=10, struggle_ms=5)
    with pytest.raises(ValueError, match="score"):
        Attempt(correct=True, score=1.5)


@pytest.mark.parametrize(
    ("quality", "rating"),
    [(0, Rating.Again), (2, Rating.Again), (3, Rating.Hard), (4, Rating.Good), (5, Rating.Easy)],
)
def test_quality_to_rating(quality: int, rating: Rating) -> None:
    assert quality_to_rating(quality) == rating


# --- FSRS ----------------------------------------------------------------------------

RATINGS = [Rating.Good, Rating.Good, Rating.Again, Rating.Hard, Rating.Good, Rating.Easy]
GAPS_DAYS = [0.0, 0.007, 3.0, 0.5, 2.0, 9.0]


def test_fsrs_matches_the_fsrs_package_step_by_step() -> None:
    ours = FSRSScheduler()
    reference = ReferenceFSRS(enable_fuzzing=False)
    state, card, at = ours.new_state(), Card(card_id=1, due=T0), T0
    for rating, gap in zip(RATINGS, GAPS_DAYS, strict=True):
        at = at + timedelta(days=gap)
        scheduled = ours.review_rating(state, rating, at)
        card, _ = reference.review_card(card, rating, at)
        state = scheduled.state
        assert scheduled.due_at == card.due
        assert (state.stage, state.step) == (card.state, card.step)
        assert state.stability == card.stability
        assert state.difficulty == card.difficulty
        probe = at + timedelta(days=4)
        assert ours.predicted_recall(state, probe) == reference.get_card_retrievability(card, probe)


def test_fsrs_review_through_attempt_is_deterministic_and_in_the_future() -> None:
    scheduler = FSRSScheduler()
    attempt = Attempt(correct=True, response_time_ms=3_000)
    first = scheduler.review(scheduler.new_state(), attempt, T0)
    second = scheduler.review(scheduler.new_state(), attempt, T0)
    assert first == second
    assert first.due_at > T0
    assert first.state.difficulty is not None


def test_fsrs_recall_at_due_date_is_near_desired_retention() -> None:
    scheduler = FSRSScheduler()
    state, at = scheduler.new_state(), T0
    for _ in range(4):  # graduate to Review and grow the interval past rounding noise
        scheduled = scheduler.review_rating(state, Rating.Good, at)
        state, at = scheduled.state, scheduled.due_at
    assert abs(scheduler.predicted_recall(state, at) - 0.9) < 0.01


def test_fsrs_state_round_trips_through_json() -> None:
    scheduler = FSRSScheduler()
    state = scheduler.new_state()
    assert scheduler.state_from_dict(scheduler.state_to_dict(state)) == state
    for rating, gap in zip(RATINGS, GAPS_DAYS, strict=True):
        state = scheduler.review_rating(state, rating, T0 + timedelta(days=gap)).state
    payload = json.loads(json.dumps(scheduler.state_to_dict(state)))
    assert scheduler.state_from_dict(payload) == state


def test_state_of_another_algorithm_is_refused() -> None:
    sm2_payload = SM2Scheduler().state_to_dict(SM2State())
    with pytest.raises(ReviewStateError, match="'sm2'"):
        FSRSScheduler().state_from_dict(sm2_payload)
    fsrs_payload = FSRSScheduler().state_to_dict(FSRSState())
    with pytest.raises(ReviewStateError, match="'fsrs'"):
        SM2Scheduler().state_from_dict(fsrs_payload)


def test_registry_defaults_to_fsrs_and_names_unknown_algorithms() -> None:
    assert DEFAULT_ALGORITHM == "fsrs"
    assert isinstance(make_scheduler(), FSRSScheduler)
    assert isinstance(make_scheduler("sm2"), SM2Scheduler)
    with pytest.raises(SchedulerError, match="'leitner'"):
        make_scheduler("leitner")


def test_fsrs_refuses_out_of_bounds_parameters() -> None:
    with pytest.raises(ValueError, match="parameters"):
        FSRSScheduler.with_parameters([0.0] * 21)
