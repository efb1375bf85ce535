"""The lockout rule: count failures, lock at the limit, restart the count after a lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.services.sessions import after_failure, is_locked

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def test_failures_below_the_limit_only_count() -> None:
    state = after_failure(0, max_failures=3, lockout_s=600, now=NOW)
    assert (state.failed_logins, state.locked_until, state.just_locked) == (1, None, False)


def test_reaching_the_limit_locks_and_restarts_the_count() -> None:
    state = after_failure(2, max_failures=3, lockout_s=600, now=NOW)
    assert state.just_locked
    assert state.locked_until == NOW + timedelta(seconds=600)
    assert state.failed_logins == 0


def test_sequence_locks_exactly_on_the_nth_failure() -> None:
    failures, locked_at = 0, None
    for attempt in range(1, 6):
        state = after_failure(failures, max_failures=5, lockout_s=60, now=NOW)
        failures = state.failed_logins
        if state.just_locked:
            locked_at = attempt
            break
    assert locked_at == 5


def test_lock_lapses_at_its_end() -> None:
    until = NOW + timedelta(seconds=600)
    assert is_locked(until, now=NOW)
    assert is_locked(until, now=until - timedelta(microseconds=1))
    assert not is_locked(until, now=until)
    assert not is_locked(None, now=NOW)
