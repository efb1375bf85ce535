"""Quiet hours across midnight and time zones; onboarding order and skipping."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from api.services.profiles import (
    OnboardingStep,
    in_quiet_hours,
    is_timezone,
    next_step,
    onboarding_refusal,
)

Step = OnboardingStep


@pytest.mark.parametrize(
    ("utc_hour", "quiet"),
    [(20, False), (21, True), (23, True), (5, True), (6, False), (12, False)],
)
def test_quiet_hours_wrap_past_midnight_in_local_time(utc_hour: int, quiet: bool) -> None:
    # Vienna in January is UTC+1: 22:00-07:00 local is 21:00-06:00 UTC.
    now = datetime(2024, 1, 15, utc_hour, 30, tzinfo=UTC)
    assert in_quiet_hours(now, start=time(22), end=time(7), timezone="Europe/Vienna") is quiet


def test_quiet_hours_follow_daylight_saving() -> None:
    # In July Vienna is UTC+2, so 20:30 UTC is 22:30 local: quiet. In January it is 21:30.
    july = datetime(2024, 7, 15, 20, 30, tzinfo=UTC)
    january = datetime(2024, 1, 15, 20, 30, tzinfo=UTC)
    assert in_quiet_hours(july, start=time(22), end=time(7), timezone="Europe/Vienna")
    assert not in_quiet_hours(january, start=time(22), end=time(7), timezone="Europe/Vienna")


def test_daytime_window_and_no_window() -> None:
    noon = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    assert in_quiet_hours(noon, start=time(12), end=time(13), timezone="UTC")
    assert not in_quiet_hours(noon, start=time(13), end=time(14), timezone="UTC")
    assert not in_quiet_hours(noon, start=None, end=None, timezone="UTC")
    assert not in_quiet_hours(noon, start=time(12), end=time(12), timezone="UTC")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("UTC", True),
        ("Europe/Vienna", True),
        ("Mars/Olympus", False),
        ("../etc/passwd", False),
        ("", False),
    ],
)
def test_timezones_are_iana_names(name: str, ok: bool) -> None:
    assert is_timezone(name) is ok


def test_steps_go_in_order() -> None:
    assert onboarding_refusal(Step.PROFILE, completed=set(), skipped=False) is None
    refusal = onboarding_refusal(Step.PLACEMENT, completed={Step.PROFILE}, skipped=False)
    assert refusal == "complete preferences first"
    assert (
        onboarding_refusal(
            Step.FIRST_SESSION,
            completed={Step.PROFILE, Step.PREFERENCES, Step.PLACEMENT},
            skipped=False,
        )
        is None
    )


def test_only_placement_may_be_skipped() -> None:
    done = {Step.PROFILE, Step.PREFERENCES}
    assert onboarding_refusal(Step.PLACEMENT, completed=done, skipped=True) is None
    assert onboarding_refusal(Step.PREFERENCES, completed={Step.PROFILE}, skipped=True) is not None


def test_next_step() -> None:
    assert next_step(set()) is Step.PROFILE
    assert next_step({Step.PROFILE, Step.PREFERENCES}) is Step.PLACEMENT
    assert next_step(set(Step)) is None
