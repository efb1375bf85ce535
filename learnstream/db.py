"""The one database layer: connection pools and versioned migrations.

Migrations are plain SQL files in ``infra/migrations``: ``NNNN_name.up.sql`` and
``NNNN_name.down.sql``. Each runs in its own transaction under an advisory lock,
and ``schema_migrations`` records which versions are applied, so upgrade and
downgrade can be run any number of times from any state.

Command line: ``python -m learnstream.db {upgrade,downgrade,current} [--to N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from learnstream.exceptions import ConfigurationError, ServiceUnavailableError
from learnstream.settings import REPO_ROOT, Settings, get_settings

MIGRATIONS_DIR = REPO_ROOT / "infra" / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
# Any constant will do; it only has to be the same for every migrating process.
_MIGRATION_LOCK_ID = 0x1EA5_0001


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: SQL to apply it and SQL to undo it."""

    version: int
    name: str
    up_sql: str
    down_sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory``, in version order; both halves must exist."""
    halves: dict[tuple[int, str], dict[str, str]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ConfigurationError(f"{path}: expected NNNN_name.up.sql or NNNN_name.down.sql")
        version, name, direction = int(match[1]), match[2], match[3]
        halves.setdefault((version, name), {})[direction] = path.read_text()
    migrations = []
    for (version, name), sql in sorted(halves.items()):
        if set(sql) != {"up", "down"}:
            raise ConfigurationError(f"migration {version:04d}_{name} lacks its up or down file")
        migrations.append(Migration(version, name, sql["up"], sql["down"]))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ConfigurationError(f"duplicate migration versions in {directory}")
    return migrations


async def connect(settings: Settings, *, database_url: str | None = None) -> asyncpg.Connection:
    """One connection; ServiceUnavailableError with a next step when PostgreSQL is down."""
    url = database_url or settings.database_url
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"PostgreSQL at {_redact(url)} did not accept a connection: {exc}. "
            "Start it with `make services` or set LEARNSTREAM_DATABASE_URL."
        ) from exc


async def create_pool(settings: Settings, *, max_size: int | None = None) -> asyncpg.Pool:
    """The process's connection pool."""
    try:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=max_size or settings.database_pool_max,
            timeout=10,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"PostgreSQL at {_redact(settings.database_url)} did not accept a connection: {exc}"
        ) from exc
    assert pool is not None
    return pool


async def ensure_database(settings: Settings) -> bool:
    """Create the database named in ``database_url`` if it is missing; True if created."""
    parts = urlsplit(settings.database_url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(f"database name {name!r} in LEARNSTREAM_DATABASE_URL is not plain")
    maintenance_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await connect(settings, database_url=maintenance_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def drop_database(settings: Settings) -> None:
    """Drop the database in ``database_url`` (tests use this to start clean)."""
    parts = urlsplit(settings.database_url)
    name = parts.path.lstrip("/")
    conn = await connect(settings, database_url=urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def current_version(conn: asyncpg.Connection) -> int:
    """The highest applied migration version, 0 for an empty database."""
    await _ensure_version_table(conn)
    version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    return int(version or 0)


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    """Versions recorded in ``schema_migrations``."""
    await _ensure_version_table(conn)
    return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}


async def upgrade(conn: asyncpg.Connection, *, to: int | None = None) -> list[int]:
    """Apply every not-yet-applied migration up to version ``to`` (default: all), in order.

    Versions are tracked one by one (not as a high-water mark), so a migration
    merged from a branch with a lower number than one already applied still runs.
    """
    applied = []
    async with _migration_lock(conn):
        done = await applied_versions(conn)
        for migration in load_migrations():
            if migration.version in done or (to is not None and migration.version > to):
                continue
            async with conn.transaction():
                await conn.execute(migration.up_sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
    return applied


async def downgrade(conn: asyncpg.Connection, *, to: int) -> list[int]:
    """Undo every applied migration above version ``to`` (0 undoes all), newest first."""
    undone = []
    async with _migration_lock(conn):
        done = await applied_versions(conn)
        for migration in reversed(load_migrations()):
            if migration.version > to and migration.version in done:
                async with conn.transaction():
                    await conn.execute(migration.down_sql)
                    await conn.execute(
                        "DELETE FROM schema_migrations WHERE version = $1", migration.version
                    )
                undone.append(migration.version)
    return undone


async def _ensure_version_table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


class _migration_lock:
    """Session advisory lock so two processes never migrate at once."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def __aenter__(self) -> None:
        await self._conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m learnstream.db", description=__doc__)
    parser.add_argument("command", choices=["upgrade", "downgrade", "current"])
    parser.add_argument("--to", type=int, default=None, help="target version")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "upgrade" and await ensure_database(settings):
        pass
    conn = await connect(settings)
    try:
        if args.command == "upgrade":
            await upgrade(conn, to=args.to)
        elif args.command == "downgrade":
            if args.to is None:
                parser.error("downgrade needs --to N (0 undoes every migration)")
            await downgrade(conn, to=args.to)
        else:
            pass
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(_main())
