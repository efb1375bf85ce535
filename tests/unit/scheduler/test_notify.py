"""Notification rules: digest grouping, quiet hours, streaks, milestones, stalls."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scheduler.notify import (
    NotifyConfig,
    advance_stall,
    advance_streak,
    count_milestones,
    deliver_after,
    due_digest,
    in_quiet_hours,
    newly_mastered,
    period_index,
)

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_one_digest_lists_every_due_item_and_none_again_in_the_same_period() -> None:
    due = {"b": NOW - timedelta(hours=1), "a": NOW - DAY, "later": NOW + timedelta(hours=2)}
    digest = due_digest(due, NOW, None, DAY)
    assert digest == (period_index(NOW, DAY), ["a", "b"])
    assert due_digest(due, NOW + timedelta(hours=3), digest[0], DAY) is None
    nxt = due_digest(due, NOW + DAY, digest[0], DAY)
    assert nxt is not None
    assert nxt[1] == ["a", "b", "later"]


def test_no_digest_when_nothing_is_due() -> None:
    assert due_digest({"a": NOW + timedelta(seconds=1)}, NOW, None, DAY) is None


@given(
    st.lists(st.integers(0, 10 * 24 * 3600), min_size=1, max_size=60),
    st.sampled_from([timedelta(hours=6), DAY]),
)
def test_digests_are_at_most_one_per_period(offsets: list[int], period: timedelta) -> None:
    due = {"x": NOW - DAY}
    last: int | None = None
    sent: list[int] = []
    for offset in sorted(offsets):
        digest = due_digest(due, NOW + timedelta(seconds=offset), last, period)
        if digest is not None:
            last = digest[0]
            sent.append(digest[0])
    assert len(sent) == len(set(sent))
    assert set(sent) == {period_index(NOW + timedelta(seconds=o), period) for o in offsets}


def test_quiet_hours_wrap_midnight_and_delay_to_their_end_in_local_time() -> None:
    quiet = (time(22, 0), time(7, 0))
    assert in_quiet_hours(time(23, 30), *quiet)
    assert in_quiet_hours(time(6, 59), *quiet)
    assert not in_quiet_hours(time(7, 0), *quiet)
    # 23:30 in Paris (UTC+1 in March before DST) -> 07:00 Paris next day = 06:00 UTC.
    moment = datetime(2024, 3, 10, 22, 30, tzinfo=UTC)
    assert deliver_after(moment, quiet, "Europe/Paris") == datetime(2024, 3, 11, 6, 0, tzinfo=UTC)
    assert deliver_after(NOW, quiet, "Europe/Paris") == NOW
    assert deliver_after(moment, None, "Europe/Paris") == moment


@given(st.integers(0, 48 * 60), st.integers(0, 23), st.integers(0, 23))
def test_delivery_is_never_before_the_decision_nor_inside_quiet_hours(
    minutes: int, start: int, end: int
) -> None:
    moment = NOW + timedelta(minutes=minutes)
    quiet = (time(start), time(end))
    at = deliver_after(moment, quiet, "UTC")
    assert moment <= at <= moment + DAY
    assert not in_quiet_hours(at.time().replace(tzinfo=None), *quiet)


def test_streak_counts_consecutive_days_and_flags_milestones() -> None:
    streak, last = 0, None
    flags = []
    for offset in (0, 0, 1, 2, 3, 5):
        day = date(2024, 3, 1) + timedelta(days=offset)
        streak, milestone = advance_streak(last, streak, day)
        last = max(day, last) if last else day
        flags.append((streak, milestone))
    assert flags == [(1, False), (1, False), (2, False), (3, True), (4, False), (1, False)]


def test_mastery_milestones_fire_once_per_skill_and_count() -> None:
    assert newly_mastered({"a"}, {"a": 0.99, "b": 0.96, "c": 0.5}, 0.95) == ["b"]
    assert count_milestones(0, 1) == [1]
    assert count_milestones(4, 10) == [5, 10]
    assert count_milestones(5, 5) == []


def test_stall_suggests_after_n_flat_sessions_then_restarts() -> None:
    config = NotifyConfig(stall_sessions=3, stall_gain=0.01)
    count, said = 0, []
    for gain in (0.0, 0.005, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0):
        count, suggest = advance_stall(count, gain, config)
        said.append(suggest)
    assert said == [False, False, True, False, False, False, False, True]
