"""The one database layer: connection pools and versioned migrations.

Migrations are plain SQL files in ``infra/migrations``: ``NNNN_name.up.sql`` and
``NNNN_name.down.sql``. Each runs in its own transaction under an advisory lock,
and ``schema_migrations`` records which versions are applied, so upgrade and
downgrade can be run any number of times from any state.

Two database roles (docs/security.md, "Database roles and the audit log"):

* the **owner** (the user of ``settings.database_url``) runs migrations and owns every
  table; only migrations and operator commands (``infra.rebuild_view``) connect as it;
* the **service role** (``settings.database_service_role``) is what every service
  connects as (:func:`create_pool` and :func:`connect` by default): LOGIN, not
  superuser, owns nothing, so it cannot ``TRUNCATE``, ``ALTER TABLE ... DISABLE
  TRIGGER`` or ``SET session_replication_role``, and it may only INSERT and SELECT
  the append-only tables. :func:`upgrade` creates it and re-grants after every run.

Command line: ``python -m learnstream.db {upgrade,downgrade,current} [--to N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from learnstream.exceptions import ConfigurationError, ServiceUnavailableError
from learnstream.settings import REPO_ROOT, Settings, get_settings

# Which role a connection logs in as: "service" for every service, "owner" for
# migrations, database creation and operator commands that rewrite tables.
Role = Literal["service", "owner"]


class Queryable(Protocol):
    """What a pool and a connection both answer: one statement at a time.

    asyncpg ships no type information, so this names the methods the code uses; rows
    are ``asyncpg.Record`` (indexable by column name), typed ``Any`` here.
    """

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """All rows of ``query``."""
        ...

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """The first row of ``query``, or None."""
        ...

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """One value of the first row of ``query``, or None."""
        ...

    async def execute(self, query: str, *args: Any) -> str:
        """Run ``query``; its status line (e.g. ``INSERT 0 1``)."""
        ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None:
        """Run ``command`` once per argument tuple of ``args``."""
        ...


class Connection(Queryable, Protocol):
    """One connection (asyncpg ``Connection`` or a pool's ``PoolConnectionProxy``)."""

    def transaction(self, *, isolation: str | None = None) -> Any:
        """A transaction (a savepoint when one is open) as an async context manager."""
        ...

    def is_closed(self) -> bool:
        """True once the connection was closed."""
        ...


MIGRATIONS_DIR = REPO_ROOT / "infra" / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
# Any constant will do; it only has to be the same for every migrating process.
_MIGRATION_LOCK_ID = 0x1EA5_0001
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Tables the service role may only INSERT into and SELECT from: history nobody rewrites.
# (audit_log also refuses UPDATE and DELETE by trigger, for the owner too.)
APPEND_ONLY_TABLES = ("audit_log",)
# Functions that run as the owner (SECURITY DEFINER) so the service role need not own
# the table they change; EXECUTE on them goes to the service role only.
OWNER_FUNCTIONS = ("attempts_ensure_partition(timestamp with time zone)",)


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


def url_for_role(settings: Settings, role: Role = "service") -> str:
    """The URL a connection as ``role`` uses.

    The owner's is ``settings.database_url``. The service role's is
    ``settings.database_service_url`` when set, else the owner's with its user (and
    password) replaced by ``settings.database_service_role``, so a local set-up with
    trust authentication needs no second URL.
    """
    if role == "owner":
        return settings.database_url
    if settings.database_service_url:
        return settings.database_service_url
    parts = urlsplit(settings.database_url)
    hosts = parts.netloc.rpartition("@")[2]
    user = quote(settings.database_service_role, safe="")
    return urlunsplit(parts._replace(netloc=f"{user}@{hosts}"))


async def connect(
    settings: Settings, *, database_url: str | None = None, role: Role = "service"
) -> asyncpg.Connection:
    """One connection as ``role`` (or to ``database_url``); ServiceUnavailableError when down."""
    url = database_url or url_for_role(settings, role)
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"PostgreSQL at {_redact(url)} did not accept a connection: {exc}. "
            "Start it with `make services` or set LEARNSTREAM_DATABASE_URL "
            "(and migrate: `python -m learnstream.db upgrade` creates the service role)."
        ) from exc


async def create_pool(
    settings: Settings, *, max_size: int | None = None, role: Role = "service"
) -> asyncpg.Pool:
    """The process's connection pool, logged in as ``role`` (services: the default)."""
    url = url_for_role(settings, role)
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=max_size or settings.database_pool_max,
            timeout=10,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"PostgreSQL at {_redact(url)} did not accept a connection: {exc}"
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
    conn = await connect(settings, database_url=maintenance_url, role="owner")
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
    maintenance_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await connect(settings, database_url=maintenance_url, role="owner")
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


async def upgrade(
    conn: asyncpg.Connection,
    *,
    to: int | None = None,
    service_role: str = Settings.model_fields["database_service_role"].default,
) -> list[int]:
    """Apply every not-yet-applied migration up to version ``to`` (default: all), in order.

    ``conn`` is the owner's. Versions are tracked one by one (not as a high-water
    mark), so a migration merged from a branch with a lower number than one already
    applied still runs. Afterwards :func:`grant_service_role` runs (always, also when
    nothing was applied), so every table, whichever migration made it, is covered.
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
        await grant_service_role(conn, service_role)
    return applied


async def grant_service_role(conn: asyncpg.Connection, role: str) -> None:
    """Create ``role`` if missing and give it exactly what the services need.

    Run by the owner (``conn``'s user). The role logs in, is no superuser and owns
    nothing. It gets SELECT, INSERT, UPDATE and DELETE on every table of the public
    schema (views, offsets, partitions) and USAGE on its sequences, now and, through
    default privileges, on every table the owner creates later (a new migration's, a
    partition made at run time). It gets INSERT and SELECT only on
    :data:`APPEND_ONLY_TABLES`, SELECT only on ``schema_migrations``, and never
    TRUNCATE, REFERENCES, TRIGGER or CREATE. Idempotent; safe when several
    processes (test runs) create the role at once.
    """
    if not _PLAIN_NAME.match(role):
        raise ConfigurationError(f"database service role {role!r} is not a plain lower-case name")
    owner = await conn.fetchval("SELECT current_user")
    if owner == role:
        raise ConfigurationError(f"the migrating user {owner!r} is the service role itself")
    async with conn.transaction():
        await conn.execute(
            f"""
            DO $$ BEGIN
                CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                    NOBYPASSRLS;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- made already (by a concurrent migration, perhaps)
            END $$
            """
        )
    superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
    if superuser:
        raise ConfigurationError(
            f"database role {role!r} is a superuser; the services' role must not be "
            f"(ALTER ROLE {role} NOSUPERUSER)"
        )
    # (statement, the object it needs or None): a partial upgrade (--to N) may not have
    # made every named table or function yet; their grant waits for the migration.
    grants: list[tuple[str, str | None]] = [
        # PostgreSQL < 15 let every role create tables in public; the services never do.
        ("REVOKE CREATE ON SCHEMA public FROM PUBLIC", None),
        (f'GRANT USAGE ON SCHEMA public TO "{role}"', None),
        (f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"', None),
        (f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"', None),
        (f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"', None),
        (
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public '
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"',
            None,
        ),
        (
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public '
            f'GRANT USAGE, SELECT ON SEQUENCES TO "{role}"',
            None,
        ),
        (f'REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM "{role}"', None),
    ]
    grants += [(f'REVOKE UPDATE, DELETE ON {t} FROM "{role}"', t) for t in APPEND_ONLY_TABLES]
    grants += [(f'GRANT EXECUTE ON FUNCTION {f} TO "{role}"', f) for f in OWNER_FUNCTIONS]
    present = {
        row["name"]
        for row in await conn.fetch(
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' "
            "UNION SELECT p.oid::regprocedure::text FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        )
    }
    async with conn.transaction():
        for statement, needs in grants:
            if needs is None or needs in present:
                await conn.execute(statement)


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
    conn = await connect(settings, role="owner")
    try:
        if args.command == "upgrade":
            await upgrade(conn, to=args.to, service_role=settings.database_service_role)
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
