"""Spaced repetition: one :class:`Scheduler` protocol, SM-2 and FSRS behind it.

A tenant picks an algorithm by name; FSRS is the default::

    scheduler = make_scheduler(tenant.srs_algorithm)          # "fsrs" or "sm2"
    state = scheduler.state_from_dict(row) if row else scheduler.new_state()
    scheduled = scheduler.review(state, Attempt(correct=True, response_time_ms=4200), now)
    row, due_at = scheduler.state_to_dict(scheduled.state), scheduled.due_at
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scheduler.exceptions import SchedulerError
from scheduler.srs.base import (
    Attempt,
    QualityThresholds,
    Scheduled,
    Scheduler,
    attempt_quality,
    attempt_rating,
    quality_to_rating,
)
from scheduler.srs.fsrs_scheduler import FSRSConfig, FSRSScheduler, FSRSState
from scheduler.srs.sm2 import SM2Scheduler, SM2State, sm2_recall, sm2_review

DEFAULT_ALGORITHM = "fsrs"

# Registry of algorithm name -> factory; a new algorithm is one more entry here.
SCHEDULERS: Mapping[str, Callable[[], Scheduler[Any]]] = {
    "fsrs": FSRSScheduler,
    "sm2": SM2Scheduler,
}


def make_scheduler(algorithm: str = DEFAULT_ALGORITHM) -> Scheduler[Any]:
    """The scheduler registered under ``algorithm`` (``"fsrs"`` or ``"sm2"``)."""
    try:
        factory = SCHEDULERS[algorithm]
    except KeyError:
        raise SchedulerError(
            f"unknown spaced-repetition algorithm {algorithm!r}; choose one of {sorted(SCHEDULERS)}"
        ) from None
    return factory()


__all__ = [
    "DEFAULT_ALGORITHM",
    "SCHEDULERS",
    "Attempt",
    "FSRSConfig",
    "FSRSScheduler",
    "FSRSState",
    "QualityThresholds",
    "SM2Scheduler",
    "SM2State",
    "Scheduled",
    "Scheduler",
    "attempt_quality",
    "attempt_rating",
    "make_scheduler",
    "quality_to_rating",
    "sm2_recall",
    "sm2_review",
]
