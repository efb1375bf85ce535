"""SM-2 exactly as SuperMemo describes it (Wozniak 1990, "Optimization of learning", §3.2,
https://super-memory.com/english/ol/sm2.htm).

The spec, step by step, and where each step lives here:

1. Every item starts with E-Factor ``EF = 2.5`` (:data:`INITIAL_EASINESS`).
2. Inter-repetition intervals: ``I(1) = 1``, ``I(2) = 6``, ``I(n) = I(n-1) * EF`` for
   n > 2, in days; "if interval is a fraction, round it up to the nearest integer"
   (ceiling, not round-half-even as many ports do). The EF used is the item's EF
   *before* this repetition's update (the interval is set by the item's easiness so far;
   the grade then adjusts the easiness for the future).
3. After each repetition the grade ``q`` (0–5) updates the E-Factor:
   ``EF' = EF + (0.1 - (5 - q) * (0.08 + (5 - q) * 0.02))``, floored at 1.3.
4. "If the quality response was lower than 3 then start repetitions for the item from
   the beginning *without changing the E-Factor*": a failed recall resets the
   repetition count (the next interval is ``I(1) = 1`` day, and the next successful
   repetition is again the first) and leaves EF as it was. Many ports (and srs-benchmark's
   ``sm2`` function) lower EF on failures too; the original text does not.
5. "After each repetition session of a given day repeat again all items that scored
   below four": :attr:`SM2State.repeat_same_day` flags them; same-day drills are
   session logic and do not change the schedule.

One guard the spec does not need on paper: intervals are capped at
:data:`MAX_INTERVAL_DAYS` (100 years, srs-benchmark's ``s_max``) so EF growth can never
overflow ``datetime`` arithmetic.

SM-2 predicts no probability; :meth:`SM2Scheduler.predicted_recall` uses the
srs-benchmark's conversion ``R = 0.9 ** (elapsed_days / interval_days)``, i.e. it
assumes SM-2 schedules each item at 90 % recall on an exponential forgetting curve
(open-spaced-repetition/srs-benchmark, ``model_processors.py`` ``process_untrainable``:
``p = np.exp(np.log(0.9) * delta_t / stability)`` with ``stability = sm2(sequence)`` from
``models/sm2.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduler.srs.base import (
    DEFAULT_THRESHOLDS,
    PASSING_QUALITY,
    Attempt,
    JSONScalar,
    QualityThresholds,
    Scheduled,
    as_utc,
    attempt_quality,
    check_quality,
    check_state_payload,
    datetime_or_none,
    elapsed_days,
    iso_or_none,
)

ALGORITHM = "sm2"
STATE_VERSION = 1
INITIAL_EASINESS = 2.5
MIN_EASINESS = 1.3
FIRST_INTERVAL_DAYS = 1
SECOND_INTERVAL_DAYS = 6
MAX_INTERVAL_DAYS = 36_500
# Recall probability SM-2 is assumed to schedule at (srs-benchmark's conversion).
SCHEDULED_RECALL = 0.9
# I(n-1) * EF is computed in binary floating point: 6 * 2.6 is 15.600000000000001, and
# 10 * 1.3 must stay 13, not become 14 by an ulp above the integer before the ceiling.
_CEIL_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class SM2State:
    """One learner's SM-2 state for one item.

    ``repetitions`` counts successful repetitions since the last failure (0 new or just
    failed); ``easiness`` is the E-Factor (≥ 1.3); ``interval_days`` the current
    inter-repetition interval in whole days (0 before the first review);
    ``last_reviewed_at``/``due_at`` are UTC; ``last_quality`` the last grade 0–5.
    """

    repetitions: int = 0
    easiness: float = INITIAL_EASINESS
    interval_days: int = 0
    last_reviewed_at: datetime | None = None
    due_at: datetime | None = None
    last_quality: int | None = None

    @property
    def repeat_same_day(self) -> bool:
        """SM-2 step 7: scored below 4 at its last repetition, so drill it again today."""
        return self.last_quality is not None and self.last_quality < 4


def next_easiness(easiness: float, quality: int) -> float:
    """SM-2 E-Factor after a repetition graded ``quality`` (0–5); never below 1.3."""
    lapse = 5 - quality
    return max(MIN_EASINESS, easiness + (0.1 - lapse * (0.08 + lapse * 0.02)))


def sm2_review(state: SM2State, quality: int, reviewed_at: datetime) -> SM2State:
    """SM-2 state after one repetition graded ``quality`` (0–5) at ``reviewed_at`` (UTC).

    Pure and O(1); see the module docstring for each rule and its source.
    """
    check_quality(quality)
    reviewed_at = as_utc(reviewed_at, "reviewed_at")
    if quality < PASSING_QUALITY:
        repetitions = 0
        interval = FIRST_INTERVAL_DAYS
        easiness = state.easiness  # spec step 6: "without changing the E-Factor"
    else:
        repetitions = state.repetitions + 1
        if repetitions == 1:
            interval = FIRST_INTERVAL_DAYS
        elif repetitions == 2:
            interval = SECOND_INTERVAL_DAYS
        else:
            interval = math.ceil(state.interval_days * state.easiness - _CEIL_TOLERANCE)
        interval = min(interval, MAX_INTERVAL_DAYS)
        easiness = next_easiness(state.easiness, quality)
    return SM2State(
        repetitions=repetitions,
        easiness=easiness,
        interval_days=interval,
        last_reviewed_at=reviewed_at,
        due_at=reviewed_at + timedelta(days=interval),
        last_quality=quality,
    )


def sm2_recall(state: SM2State, now: datetime) -> float:
    """srs-benchmark's SM-2 recall probability ``0.9 ** (elapsed / interval)``, in [0, 1]."""
    if state.last_reviewed_at is None or state.interval_days <= 0:
        return 0.0
    elapsed = elapsed_days(state.last_reviewed_at, now)
    return float(SCHEDULED_RECALL ** (elapsed / state.interval_days))


class SM2Scheduler:
    """The :class:`~scheduler.srs.base.Scheduler` protocol over :func:`sm2_review`."""

    @property
    def algorithm(self) -> str:
        return ALGORITHM

    def new_state(self) -> SM2State:
        return SM2State()

    def review(
        self,
        state: SM2State,
        attempt: Attempt,
        reviewed_at: datetime,
        thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    ) -> Scheduled[SM2State]:
        return self.review_quality(state, attempt_quality(attempt, thresholds), reviewed_at)

    def review_quality(
        self, state: SM2State, quality: int, reviewed_at: datetime
    ) -> Scheduled[SM2State]:
        """Apply a native SM-2 grade 0–5 (for imports of graded history)."""
        after = sm2_review(state, quality, reviewed_at)
        assert after.due_at is not None  # set by every review
        return Scheduled(state=after, due_at=after.due_at)

    def predicted_recall(self, state: SM2State, now: datetime) -> float:
        return sm2_recall(state, now)

    def state_to_dict(self, state: SM2State) -> dict[str, JSONScalar]:
        return {
            "algorithm": ALGORITHM,
            "version": STATE_VERSION,
            "repetitions": state.repetitions,
            "easiness": state.easiness,
            "interval_days": state.interval_days,
            "last_reviewed_at": iso_or_none(state.last_reviewed_at),
            "due_at": iso_or_none(state.due_at),
            "last_quality": state.last_quality,
        }

    def state_from_dict(self, payload: Mapping[str, Any]) -> SM2State:
        check_state_payload(payload, ALGORITHM, STATE_VERSION)
        last_quality = payload.get("last_quality")
        if last_quality is not None:
            check_quality(last_quality)
        state = SM2State(
            repetitions=int(payload["repetitions"]),
            easiness=float(payload["easiness"]),
            interval_days=int(payload["interval_days"]),
            last_reviewed_at=datetime_or_none(payload.get("last_reviewed_at"), "last_reviewed_at"),
            due_at=datetime_or_none(payload.get("due_at"), "due_at"),
            last_quality=last_quality,
        )
        if state.easiness < MIN_EASINESS or state.repetitions < 0 or state.interval_days < 0:
            raise ValueError(f"SM-2 state out of range: {payload!r}")
        return state
