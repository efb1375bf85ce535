"""Privacy: export everything held about a learner, and erase it everywhere.

Convention that makes this complete: every PostgreSQL table holding a learner's
data has ``tenant_id`` and ``user_id`` columns (the processors' views included),
and every Redis key holding it is one of :func:`learnstream.redis_keys.learner_data_keys`
(or a rate-limit counter of the account). Tables are found in the catalogue at run
time, so a view added by a later migration is exported and erased without changing
this module. The lake is searched file by file (:func:`learnstream.lake.learner_rows`).

Erasure, in order:

1. one PostgreSQL transaction: an exclusive advisory lock on the learner
   (:func:`learnstream.privacy.lock_learners`, so no processor batch applies their
   events meanwhile), delete their rows and the account (tokens, roles, identities,
   class memberships and profile go with it by cascade), write a tombstone
   (``privacy_tombstones``) per id their events carry, audit it;
2. delete their Redis keys by exact name (no pattern: a glob over user-chosen ids
   reached other tenants' keys);
3. rewrite every lake file holding them (:func:`learnstream.lake.erase_learners`);
4. publish one record per id on the compacted ``privacy.erasures`` topic.

From then on the tombstone keeps them out: ingest rejects their events, the
processors' runner drops them, ``lake_maintenance`` re-checks the lake against every
tombstone, training snapshots exclude them, ``infra.rebuild_view`` skips them, and the
raw topics age their old records out (``topic_retention_ms``). What stays: audit rows,
which name the learner only by a random id that after erasure points at nobody, the
tombstone itself, and aggregates that carry no learner id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from api.exceptions import NotFoundError
from api.services import audit, token_versions
from api.services.events import EventPublisher
from api.services.identifiers import is_uuid
from api.services.principals import Principal
from api.services.rate_limits import WINDOW_S
from api.services.transactions import transaction
from learnstream import lake, redis_keys
from learnstream.db import Queryable
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.privacy import lock_learners
from learnstream.settings import Settings

log = logging.getLogger(__name__)

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
    lake_rows_deleted: int = 0
    lake_files_rewritten: int = 0  # rewritten without the learner, or removed when emptied
    published: bool = False  # on the privacy.erasures topic


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


async def learner_tables(db: Queryable) -> list[str]:
    """Tables holding learner data by the tenant_id + user_id convention."""
    return [r["table_name"] for r in await db.fetch(_LEARNER_TABLES)]


async def _account(db: Queryable, tenant_id: str, subject_id: str) -> Any:
    if not is_uuid(subject_id):
        return None
    return await db.fetchrow(
        "SELECT * FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, subject_id
    )


async def _ensure_known(db: Queryable, tenant_id: str, subject_id: str, tables: list[str]) -> Any:
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
    db: Queryable,
    principal: Principal,
    *,
    subject_id: str,
    now: datetime,
    redis: Redis | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Everything held about ``subject_id`` in the caller's tenant, as JSON-ready data.

    Every copy with where it came from: ``tables`` (PostgreSQL, by table), ``lake``
    (``{"file", "row"}`` per Parquet row, the file relative to the lake root) and
    ``redis`` (``{"key", "type", "value"}`` per key); the last two need ``settings``
    (and ``redis``).
    """
    tenant_id = principal.tenant_id
    tables = await learner_tables(db)
    account = await _ensure_known(db, tenant_id, subject_id, tables)
    filed_under = _filed_under(subject_id, account)
    exported: dict[str, Any] = {
        "subject_id": subject_id,
        "tenant_id": tenant_id,
        "exported_at": now.isoformat(),
        "account": _row(account) if account is not None else None,
        "tables": {},  # filled below; the key keeps its place in the document
    }
    if account is not None:
        exported.update(await _account_copies(db, subject_id))
    exported["tables"] = await _table_copies(db, tenant_id, tables, filed_under)
    if settings is not None:
        exported["lake"] = await _lake_copies(settings, tenant_id, filed_under)
        if redis is not None:
            exported["redis"] = await _redis_copies(redis, settings, tenant_id, filed_under, now)
    exported["security_events"] = await _security_events(db, tenant_id, subject_id)
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=(principal.kind.value, principal.subject_id),
        action=audit.Action.PRIVACY_EXPORT,
        outcome=audit.Outcome.SUCCESS,
        target_id=subject_id,
    )
    return exported


async def _account_copies(db: Queryable, user_id: str) -> dict[str, list[Any]]:
    """What the account holds besides its ``users`` row: ``roles``, ``linked_identities``
    and ``sessions`` (refresh tokens, without their digests, oldest first)."""
    return {
        "roles": [
            r["role"]
            for r in await db.fetch("SELECT role FROM user_roles WHERE user_id = $1", user_id)
        ],
        "linked_identities": [
            _row(r)
            for r in await db.fetch(
                "SELECT provider, subject, email, linked_at FROM user_identities "
                "WHERE user_id = $1",
                user_id,
            )
        ],
        "sessions": [
            _row(r)
            for r in await db.fetch(
                "SELECT issued_at, expires_at, rotated_at, revoked_at FROM refresh_tokens "
                "WHERE user_id = $1 ORDER BY issued_at",
                user_id,
            )
        ],
    }


async def _table_copies(
    db: Queryable, tenant_id: str, tables: list[str], filed_under: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables`` filed under one of the ids, by table (empty ones included)."""
    copies: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        rows = await db.fetch(
            f'SELECT * FROM "{table}" WHERE tenant_id = $1 AND user_id::text = ANY($2::text[])',
            tenant_id,
            filed_under,
        )
        copies[table] = [_row(r) for r in rows]
    return copies


async def _lake_copies(
    settings: Settings, tenant_id: str, filed_under: list[str]
) -> list[dict[str, Any]]:
    """Every lake row filed under one of the ids, with its file (relative to the root)."""
    root = lake.default_root(settings)
    lake_rows = await asyncio.to_thread(lake.learner_rows, root, tenant_id, filed_under)
    return [
        {"source": "lake", "file": file, "row": {k: plain(v) for k, v in row.items()}}
        for file, row in lake_rows
    ]


async def _security_events(db: Queryable, tenant_id: str, subject_id: str) -> list[dict[str, Any]]:
    """Audit rows where the subject acted or was acted on, oldest first."""
    return [
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


def learner_redis_keys(
    settings: Settings, tenant_id: str, ids: list[str], *, now: datetime
) -> list[str]:
    """The exact Redis keys that may hold the learners' data: their cache and placement
    keys, and the account's rate-limit counters of this and the previous window."""
    keys = [
        k for i in ids for k in redis_keys.learner_data_keys(settings.redis_namespace, tenant_id, i)
    ]
    window = int(now.timestamp() // WINDOW_S)
    bucket = f"user:{redis_keys.id_path(tenant_id, ids[0])}"
    keys += [f"{settings.redis_namespace}:api:rate:{bucket}:{w}" for w in (window - 1, window)]
    return keys


async def _redis_copies(
    redis: Redis, settings: Settings, tenant_id: str, ids: list[str], now: datetime
) -> list[dict[str, Any]]:
    copies: list[dict[str, Any]] = []
    for key in learner_redis_keys(settings, tenant_id, ids, now=now):
        kind = _text(await redis.type(key))
        if kind == "none":
            continue
        value: Any
        if kind == "hash":
            value = {
                _text(f): _json_or_text(v) for f, v in sorted((await redis.hgetall(key)).items())
            }
        elif kind == "string":
            value = _json_or_text(await redis.get(key))
        else:
            value = None  # no other kind holds learner data; the key is still listed
        copies.append({"source": "redis", "key": key, "type": kind, "value": value})
    return copies


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _json_or_text(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    text = _text(raw)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def erase_learner(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    subject_id: str,
    requested_by: tuple[str, str],
    now: datetime,
    publisher: EventPublisher | None = None,
) -> ErasureReport:
    """Erase the learner from PostgreSQL, Redis, the lake; tombstone and publish it; audit.

    The steps and their order are the module docstring's. ``publisher`` publishes the
    erasure on ``privacy.erasures`` (None: not published, ``published`` is False).
    """
    async with transaction(db) as conn:
        tables = await learner_tables(conn)
        account = await _ensure_known(conn, tenant_id, subject_id, tables)
        filed_under = _filed_under(subject_id, account)
        # Before any delete: a processor batch applying this learner's events finishes
        # first (and its rows are deleted below), later batches see the tombstone.
        await lock_learners(conn, [(tenant_id, i) for i in filed_under], exclusive=True)
        deleted: dict[str, int] = {}
        for table in tables:
            status = await conn.execute(
                f'DELETE FROM "{table}" WHERE tenant_id = $1 AND user_id::text = ANY($2::text[])',
                tenant_id,
                filed_under,
            )
            deleted[table] = int(status.split()[-1])
        if account is not None:
            # Its access tokens die with the row: every request checks that `sub` is an
            # active account (token_versions.current); the cached version is dropped
            # below, after the key deletion.
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
    # Exact names only: every id component is escaped by the one key builder.
    keys = int(await redis.delete(*learner_redis_keys(settings, tenant_id, filed_under, now=now)))
    erased_lake = await asyncio.to_thread(
        lake.erase_learners, lake.default_root(settings), {tenant_id: filed_under}
    )
    if account is not None:  # after the key deletion, which would delete the marker
        await token_versions.forget_erased(redis, settings, tenant_id=tenant_id, user_id=subject_id)
    published = publisher is not None and await _publish_erasures(
        publisher, settings, tenant_id, filed_under, now
    )
    return ErasureReport(
        subject_id,
        deleted,
        account is not None,
        keys,
        now,
        lake_rows_deleted=erased_lake.rows_removed,
        lake_files_rewritten=len(erased_lake.files_rewritten) + len(erased_lake.files_removed),
        published=published,
    )


def erasure_record(
    settings: Settings, tenant_id: str, subject_id: str, erased_at: datetime
) -> OutgoingRecord:
    """The ``privacy.erasures`` record of one erased id: key ``tenant:id`` (compaction keeps
    one per learner), JSON value ``{"tenant_id", "subject_id", "erased_at"}``."""
    value = {"tenant_id": tenant_id, "subject_id": subject_id, "erased_at": erased_at.isoformat()}
    return OutgoingRecord(
        topic=settings.topic(Stream.PRIVACY_ERASURES),
        key=learner_key(tenant_id, subject_id),
        value=json.dumps(value, sort_keys=True).encode(),
    )


async def _publish_erasures(
    publisher: EventPublisher, settings: Settings, tenant_id: str, ids: list[str], now: datetime
) -> bool:
    records = [erasure_record(settings, tenant_id, i, now) for i in ids]
    return await publisher.publish_records(records)


async def learners_past_retention(db: Queryable, *, tenant_id: str, now: datetime) -> list[str]:
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
