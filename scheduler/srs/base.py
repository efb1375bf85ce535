"""What every spaced-repetition scheduler shares: the protocol, attempts, grades, time.

A scheduler is a pure function of (review state, graded attempt, time): it returns the
next review state and the moment the item is next due. The state is an immutable
dataclass that round-trips through a JSON-ready ``dict`` (stored as PostgreSQL JSONB),
so a processor can load it, call ``review`` and write it back. Time is always an
argument and always a timezone-aware UTC ``datetime``.

Attempt → grade mapping (one mapping, used by SM-2 directly and by FSRS through it)
---------------------------------------------------------------------------------
SuperMemo's quality scale (Wozniak 1990) is 5 perfect, 4 correct after a hesitation,
3 correct with serious difficulty, 2 wrong but the answer seemed easy once shown,
1 wrong but the answer was recognised, 0 blackout. From an attempt:

* wrong (``correct`` false): partial credit ``score`` ≥ 0.5 → 2, 0 < score < 0.5 → 1,
  no credit → 0 (a near miss is the closest observable to "seemed easy to recall").
* correct: answered within ``fluent_ms`` → 5 ("perfect"), slower than ``struggle_ms``
  → 3 ("serious difficulty"), in between or with an unknown time → 4 (the ordinary
  case: Anki users press Good on ~75 % of reviews, Easy on ~5 %). Each opened hint
  costs one grade; partial credit below 1 caps the grade at 4. A correct answer never
  drops below 3: SM-2 treats q < 3 as a failed recall, and a right answer is not a
  lapse however much help it took.

FSRS has four buttons; quality maps to them as 0–2 → Again, 3 → Hard, 4 → Good,
5 → Easy, i.e. pass/fail is the same decision for both algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from fsrs import Rating

from scheduler.exceptions import ReviewStateError

StateT = TypeVar("StateT")

# Values a state dict may hold: what json.dumps and PostgreSQL JSONB both accept.
JSONScalar = str | int | float | bool | None

QUALITY_MIN = 0
QUALITY_MAX = 5
PASSING_QUALITY = 3  # SM-2: q < 3 is a failed recall


@dataclass(frozen=True, slots=True)
class Attempt:
    """One graded answer, as the scheduler needs it.

    ``response_time_ms`` is the time from showing the item to the answer in ms (None if
    unknown); ``hint_count`` the hints opened (≥ 0); ``score`` partial credit in [0, 1]
    (None means 1 if correct else 0, as in ``AttemptEvent``).
    """

    correct: bool
    response_time_ms: int | None = None
    hint_count: int = 0
    score: float | None = None

    def __post_init__(self) -> None:
        if self.hint_count < 0:
            raise ValueError(f"hint_count must be >= 0, got {self.hint_count}")
        if self.response_time_ms is not None and self.response_time_ms < 0:
            raise ValueError(f"response_time_ms must be >= 0, got {self.response_time_ms}")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")

    @property
    def credit(self) -> float:
        """Partial credit in [0, 1]; defaults to 1 for a correct answer, 0 otherwise."""
        if self.score is not None:
            return self.score
        return 1.0 if self.correct else 0.0


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Response times (ms) that mark a correct answer as fluent or laboured.

    Defaults suit short questions; a tenant with long exercises raises them (or scales
    them by the item's expected time before calling :func:`attempt_quality`).
    """

    fluent_ms: int = 4_000
    struggle_ms: int = 20_000

    def __post_init__(self) -> None:
        if not 0 < self.fluent_ms <= self.struggle_ms:
            raise ValueError(
                f"need 0 < fluent_ms <= struggle_ms, got {self.fluent_ms} and {self.struggle_ms}"
            )


DEFAULT_THRESHOLDS = QualityThresholds()


def attempt_quality(attempt: Attempt, thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> int:
    """SuperMemo quality 0–5 for an attempt (mapping in the module docstring)."""
    if not attempt.correct:
        credit = attempt.credit
        if credit >= 0.5:
            return 2
        return 1 if credit > 0.0 else 0
    elapsed = attempt.response_time_ms
    if elapsed is None:
        quality = 4  # no evidence of fluency
    elif elapsed <= thresholds.fluent_ms:
        quality = QUALITY_MAX
    elif elapsed > thresholds.struggle_ms:
        quality = PASSING_QUALITY
    else:
        quality = 4
    quality -= attempt.hint_count
    if attempt.credit < 1.0:
        quality = min(quality, 4)
    return max(quality, PASSING_QUALITY)


def quality_to_rating(quality: int) -> Rating:
    """FSRS button for a SuperMemo quality: 0–2 Again, 3 Hard, 4 Good, 5 Easy."""
    check_quality(quality)
    if quality < PASSING_QUALITY:
        return Rating.Again
    return {3: Rating.Hard, 4: Rating.Good, 5: Rating.Easy}[quality]


def attempt_rating(attempt: Attempt, thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> Rating:
    """FSRS rating for an attempt, through :func:`attempt_quality`."""
    return quality_to_rating(attempt_quality(attempt, thresholds))


def check_quality(quality: int) -> None:
    """Raise ``ValueError`` unless ``quality`` is an integer grade 0–5."""
    if isinstance(quality, bool) or not isinstance(quality, int):
        raise ValueError(f"quality must be an int 0-5, got {quality!r}")
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise ValueError(f"quality must be in 0-5, got {quality}")


def as_utc(moment: datetime, name: str = "time") -> datetime:
    """``moment`` converted to UTC; a naive datetime is refused (its zone is unknown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def elapsed_days(since: datetime, now: datetime) -> float:
    """Days (fractional, ≥ 0) from ``since`` to ``now``; negative gaps count as 0."""
    return max(0.0, (as_utc(now, "now") - since).total_seconds() / 86_400.0)


def iso_or_none(moment: datetime | None) -> str | None:
    """ISO-8601 text for JSON, or None."""
    return None if moment is None else moment.isoformat()


def datetime_or_none(raw: Any, name: str) -> datetime | None:
    """Parse an ISO-8601 value written by :func:`iso_or_none`; it must carry a zone."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(f"{name} must be an ISO-8601 string or null, got {raw!r}")
    return as_utc(datetime.fromisoformat(raw), name)


def finite_or_none(raw: Any, name: str) -> float | None:
    """A finite float from JSON, or None."""
    if raw is None:
        return None
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {raw!r}")
    return value


def check_state_payload(payload: Mapping[str, Any], algorithm: str, version: int) -> None:
    """Refuse a stored state written by another algorithm or an unknown state version."""
    found = payload.get("algorithm")
    if found != algorithm:
        raise ReviewStateError(
            f"review state was written by {found!r} but the {algorithm!r} scheduler was asked to "
            "read it; the tenant's algorithm changed, so rebuild the state from the review history"
        )
    if payload.get("version") != version:
        raise ReviewStateError(
            f"{algorithm} review state version {payload.get('version')!r} is not the supported "
            f"version {version}"
        )


@dataclass(frozen=True, slots=True)
class Scheduled(Generic[StateT]):
    """A scheduler's answer: the state after the review and when the item is next due (UTC)."""

    state: StateT
    due_at: datetime


class Scheduler(Protocol[StateT]):
    """A spaced-repetition algorithm a tenant can choose (``"sm2"`` or ``"fsrs"``).

    Implementations are stateless apart from their configuration; review state is
    passed in and returned, never kept.
    """

    @property
    def algorithm(self) -> str:
        """Registry name, also written into every state dict."""
        ...

    def new_state(self) -> StateT:
        """State of an item never reviewed."""
        ...

    def review(
        self,
        state: StateT,
        attempt: Attempt,
        reviewed_at: datetime,
        thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    ) -> Scheduled[StateT]:
        """Apply one attempt made at ``reviewed_at`` (aware, converted to UTC)."""
        ...

    def predicted_recall(self, state: StateT, now: datetime) -> float:
        """P(recall) in [0, 1] at ``now`` (aware, UTC); 0 for an item never reviewed."""
        ...

    def state_to_dict(self, state: StateT) -> dict[str, JSONScalar]:
        """JSON-ready dict (for JSONB); carries ``algorithm`` and ``version`` keys."""
        ...

    def state_from_dict(self, payload: Mapping[str, Any]) -> StateT:
        """Inverse of :meth:`state_to_dict`; ``ReviewStateError`` for another algorithm's state."""
        ...
