"""FSRS (the default scheduler) through the official ``fsrs`` package (py-fsrs, FSRS-6).

This module only adapts: our immutable, JSON-ready :class:`FSRSState` in, ``fsrs.Card``
through ``fsrs.Scheduler.review_card``, our state out. No FSRS formula lives here.

Two choices differ from ``fsrs.Scheduler``'s defaults, both for determinism:

* Fuzzing is always off. ``fsrs`` fuzzes intervals with the module-level
  ``random.random()``: hidden global randomness, and a replayed event would get another
  ``due_at``. Processors must be able to re-run an event and write the same row.
* Cards are built with an explicit ``card_id`` (0): ``fsrs.Card()`` without one reads
  the wall clock and sleeps 1 ms to keep generated ids unique.

``predicted_recall`` is ``fsrs.Scheduler.get_card_retrievability``: FSRS-6's power
forgetting curve over *whole* elapsed days (the package floors the elapsed time), so an
item reviewed an hour ago reads as R = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fsrs import Card, Rating, State
from fsrs import Scheduler as FSRSEngine
from fsrs.scheduler import DEFAULT_PARAMETERS

from scheduler.srs.base import (
    DEFAULT_THRESHOLDS,
    Attempt,
    JSONScalar,
    QualityThresholds,
    Scheduled,
    as_utc,
    attempt_rating,
    check_state_payload,
    datetime_or_none,
    finite_or_none,
    iso_or_none,
)

ALGORITHM = "fsrs"
STATE_VERSION = 1
_CARD_ID = 0


@dataclass(frozen=True, slots=True)
class FSRSState:
    """One learner's FSRS memory state for one item.

    ``stage`` is FSRS's Learning/Review/Relearning; ``step`` the (re)learning step index
    (None in Review); ``stability`` in days (the interval at which recall falls to 90 %),
    ``difficulty`` in [1, 10]; both None before the first review. Times are UTC.
    """

    stage: State = State.Learning
    step: int | None = 0
    stability: float | None = None
    difficulty: float | None = None
    last_reviewed_at: datetime | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FSRSConfig:
    """A tenant's FSRS settings.

    ``parameters`` are the 21 FSRS-6 weights (default: the ``fsrs`` package's
    defaults; per-learner ones come from ``fsrs.Optimizer``); ``desired_retention`` the recall
    probability in (0, 1) reviews are scheduled at; steps are the short (re)learning
    intervals; ``maximum_interval_days`` caps any interval.
    """

    parameters: tuple[float, ...] = tuple(DEFAULT_PARAMETERS)
    desired_retention: float = 0.9
    learning_steps: tuple[timedelta, ...] = (timedelta(minutes=1), timedelta(minutes=10))
    relearning_steps: tuple[timedelta, ...] = (timedelta(minutes=10),)
    maximum_interval_days: int = 36_500

    def __post_init__(self) -> None:
        if not 0.0 < self.desired_retention < 1.0:
            raise ValueError(f"desired_retention must be in (0, 1), got {self.desired_retention}")
        if self.maximum_interval_days < 1:
            raise ValueError(f"maximum_interval_days must be >= 1: {self.maximum_interval_days}")


class FSRSScheduler:
    """The :class:`~scheduler.srs.base.Scheduler` protocol over ``fsrs.Scheduler``."""

    def __init__(self, config: FSRSConfig | None = None) -> None:
        self.config = config or FSRSConfig()
        # fsrs validates the parameter bounds here and raises ValueError naming each one.
        self._engine = FSRSEngine(
            parameters=self.config.parameters,
            desired_retention=self.config.desired_retention,
            learning_steps=self.config.learning_steps,
            relearning_steps=self.config.relearning_steps,
            maximum_interval=self.config.maximum_interval_days,
            enable_fuzzing=False,
        )

    @classmethod
    def with_parameters(cls, parameters: Sequence[float], **settings: Any) -> FSRSScheduler:
        """A scheduler with optimised weights (e.g. from ``fsrs.Optimizer``)."""
        return cls(FSRSConfig(parameters=tuple(float(p) for p in parameters), **settings))

    @property
    def algorithm(self) -> str:
        return ALGORITHM

    def new_state(self) -> FSRSState:
        return FSRSState()

    def review(
        self,
        state: FSRSState,
        attempt: Attempt,
        reviewed_at: datetime,
        thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    ) -> Scheduled[FSRSState]:
        return self.review_rating(state, attempt_rating(attempt, thresholds), reviewed_at)

    def review_rating(
        self, state: FSRSState, rating: Rating, reviewed_at: datetime
    ) -> Scheduled[FSRSState]:
        """Apply a native FSRS rating (Again/Hard/Good/Easy) at ``reviewed_at`` (UTC)."""
        reviewed_at = as_utc(reviewed_at, "reviewed_at")
        card, _ = self._engine.review_card(
            _to_card(state, default_due=reviewed_at), Rating(rating), reviewed_at
        )
        after = FSRSState(
            stage=card.state,
            step=card.step,
            stability=card.stability,
            difficulty=card.difficulty,
            last_reviewed_at=card.last_review,
            due_at=card.due,
        )
        return Scheduled(state=after, due_at=card.due)

    def predicted_recall(self, state: FSRSState, now: datetime) -> float:
        now = as_utc(now, "now")
        return float(self._engine.get_card_retrievability(_to_card(state, default_due=now), now))

    def state_to_dict(self, state: FSRSState) -> dict[str, JSONScalar]:
        return {
            "algorithm": ALGORITHM,
            "version": STATE_VERSION,
            "stage": int(state.stage),
            "step": state.step,
            "stability": state.stability,
            "difficulty": state.difficulty,
            "last_reviewed_at": iso_or_none(state.last_reviewed_at),
            "due_at": iso_or_none(state.due_at),
        }

    def state_from_dict(self, payload: Mapping[str, Any]) -> FSRSState:
        check_state_payload(payload, ALGORITHM, STATE_VERSION)
        step = payload.get("step")
        return FSRSState(
            stage=State(int(payload["stage"])),
            step=None if step is None else int(step),
            stability=finite_or_none(payload.get("stability"), "stability"),
            difficulty=finite_or_none(payload.get("difficulty"), "difficulty"),
            last_reviewed_at=datetime_or_none(payload.get("last_reviewed_at"), "last_reviewed_at"),
            due_at=datetime_or_none(payload.get("due_at"), "due_at"),
        )


def _to_card(state: FSRSState, default_due: datetime) -> Card:
    return Card(
        card_id=_CARD_ID,
        state=state.stage,
        step=state.step,
        stability=state.stability,
        difficulty=state.difficulty,
        due=state.due_at or default_due,
        last_review=state.last_reviewed_at,
    )
