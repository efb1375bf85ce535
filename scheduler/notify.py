"""Notifications: what to tell a learner, and when, from their learning events.

Pure functions (time is an argument, always UTC event time); the stream adapter is
:mod:`processors.notifications`.

* Review digests: at most one per learner per period. Time is cut into periods of
  ``period`` since the Unix epoch; a digest listing every due item is sent in a
  period when something is due and no digest went out in that period yet. The period
  index is part of the notification's identity, so a replay repeats the same one.
* Milestones: a skill crossing the mastery bar for the first time, and the number of
  mastered skills reaching 1, 5, 10, 25, 50, 100.
* Streaks: consecutive UTC days with at least one answer; a notice at 3, 7, 14, 30,
  60, 100, 365 days.
* Stall: ``stall_sessions`` consecutive sessions whose learning gain is below
  ``stall_gain`` give one "try another strategy" suggestion, then the count restarts.
* Quiet hours: a notification decided inside the learner's quiet hours (local time)
  is delivered from the end of them (``deliver_after``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STREAK_MILESTONES = (3, 7, 14, 30, 60, 100, 365)
MASTERED_COUNT_MILESTONES = (1, 5, 10, 25, 50, 100)


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Digest period, mastery bar (probability in [0, 1]) and stall rule."""

    digest_period: timedelta = timedelta(hours=24)
    mastered_at: float = 0.95
    stall_sessions: int = 3  # N sessions in a row ...
    stall_gain: float = 0.01  # ... each with a mean Δp_mastery below this

    def __post_init__(self) -> None:
        if self.digest_period <= timedelta(0):
            raise ValueError("digest_period must be > 0")
        if self.stall_sessions < 1:
            raise ValueError("stall_sessions must be >= 1")


def period_index(moment: datetime, period: timedelta) -> int:
    """Index of the digest period holding ``moment`` (UTC), counted from the Unix epoch."""
    return (moment - EPOCH) // period


def due_digest(
    due_at: Mapping[str, datetime],
    now: datetime,
    last_digest_period: int | None,
    period: timedelta,
) -> tuple[int, list[str]] | None:
    """(period index, due item ids sorted) when a digest goes out at ``now``, else None.

    Due means ``due_at <= now``. One digest per period: None when this period already
    had one (``last_digest_period``) or when nothing is due.
    """
    current = period_index(now, period)
    if last_digest_period is not None and last_digest_period >= current:
        return None
    due = sorted(item for item, at in due_at.items() if at <= now)
    return (current, due) if due else None


def newly_mastered(
    already: Iterable[str], p_mastery: Mapping[str, float], mastered_at: float
) -> list[str]:
    """Skills at or above ``mastered_at`` that were never mastered before, sorted."""
    seen = set(already)
    return sorted(s for s, p in p_mastery.items() if p >= mastered_at and s not in seen)


def count_milestones(before: int, after: int) -> list[int]:
    """The counts of :data:`MASTERED_COUNT_MILESTONES` passed going from ``before`` to ``after``."""
    return [m for m in MASTERED_COUNT_MILESTONES if before < m <= after]


def advance_streak(last_day: date | None, streak_days: int, day: date) -> tuple[int, bool]:
    """(new streak length in days, whether it is a streak milestone) after activity on ``day``.

    Same day: unchanged, no milestone; next day: +1; a gap (or the first day): 1.
    An event older than ``last_day`` (out of order) leaves the streak as is.
    """
    if last_day is not None and day <= last_day:
        return streak_days, False
    streak = streak_days + 1 if last_day is not None and day == last_day + timedelta(days=1) else 1
    return streak, streak in STREAK_MILESTONES


def advance_stall(stalled_sessions: int, gain: float, config: NotifyConfig) -> tuple[int, bool]:
    """(stalled sessions in a row, whether to suggest another strategy) after a session's gain.

    The count restarts after a suggestion, so a learner who keeps stalling hears it
    every ``stall_sessions`` sessions, not after every one.
    """
    if gain >= config.stall_gain:
        return 0, False
    stalled = stalled_sessions + 1
    if stalled >= config.stall_sessions:
        return 0, True
    return stalled, False


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """True when ``local`` is in [start, end); the window may wrap midnight (22:00-07:00)."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def deliver_after(moment: datetime, quiet: tuple[time, time] | None, timezone: str) -> datetime:
    """When a notification decided at ``moment`` (UTC) may be delivered, in UTC.

    ``quiet`` is the learner's (start, end) local quiet hours in IANA ``timezone``
    (unknown names fall back to UTC); inside them, the next local ``end``.
    """
    if quiet is None:
        return moment
    start, end = quiet
    zone = _zone(timezone)
    local = moment.astimezone(zone)
    if not in_quiet_hours(local.time().replace(tzinfo=None), start, end):
        return moment
    end_today = datetime.combine(local.date(), end, tzinfo=zone)
    target = end_today if end_today > local else end_today + timedelta(days=1)
    return target.astimezone(UTC)
