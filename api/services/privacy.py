"""Privacy: export everything held about a learner, and erase it everywhere.

Convention that makes this complete: every PostgreSQL table holding a learner's
data has ``tenant_id`` and ``user_id`` columns (the processors' views included),
and every Redis key holding it contains ``<tenant_id>:<user_id>``. Tables are
found in the catalogue at run time, so a view added by a later migration is
exported and erased without changing this module.

Erasure deletes those rows and the account (tokens, roles, identities, class
memberships and profile go with it by cascade), deletes the Redis keys, and
writes a tombstone (``privacy_tombstones``) so stream processors drop the
learner's in-flight events and lake compaction drops their Parquet rows.
What stays: audit rows, which name the learner only by a random id that after
erasure points at nobody, and aggregates that carry no learner id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from api.exceptions import NotFoundError
from api.services import audit, token_versions
from api.services.identifiers import is_uuid
from api.services.principals import Principal
from api.services.transactions import transaction
from learnstream.settings import Settings

# Columns never exported: secrets and their digests.
SECRET_COLUMNS = frozenset(
    {"password_hash", "mfa_secret", "mfa_pending_secret", "mfa_last_step", "token_sha256"}
)

_LEARNER_TABLES = """
    SELECT c.relname AS table_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'tenant_id' AND NOT a.attisdropped)
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'user_id' AND NOT a.attisdropped)
    ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """Rows deleted per table, Redis keys deleted, and whether an account existed."""

    subject_id: str
    rows_deleted: dict[str, int]
    account_deleted: bool
    redis_keys_deleted: int
    erased_at: datetime


def plain(value: Any) -> Any:
    """A JSON-ready copy of a database value (timestamps ISO 8601, UUIDs as text)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None  # digests and blobs are never exported
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)  # jsonb columns come back as text
        except json.JSONDecodeError:
            return value
    return value


def _row(record: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in dict(record).items() if k not in SECRET_COLUMNS}


async def learner_tables(db: Any) -> list[str]:
    """Tables holding learner data by the tenant_id + user_id convention."""
    return [r["table_name"] for r in await db.fetch(_LEARNER_TABLES)]


async def _account(db: Any, tenant_id: str, subject_id: str) -> Any:
    if not is_uuid(subject_id):
        return None
    return await db.fetchrow(
        "SELECT * FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, subject_id
    )


async def _ensure_known(db: Any, tenant_id: str, subject_id: str, tables: list[str]) -> Any:
    account = await _account(db, tenant_id, subject_id)
    if account is not None:
        return account
    for table in tables:
        if await db.fetchval(
            f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE tenant_id = $1 AND user_id::text = $2)',
            tenant_id,
            subject_id,
        ):
            return None
    raise NotFoundError(
        "no learner with this id in your tenant", field="path.user_id", reason="not found"
    )


def _filed_under(subject_id: str, account: Any) -> list[str]:
    """The ids the subject's rows are filed under: the id itself and, for an account with
    a learner id set by an admin (api.services.learner_ids), that one too."""
    ids = [subject_id]
    if account is not None and account["learner_id"] and account["learner_id"] != subject_id:
        ids.append(account["learner_id"])
    return ids


async def export_learner(
    db: Any, principal: Principal, *, subject_id: str, now: datetime
) -> dict[str, Any]:
    """Everything held about ``subject_id`` in the caller's tenant, as JSON-ready data."""
    tenant_id = principal.tenant_id
    tables = await learner_tables(db)
    account = await _ensure_known(db, tenant_id, subject_id, tables)
    exported: dict[str, Any] = {
        "subject_id": subject_id,
        "tenant_id": tenant_id,
        "exported_at": now.isoformat(),
        "account": _row(account) if account is not None else None,
        "tables": {},
    }
    if account is not None:
        exported["roles"] = [
            r["role"]
            for r in await db.fetch("SELECT role FROM user_roles WHERE user_id = $1", subject_id)
        ]
        exported["linked_identities"] = [
            _row(r)
            for r in await db.fetch(
                "SELECT provider, subject, email, linked_at FROM user_identities "
                "WHERE user_id = $1",
                subject_id,
            )
        ]
        exported["sessions"] = [
            _row(r)
            for r in await db.fetch(
                "SELECT issued_at, expires_at, rotated_at, revoked_at FROM refresh_tokens "
                "WHERE user_id = $1 ORDER BY issued_at",
                subject_id,
            )
        ]
    for table in tables:
        rows = await db.fetch(
            f'SELECT * FROM "{table}" WHERE tenant_id = $1 AND user_id::text = ANY($2::text[])',
            tenant_id,
            _filed_under(subject_id, account),
        )
        exported["tables"][table] = [_row(r) for r in rows]
    exported["security_events"] = [
        _row(r)
        for r in await db.fetch(
            """
            SELECT occurred_at, action, outcome, ip, details FROM audit_log
            WHERE tenant_id = $1 AND (actor_id = $2 OR target_id = $2) ORDER BY id
            """,
            tenant_id,
            subject_id,
        )
    ]
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=(principal.kind.value, principal.subject_id),
        action=audit.Action.PRIVACY_EXPORT,
        outcome=audit.Outcome.SUCCESS,
        target_id=subject_id,
    )
    return exported


def _glob_escaped(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def redis_key_patterns(namespace: str, tenant_id: str, subject_id: str) -> tuple[str, str]:
    """SCAN patterns of the keys holding ``<tenant>:<subject>`` as a whole id: at the end
    of the key or followed by ``:``. Short client ids ("7") must not match "70363"."""
    exact = f"{_glob_escaped(namespace)}:*{_glob_escaped(tenant_id)}:{_glob_escaped(subject_id)}"
    return exact, f"{exact}:*"


async def erase_learner(
    db: Any,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    subject_id: str,
    requested_by: tuple[str, str],
    now: datetime,
) -> ErasureReport:
    """Delete the learner's rows, account and Redis keys; tombstone them; audit it."""
    async with transaction(db) as conn:
        tables = await learner_tables(conn)
        account = await _ensure_known(conn, tenant_id, subject_id, tables)
        filed_under = _filed_under(subject_id, account)
        deleted: dict[str, int] = {}
        for table in tables:
            status = await conn.execute(
                f'DELETE FROM "{table}" WHERE tenant_id = $1 AND user_id::text = ANY($2::text[])',
                tenant_id,
                filed_under,
            )
            deleted[table] = int(status.split()[-1])
        if account is not None:
            await conn.execute("DELETE FROM users WHERE id = $1", subject_id)
        # Events carry the learner id: processors and the lake drop by every id held.
        for erased_id in filed_under:
            await conn.execute(
                """
                INSERT INTO privacy_tombstones (tenant_id, subject_id, erased_at, requested_by)
                VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, subject_id) DO NOTHING
                """,
                tenant_id,
                erased_id,
                now,
                requested_by[1],
            )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=requested_by,
            action=audit.Action.PRIVACY_DELETION,
            outcome=audit.Outcome.SUCCESS,
            target_id=subject_id,
            details={"rows_deleted": deleted, "account": account is not None},
        )
    keys = 0
    for erased_id in filed_under:
        for pattern in redis_key_patterns(settings.redis_namespace, tenant_id, erased_id):
            async for key in redis.scan_iter(match=pattern, count=500):
                keys += int(await redis.delete(key))
    if account is not None:  # after the sweep, which would delete the marker
        await token_versions.forget_erased(redis, settings, tenant_id=tenant_id, user_id=subject_id)
    return ErasureReport(subject_id, deleted, account is not None, keys, now)


async def learners_past_retention(db: Any, *, tenant_id: str, now: datetime) -> list[str]:
    """Accounts of ``tenant_id`` inactive longer than its ``retention_days`` (none if unset).

    Inactive: no sign-in (refresh token issued), profile change or mastery update
    within the retention window.
    """
    return [
        str(r["id"])
        for r in await db.fetch(
            """
            SELECT u.id FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id
            WHERE u.tenant_id = $1 AND t.retention_days IS NOT NULL
              AND greatest(
                    u.updated_at,
                    (SELECT max(issued_at) FROM refresh_tokens r WHERE r.user_id = u.id),
                    (SELECT max(updated_at) FROM skill_mastery m
                      WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id::text)
                  ) < $2::timestamptz - make_interval(days => t.retention_days)
            ORDER BY u.id
            """,
            tenant_id,
            now,
        )
    ]
