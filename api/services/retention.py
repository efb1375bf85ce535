"""Tenant retention: how many days an inactive learner's data is kept, and applying it.

``tenants.retention_days`` (NULL = keep forever) is set by the tenant's admins;
:func:`apply_retention` erases every account inactive longer than that
(:func:`api.services.privacy.learners_past_retention`) with the ordinary erasure
(:func:`api.services.privacy.erase_learner`), so each erasure is audited and
tombstoned exactly as one requested over HTTP. ``python -m api.retention`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from redis.asyncio import Redis

from api.services import audit, privacy
from api.services.events import EventPublisher
from api.services.principals import Principal
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings

# Shortest and longest retention an admin may set, in days: under a month would erase
# learners on holiday; ten years is beyond any school record rule we know of.
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
# How the retention job names itself in audit rows and tombstones.
RETENTION_ACTOR = ("system", "retention")


async def get_retention_days(db: Queryable, *, tenant_id: str) -> int | None:
    """The tenant's retention in days, or None when data is kept forever."""
    days = await db.fetchval("SELECT retention_days FROM tenants WHERE tenant_id = $1", tenant_id)
    return None if days is None else int(days)


async def set_retention_days(
    db: Queryable, principal: Principal, *, days: int | None
) -> int | None:
    """Set (or with None clear) the caller's tenant retention, in days; audited.

    ``days`` must lie in [MIN_RETENTION_DAYS, MAX_RETENTION_DAYS]; the route validates it,
    this refuses anything else with ValueError.
    """
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"retention_days must lie in [{MIN_RETENTION_DAYS}, {MAX_RETENTION_DAYS}], got {days}"
        )
    async with transaction(db) as conn:
        previous = await conn.fetchval(
            "SELECT retention_days FROM tenants WHERE tenant_id = $1 FOR UPDATE",
            principal.tenant_id,
        )
        await conn.execute(
            "UPDATE tenants SET retention_days = $2 WHERE tenant_id = $1",
            principal.tenant_id,
            days,
        )
        await audit.record(
            conn,
            tenant_id=principal.tenant_id,
            actor=(principal.kind.value, principal.subject_id),
            action=audit.Action.RETENTION_CHANGED,
            outcome=audit.Outcome.SUCCESS,
            details={"from_days": previous, "to_days": days},
        )
    return days


async def _without_staff(db: Queryable, user_ids: list[str]) -> list[str]:
    """``user_ids`` less accounts holding any role but learner: retention is about
    learners' data, and erasing an idle admin could lock a tenant out of its settings."""
    staff = {
        str(r["user_id"])
        for r in await db.fetch(
            "SELECT DISTINCT user_id FROM user_roles "
            "WHERE user_id = ANY($1::uuid[]) AND role <> 'learner'",
            user_ids,
        )
    }
    return [user_id for user_id in user_ids if user_id not in staff]


@dataclass(slots=True)
class RetentionRun:
    """What one retention pass found and did: learners erased (or due, when dry) per tenant."""

    dry_run: bool
    due: dict[str, list[str]] = field(default_factory=dict)  # tenant -> user ids
    erased: dict[str, list[privacy.ErasureReport]] = field(default_factory=dict)


async def apply_retention(
    db: Queryable, redis: Redis, settings: Settings, *, now: datetime, dry_run: bool
) -> RetentionRun:
    """Erase, in every tenant with a retention set, the learner accounts inactive past it.

    Accounts holding a staff role (teacher, author, reviewer, admin, operator) are kept.

    ``now`` is UTC. With ``dry_run`` nothing is changed: the run only lists who is due.
    """
    run = RetentionRun(dry_run=dry_run)
    publisher = EventPublisher(settings)  # erasures go on privacy.erasures too
    try:
        await _erase_due(db, redis, settings, run, publisher, now=now)
    finally:
        publisher.close()
    return run


async def _erase_due(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    run: RetentionRun,
    publisher: EventPublisher,
    *,
    now: datetime,
) -> None:
    dry_run = run.dry_run
    tenants = await db.fetch(
        "SELECT tenant_id FROM tenants WHERE retention_days IS NOT NULL ORDER BY tenant_id"
    )
    for record in tenants:
        tenant_id = record["tenant_id"]
        inactive = await privacy.learners_past_retention(db, tenant_id=tenant_id, now=now)
        due = await _without_staff(db, inactive)
        run.due[tenant_id] = due
        if dry_run:
            continue
        run.erased[tenant_id] = [
            await privacy.erase_learner(
                db,
                redis,
                settings,
                tenant_id=tenant_id,
                subject_id=user_id,
                requested_by=RETENTION_ACTOR,
                now=now,
                publisher=publisher,
            )
            for user_id in due
        ]
