"""Migrations apply from scratch, undo completely, and re-apply: the schema round-trips."""

from __future__ import annotations

from learnstream import db
from learnstream.settings import Settings

SCHEMA_QUERY = """
    SELECT table_name, column_name, data_type, is_nullable
    FROM information_schema.columns WHERE table_schema = 'public'
      -- Partitions (attempts_pYYYYMM) are created at run time, not by migrations.
      AND table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition)
    ORDER BY table_name, column_name
"""


async def test_upgrade_downgrade_upgrade_round_trips(migrated_database: Settings) -> None:
    conn = await db.connect(migrated_database, role="owner")
    try:
        every_version = [m.version for m in db.load_migrations()]
        assert await db.applied_versions(conn) == set(every_version)
        schema_before = await conn.fetch(SCHEMA_QUERY)

        undone = await db.downgrade(conn, to=0)
        assert undone == sorted(every_version, reverse=True)
        remaining = {r["table_name"] for r in await conn.fetch(SCHEMA_QUERY)}
        assert remaining == {"schema_migrations"}

        assert await db.upgrade(conn) == every_version
        assert await conn.fetch(SCHEMA_QUERY) == schema_before
        assert await db.upgrade(conn) == []  # idempotent
    finally:
        await conn.close()


async def test_each_migration_downgrades_alone(migrated_database: Settings) -> None:
    conn = await db.connect(migrated_database, role="owner")
    try:
        versions = [m.version for m in db.load_migrations()]
        for version in reversed(versions):
            below = max([v for v in versions if v < version], default=0)
            assert await db.downgrade(conn, to=below) == [version]
        assert await db.applied_versions(conn) == set()
        for version in versions:
            assert await db.upgrade(conn, to=version) == [version]
    finally:
        await conn.close()
