"""Properties of SM-2 and FSRS over arbitrary review sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fsrs import Rating
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.srs import (
    Attempt,
    FSRSScheduler,
    SM2Scheduler,
    SM2State,
    attempt_quality,
    sm2_review,
)
from scheduler.srs.sm2 import MAX_INTERVAL_DAYS, MIN_EASINESS

T0 = datetime(2024, 1, 1, tzinfo=UTC)
qualities = st.lists(st.integers(0, 5), min_size=1, max_size=40)
gaps_minutes = st.integers(0, 400 * 24 * 60)
FSRS = FSRSScheduler()


def replay(sequence: list[int]) -> SM2State:
    state, at = SM2State(), T0
    for quality in sequence:
        state = sm2_review(state, quality, at)
        assert state.due_at is not None
        at = state.due_at
    return state


@given(qualities)
def test_sm2_easiness_never_below_floor(sequence: list[int]) -> None:
    state, at = SM2State(), T0
    for quality in sequence:
        state = sm2_review(state, quality, at)
        assert state.easiness >= MIN_EASINESS
        assert 1 <= state.interval_days <= MAX_INTERVAL_DAYS


@given(qualities, st.integers(3, 5))
def test_sm2_interval_grows_on_a_pass(history: list[int], quality: int) -> None:
    before = replay(history)
    after = sm2_review(before, quality, T0)
    assert after.interval_days >= before.interval_days
    if before.repetitions >= 1 and before.interval_days < MAX_INTERVAL_DAYS:
        assert after.interval_days > before.interval_days
    assert after.repetitions == before.repetitions + 1


@given(qualities, st.integers(0, 2))
def test_sm2_fail_resets_to_one_day_and_keeps_easiness(history: list[int], quality: int) -> None:
    before = replay(history)
    after = sm2_review(before, quality, T0)
    assert (after.repetitions, after.interval_days, after.easiness) == (0, 1, before.easiness)


@given(qualities, st.integers(0, 10_000))
def test_sm2_recall_is_a_probability_that_decays(history: list[int], hours: int) -> None:
    state = replay(history)
    assert state.last_reviewed_at is not None
    scheduler = SM2Scheduler()
    now = state.last_reviewed_at + timedelta(hours=hours)
    p = scheduler.predicted_recall(state, now)
    assert 0.0 <= p <= 1.0
    assert scheduler.predicted_recall(state, now + timedelta(days=1)) <= p


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Rating)), gaps_minutes), min_size=1, max_size=25))
def test_fsrs_due_after_review_and_recall_in_unit_interval(
    reviews: list[tuple[Rating, int]],
) -> None:
    state, at = FSRS.new_state(), T0
    for rating, gap in reviews:
        at = at + timedelta(minutes=gap)
        scheduled = FSRS.review_rating(state, rating, at)
        assert scheduled.due_at > at
        state = scheduled.state
        for probe in (at, scheduled.due_at, at + timedelta(days=3650)):
            assert 0.0 <= FSRS.predicted_recall(state, probe) <= 1.0
    assert FSRS.state_from_dict(FSRS.state_to_dict(state)) == state


@given(
    st.booleans(),
    st.none() | st.integers(0, 10**7),
    st.integers(0, 10),
    st.none() | st.floats(0.0, 1.0),
)
def test_attempt_quality_is_a_grade_and_pass_means_correct(
    correct: bool, response_time_ms: int | None, hints: int, score: float | None
) -> None:
    attempt = Attempt(correct, response_time_ms, hints, score)
    quality = attempt_quality(attempt)
    assert 0 <= quality <= 5
    assert (quality >= 3) == correct
