"""The append-only security audit log, mirrored as Prometheus counters.

Every security event is one row in ``audit_log`` (the table refuses UPDATE and
DELETE by trigger) and one increment of ``learnstream_api_security_events_total``.
Rows name actors by id, never by email or secret, so the log itself holds as
little personal data as the events allow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from api.metrics import AUDIT_ROWS_SUPPRESSED, SECURITY_EVENTS
from learnstream.db import Queryable


class Action(StrEnum):
    """Kinds of security events."""

    LOGIN = "login"
    LOGOUT = "logout"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    REGISTER = "register"
    EMAIL_VERIFIED = "email_verified"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"
    PASSWORD_RESET = "password_reset"
    PASSWORD_CHANGED = "password_changed"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    MFA_ENROLLED = "mfa_enrolled"
    MFA_DISABLED = "mfa_disabled"
    MFA_CHALLENGE = "mfa_challenge"
    BACKUP_CODE_USED = "backup_code_used"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_REJECTED = "api_key_rejected"
    ACCESS_DENIED = "access_denied"
    ROLE_CHANGED = "role_changed"
    PRIVACY_EXPORT = "privacy_export"
    PRIVACY_DELETION = "privacy_deletion"
    LEARNER_ID_CHANGED = "learner_id_changed"
    FRAUD_ALERT_REVIEWED = "fraud_alert_reviewed"
    RETENTION_CHANGED = "retention_changed"
    CLASS_MEMBER_ADDED = "class_member_added"
    CLASS_MEMBER_REMOVED = "class_member_removed"
    IDENTITY_PROVIDER_ADDED = "identity_provider_added"
    IDENTITY_LINKED = "identity_linked"
    TENANT_CREATED = "tenant_created"
    USER_CREATED = "user_created"
    ENROLMENT_LINK_ISSUED = "enrolment_link_issued"
    ENROLMENT_COMPLETED = "enrolment_completed"


class Outcome(StrEnum):
    """How the event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log; ``occurred_at`` is UTC."""

    id: int
    occurred_at: datetime
    tenant_id: str | None
    actor_kind: str | None
    actor_id: str | None
    action: str
    outcome: str
    target_id: str | None
    ip: str | None
    details: dict[str, Any]


async def record(
    db: Queryable,
    *,
    tenant_id: str | None,
    actor: tuple[str, str | None] | None,
    action: Action,
    outcome: Outcome,
    target_id: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event and count it; ``actor`` is ``(kind, id)`` or None when anonymous."""
    actor_kind, actor_id = actor if actor is not None else ("anonymous", None)
    await db.execute(
        """
        INSERT INTO audit_log
            (tenant_id, actor_kind, actor_id, action, outcome, target_id, ip, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
        """,
        tenant_id,
        actor_kind,
        actor_id,
        action.value,
        outcome.value,
        target_id,
        ip,
        json.dumps(details or {}, default=str),
    )
    SECURITY_EVENTS.labels(action=action.value, outcome=outcome.value).inc()


@dataclass(frozen=True, slots=True)
class Throttle:
    """How often one source may add rows of one action (see :func:`record_throttled`).

    ``window_s``: fixed window length (s); ``rows_per_source``: rows one source may
    add per window, whatever the subject.
    """

    namespace: str
    window_s: int
    rows_per_source: int


async def record_throttled(
    db: Queryable,
    redis: Redis,
    throttle: Throttle,
    *,
    source: str,
    subject: str,
    now_s: float,
    tenant_id: str | None,
    actor: tuple[str, str | None] | None,
    action: Action,
    outcome: Outcome,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """:func:`record` for events an anonymous caller can repeat at will; True if a row went in.

    Within one window a ``(source, subject)`` pair (a client IP and the key id it
    presented) gets one row, and a source at most ``throttle.rows_per_source`` rows;
    every other occurrence is counted (``learnstream_api_audit_rows_suppressed_total``
    and ``learnstream_api_security_events_total``) but adds no row. The pair's next
    row carries ``occurrences_in_previous_window``, so the log still shows how many
    there were. ``now_s`` is Unix time. Costs one Redis round trip per event (two for
    the first of a pair in a window).
    """
    index = int(now_s // throttle.window_s)
    base = f"{throttle.namespace}:audit:{action.value}"
    pair_key = f"{base}:pair:{source}:{subject}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(f"{pair_key}:{index}")
        pipe.expire(f"{pair_key}:{index}", throttle.window_s * 2)
        pair_count, _ = await pipe.execute()
    written = False
    if int(pair_count) == 1:
        source_key = f"{base}:source:{source}:{index}"
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(source_key)
            pipe.expire(source_key, throttle.window_s * 2)
            pipe.get(f"{pair_key}:{index - 1}")
            source_rows, _, previous = await pipe.execute()
        if int(source_rows) <= throttle.rows_per_source:
            extra = {"window_s": throttle.window_s}
            if previous is not None:
                extra["occurrences_in_previous_window"] = int(previous)
            await record(
                db,
                tenant_id=tenant_id,
                actor=actor,
                action=action,
                outcome=outcome,
                ip=ip,
                details={**(details or {}), **extra},
            )
            written = True
    if not written:
        SECURITY_EVENTS.labels(action=action.value, outcome=outcome.value).inc()
        AUDIT_ROWS_SUPPRESSED.labels(action=action.value).inc()
    return written


async def recent(
    db: Queryable, *, tenant_id: str, limit: int = 100, before_id: int | None = None
) -> list[AuditEntry]:
    """The newest events of ``tenant_id``, newest first; ``before_id`` is the page cursor."""
    rows = await db.fetch(
        """
        SELECT * FROM audit_log
        WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
        ORDER BY id DESC LIMIT $3
        """,
        tenant_id,
        before_id,
        limit,
    )
    return [
        AuditEntry(
            id=row["id"],
            occurred_at=row["occurred_at"],
            tenant_id=row["tenant_id"],
            actor_kind=row["actor_kind"],
            actor_id=row["actor_id"],
            action=row["action"],
            outcome=row["outcome"],
            target_id=row["target_id"],
            ip=row["ip"],
            details=json.loads(row["details"]),
        )
        for row in rows
    ]
