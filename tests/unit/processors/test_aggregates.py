"""The pure parts of the aggregates processor: windows and per-batch increments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from processors.aggregates import ALL_SKILLS, WindowKey, batch_increments, window_start
from processors.events import Attempt


def attempt(user: str, skills: tuple[str, ...], correct: bool, at: datetime) -> Attempt:
    return Attempt(
        event_id=str(uuid.uuid4()),
        tenant_id="t",
        user_id=user,
        session_id="",
        skill_ids=skills,
        correct=correct,
        score=float(correct),
        occurred_at=at,
    )


def test_windows_are_tumbling_and_utc_aligned() -> None:
    moment = datetime(2024, 5, 1, 9, 59, 59, 900_000, tzinfo=UTC)
    assert window_start(moment, 60) == datetime(2024, 5, 1, 9, 59, tzinfo=UTC)
    assert window_start(moment, 3600) == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_multi_skill_attempt_counts_once_in_the_total_and_once_per_skill() -> None:
    at = datetime(2024, 5, 1, 9, 30, 5, tzinfo=UTC)
    counts, learners = batch_increments(
        [attempt("u1", ("a", "b"), True, at), attempt("u1", ("a",), False, at)]
    )
    minute = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    total = counts[WindowKey("t", "minute", minute, ALL_SKILLS)]
    assert (total.attempts, total.correct) == (2, 1)
    a = counts[WindowKey("t", "minute", minute, "a")]
    assert (a.attempts, a.correct, a.score_sum) == (2, 1, 1.0)
    assert counts[WindowKey("t", "hour", datetime(2024, 5, 1, 9, tzinfo=UTC), "b")].attempts == 1
    # One learner per row, however many attempts they made in it.
    assert sum(1 for key, user in learners if key.skill_id == "a") == 2  # minute and hour
    assert len(learners) == 2 * 3
