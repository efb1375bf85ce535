"""The services run as a database role that owns nothing and cannot rewrite the audit log.

Proves (attack review finding L3): as the services' role, every way of removing or
changing audit rows that a table owner or superuser has — DELETE, UPDATE, TRUNCATE,
ALTER TABLE ... DISABLE TRIGGER, DROP, SET session_replication_role = replica — is
refused; and the pools every service opens (read API, ingest, the processors' batch
runner, the ML jobs' connection) log in as that role, which owns no table and is no
superuser. (The owner meets the append-only trigger: tests/integration/api/test_audit.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from api.app import create_app as create_api
from api.services import audit
from ingest.app import create_app as create_ingest
from learnstream.settings import Settings
from ml.jobs.common import with_connection
from processors.base import BatchRunner
from processors.learner_state import LearnerStateProcessor

# Each statement an owner could use to make audit rows disappear or change.
TAMPERING = {
    "delete": "DELETE FROM audit_log",
    "update": "UPDATE audit_log SET outcome = 'success'",
    "truncate": "TRUNCATE audit_log",
    "disable trigger": "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "drop": "DROP TABLE audit_log",
    "replica mode then delete": (
        "SET LOCAL session_replication_role = replica; DELETE FROM audit_log"
    ),
}

# What the role (and what it owns) looks like from inside a connection.
IDENTITY = """
    SELECT current_user AS name, r.rolsuper AS superuser,
           (SELECT count(*) FROM pg_class c
             WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace) AS owned
    FROM pg_roles r WHERE r.rolname = current_user
"""


async def test_service_role_cannot_delete_audit_rows(db_pool: asyncpg.Pool) -> None:
    await audit.record(
        db_pool,
        tenant_id="acme",
        actor=("user", "u1"),
        action=audit.Action.LOGIN,
        outcome=audit.Outcome.FAILURE,
    )
    for what, statement in TAMPERING.items():
        async with db_pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1, what
    assert await db_pool.fetchval("SELECT outcome FROM audit_log") == "failure"
    # What the services do need still works: append and read.
    await audit.record(
        db_pool,
        tenant_id="acme",
        actor=None,
        action=audit.Action.API_KEY_REJECTED,
        outcome=audit.Outcome.DENIED,
    )
    assert len(await audit.recent(db_pool, tenant_id="acme")) == 2


async def _identity(pool_or_conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, object]:
    row = await pool_or_conn.fetchrow(IDENTITY)
    assert row is not None
    return dict(row)


async def test_services_connect_as_non_owner(
    db_pool: asyncpg.Pool, settings: Settings, topics: Settings
) -> None:
    role = settings.database_service_role
    expected = {"name": role, "superuser": False, "owned": 0}
    seen: dict[str, dict[str, object]] = {}

    api = create_api(settings)
    async with api.router.lifespan_context(api):
        seen["read API"] = await _identity(api.state.pool)
    ingest = create_ingest(topics)
    async with ingest.router.lifespan_context(ingest):
        seen["ingest"] = await _identity(ingest.state.pool)
    runner = BatchRunner(LearnerStateProcessor(settings), settings, consumer_group="test.roles")
    try:
        seen["processors"] = await _identity(await runner._ensure_pool())
    finally:
        await runner.close()
    seen["test pool"] = await _identity(db_pool)

    assert seen == dict.fromkeys(seen, expected)
    # ML jobs and DAG tasks (synchronous) go through ml.jobs.common.with_connection.
    ml_identity = await _in_thread(settings)
    assert ml_identity == expected
    # The role itself owns nothing in the database, not only in public.
    owned = await db_pool.fetchval(
        "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
        "WHERE rolname = current_user)"
    )
    assert owned == 0


async def _in_thread(settings: Settings) -> dict[str, object]:
    import asyncio

    return await asyncio.to_thread(with_connection, settings, _identity)


async def test_service_role_creates_partitions_at_run_time(
    db_pool: asyncpg.Pool, settings: Settings
) -> None:
    # The learner-state processor makes next month's attempts partition itself; the
    # table's owner alone may, so it goes through a SECURITY DEFINER function.
    month = datetime(2031, 7, 1, tzinfo=UTC)
    processor = LearnerStateProcessor(settings)
    try:
        await processor._ensure_partitions({month})
    finally:
        await processor.close()
    assert await db_pool.fetchval("SELECT to_regclass('attempts_p203107')::text") == (
        "attempts_p203107"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db_pool.execute("CREATE TABLE attacker_table (x int)")
