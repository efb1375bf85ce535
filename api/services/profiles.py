"""Learner profiles with learning preferences, and onboarding progress.

Rules:
- Quiet hours are local times in the learner's IANA timezone and may wrap past
  midnight (22:00-07:00); no notification goes out inside them.
- Onboarding is profile -> preferences -> placement -> first_session, in that
  order; only the placement test may be skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services.content import ContentKind
from api.services.identifiers import is_uuid
from api.services.transactions import transaction
from learnstream.db import Queryable


class Channel(StrEnum):
    """Where a learner accepts notifications."""

    IN_APP = "in_app"
    EMAIL = "email"
    PUSH = "push"


class OnboardingStep(StrEnum):
    PROFILE = "profile"
    PREFERENCES = "preferences"
    PLACEMENT = "placement"
    FIRST_SESSION = "first_session"


ONBOARDING_ORDER = tuple(OnboardingStep)
SKIPPABLE_STEPS = frozenset({OnboardingStep.PLACEMENT})


def is_timezone(name: str) -> bool:
    """True for an IANA zone name such as ``Europe/Vienna`` (or ``UTC``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: "../etc"-style keys
        return False
    return True


def in_quiet_hours(now: datetime, *, start: time | None, end: time | None, timezone: str) -> bool:
    """True if UTC instant ``now`` falls inside [start, end) local time; wraps past midnight.

    No quiet hours (None) or an empty window (start == end) is never quiet.
    """
    if start is None or end is None or start == end:
        return False
    local = now.astimezone(ZoneInfo(timezone)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def onboarding_refusal(
    step: OnboardingStep, *, completed: set[OnboardingStep], skipped: bool
) -> str | None:
    """Why ``step`` cannot be completed (or skipped) now; None if it can."""
    if skipped and step not in SKIPPABLE_STEPS:
        return f"{step.value} cannot be skipped"
    earlier = ONBOARDING_ORDER[: ONBOARDING_ORDER.index(step)]
    missing = [s.value for s in earlier if s not in completed]
    if missing:
        return f"complete {', '.join(missing)} first"
    return None


def next_step(completed: set[OnboardingStep]) -> OnboardingStep | None:
    """The first step not yet done, or None when onboarding is finished."""
    return next((s for s in ONBOARDING_ORDER if s not in completed), None)


@dataclass(frozen=True, slots=True)
class Preferences:
    """How the learner wants to learn; ``daily_minutes`` in [1, 600]."""

    daily_minutes: int
    preferred_kinds: tuple[ContentKind, ...]
    notification_channels: tuple[Channel, ...]
    quiet_hours_start: time | None
    quiet_hours_end: time | None


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    display_name: str
    goals: tuple[str, ...]
    timezone: str
    locale: str
    preferences: Preferences
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class StepState:
    step: OnboardingStep
    completed_at: datetime | None
    skipped: bool


@dataclass(frozen=True, slots=True)
class Onboarding:
    """Every step with its state, the next one, and the share done in [0, 1]."""

    steps: tuple[StepState, ...]
    next_step: OnboardingStep | None
    progress: float


DEFAULT_PREFERENCES = Preferences(20, (), (Channel.IN_APP,), None, None)


async def _require_account(db: Queryable, tenant_id: str, user_id: str) -> str:
    name = (
        await db.fetchval(
            "SELECT display_name FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, user_id
        )
        if is_uuid(user_id)
        else None
    )
    if name is None:
        raise NotFoundError(
            "no account with this id in your tenant", field="path.user_id", reason="not found"
        )
    return str(name)


async def get_profile(db: Queryable, *, tenant_id: str, user_id: str) -> Profile:
    """The learner's profile; defaults until they saved one."""
    display_name = await _require_account(db, tenant_id, user_id)
    row = await db.fetchrow(
        "SELECT * FROM learner_profiles WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id
    )
    if row is None:
        return Profile(user_id, display_name, (), "UTC", "en", DEFAULT_PREFERENCES, None)
    return Profile(
        user_id=user_id,
        display_name=display_name,
        goals=tuple(row["goals"]),
        timezone=row["timezone"],
        locale=row["locale"],
        preferences=Preferences(
            daily_minutes=row["daily_minutes"],
            preferred_kinds=tuple(ContentKind(k) for k in row["preferred_kinds"]),
            notification_channels=tuple(Channel(c) for c in row["notification_channels"]),
            quiet_hours_start=row["quiet_hours_start"],
            quiet_hours_end=row["quiet_hours_end"],
        ),
        updated_at=row["updated_at"],
    )


async def save_profile(
    db: Queryable,
    *,
    tenant_id: str,
    user_id: str,
    display_name: str,
    goals: list[str],
    timezone: str,
    locale: str,
    preferences: Preferences | None,
    now: datetime,
) -> Profile:
    """Replace the profile; completes onboarding's profile step (and preferences, if given)."""
    if not is_timezone(timezone):
        raise InvalidInputError(
            f"{timezone!r} is not an IANA timezone", field="body.timezone", reason="unknown zone"
        )
    prefs = preferences or DEFAULT_PREFERENCES
    if (prefs.quiet_hours_start is None) != (prefs.quiet_hours_end is None):
        raise InvalidInputError(
            "give both ends of the quiet hours or neither",
            field="body.preferences.quiet_hours_end",
            reason="both or neither",
        )
    async with transaction(db) as conn:
        await _require_account(conn, tenant_id, user_id)
        await conn.execute(
            "UPDATE users SET display_name = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            user_id,
            display_name,
            now,
        )
        await conn.execute(
            """
            INSERT INTO learner_profiles (tenant_id, user_id, goals, daily_minutes,
                preferred_kinds, notification_channels, quiet_hours_start, quiet_hours_end,
                timezone, locale, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (tenant_id, user_id) DO UPDATE SET goals = $3, daily_minutes = $4,
                preferred_kinds = $5, notification_channels = $6, quiet_hours_start = $7,
                quiet_hours_end = $8, timezone = $9, locale = $10, updated_at = $11
            """,
            tenant_id,
            user_id,
            goals,
            prefs.daily_minutes,
            [k.value for k in prefs.preferred_kinds],
            [c.value for c in prefs.notification_channels],
            prefs.quiet_hours_start,
            prefs.quiet_hours_end,
            timezone,
            locale,
            now,
        )
        steps = [OnboardingStep.PROFILE] + (
            [OnboardingStep.PREFERENCES] if preferences is not None else []
        )
        for step in steps:
            await _mark(conn, tenant_id, user_id, step, skipped=False, now=now)
        return await get_profile(conn, tenant_id=tenant_id, user_id=user_id)


async def _mark(
    conn: Queryable,
    tenant_id: str,
    user_id: str,
    step: OnboardingStep,
    *,
    skipped: bool,
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO onboarding_progress (tenant_id, user_id, step, completed_at, skipped)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
        """,
        tenant_id,
        user_id,
        step.value,
        now,
        skipped,
    )


async def get_onboarding(db: Queryable, *, tenant_id: str, user_id: str) -> Onboarding:
    """Where the learner stands in onboarding."""
    await _require_account(db, tenant_id, user_id)
    rows = {
        OnboardingStep(r["step"]): r
        for r in await db.fetch(
            "SELECT step, completed_at, skipped FROM onboarding_progress "
            "WHERE tenant_id = $1 AND user_id = $2",
            tenant_id,
            user_id,
        )
    }
    steps = tuple(
        StepState(
            step,
            rows[step]["completed_at"] if step in rows else None,
            bool(rows[step]["skipped"]) if step in rows else False,
        )
        for step in ONBOARDING_ORDER
    )
    return Onboarding(steps, next_step(set(rows)), len(rows) / len(ONBOARDING_ORDER))


async def complete_step(
    db: Queryable,
    *,
    tenant_id: str,
    user_id: str,
    step: OnboardingStep,
    skipped: bool,
    now: datetime,
) -> Onboarding:
    """Mark ``step`` done (or skipped); ConflictError naming what must come first."""
    async with transaction(db) as conn:
        state = await get_onboarding(conn, tenant_id=tenant_id, user_id=user_id)
        completed = {s.step for s in state.steps if s.completed_at is not None}
        refusal = onboarding_refusal(step, completed=completed, skipped=skipped)
        if refusal is not None:
            raise ConflictError(refusal, field="path.step", reason=refusal)
        await _mark(conn, tenant_id, user_id, step, skipped=skipped, now=now)
        return await get_onboarding(conn, tenant_id=tenant_id, user_id=user_id)
