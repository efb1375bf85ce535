"""Shadow copies of view tables, and the one-transaction swap that puts them in place.

``infra.rebuild_view`` builds a processor's views anew while the old ones keep serving:

* :func:`create_shadow` makes schema ``rebuild__<processor>`` holding empty tables of
  the same names, columns, defaults, checks, keys and indexes as ``public``'s (and, for
  ``attempts``, its own ``attempts_ensure_partition`` so month partitions are made
  there). A connection whose ``search_path`` starts with that schema
  (:func:`shadow_settings`) runs the processor's unchanged SQL against the shadow.
* :func:`swap` runs inside the caller's transaction: it moves the live tables (and
  their partitions) to ``rebuild__<processor>__old``, the shadow's into ``public``,
  re-points views that read them and re-grants the services' role. Statements prepared
  before the swap are re-analysed by PostgreSQL after the DDL, so running workers and
  the API write and read the new tables from their next statement on.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from learnstream import db
from learnstream.exceptions import LearnstreamError
from learnstream.settings import Settings

# The shadow's own partition maker: the same as public's (migration 0020), but it
# looks for and creates month partitions in the shadow schema only.
_ENSURE_PARTITION = """
CREATE FUNCTION {schema}.attempts_ensure_partition(moment timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    month_start timestamptz := date_trunc('month', moment AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := format('attempts_p%s', to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{schema}.attempts_ensure_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF attempts FOR VALUES FROM (%L) TO (%L)',
            name, month_start, month_start + interval '1 month'
        );
    END IF;
    RETURN name;
END $$
"""


def shadow_schema(processor: str) -> str:
    """The schema a rebuild of ``processor`` builds its tables in."""
    return f"rebuild__{processor}"


def retired_schema(processor: str) -> str:
    """The schema the replaced tables move to until they are dropped."""
    return f"rebuild__{processor}__old"


def shadow_settings(settings: Settings, schema: str) -> Settings:
    """``settings`` whose connections resolve unqualified names in ``schema`` first."""

    def with_path(url: str) -> str:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
        query.append(("search_path", f"{schema},public"))  # asyncpg: a server setting
        return urlunsplit(parts._replace(query=urlencode(query)))

    update = {"database_url": with_path(settings.database_url)}
    if settings.database_service_url:
        update["database_service_url"] = with_path(settings.database_service_url)
    return settings.model_copy(update=update)


async def unsupported(conn: asyncpg.Connection, tables: tuple[str, ...]) -> list[str]:
    """Why ``tables`` cannot be swapped (triggers, owned sequences); empty when they can."""
    rows = await conn.fetch(
        """
        SELECT c.relname::text AS name, 'trigger ' || t.tgname AS what
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[])
          AND NOT t.tgisinternal
        UNION ALL
        SELECT c.relname::text, 'sequence ' || s.relname
        FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_class c ON c.oid = d.refobjid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[])
          AND d.deptype IN ('a', 'i')
        """,
        list(tables),
    )
    missing = [
        t for t in tables if await conn.fetchval("SELECT to_regclass($1)", f"public.{t}") is None
    ]
    return [f"{r['name']}: {r['what']}" for r in rows] + [f"{t}: no such table" for t in missing]


async def create_shadow(
    conn: asyncpg.Connection, schema: str, tables: tuple[str, ...], service_role: str
) -> None:
    """(Re)create ``schema`` with empty copies of ``public``'s ``tables``; run as the owner."""
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    for table in tables:
        oid = await conn.fetchval("SELECT $1::regclass::oid", f"public.{table}")
        partition_key = await conn.fetchval("SELECT pg_get_partkeydef($1)", oid)
        partitioned = f" PARTITION BY {partition_key}" if partition_key else ""
        await conn.execute(
            f'CREATE TABLE "{schema}"."{table}" '
            f'(LIKE public."{table}" INCLUDING ALL EXCLUDING INDEXES){partitioned}'
        )
        # Keys under their own names (LIKE would name them after the columns).
        for row in await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
            "WHERE conrelid = $1 AND contype IN ('p', 'u', 'x', 'f') ORDER BY contype DESC",
            oid,
        ):
            await conn.execute(
                f'ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
            )
        for (definition,) in await conn.fetch(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = $1 "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            oid,
        ):
            for prefix in (" ON ONLY public.", " ON public."):
                definition = definition.replace(prefix, f' ON "{schema}".')
            await conn.execute(definition)
    if "attempts" in tables:
        await conn.execute(_ENSURE_PARTITION.format(schema=schema))
        function = f"{schema}.attempts_ensure_partition(timestamptz)"
        await conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
        await conn.execute(f'GRANT EXECUTE ON FUNCTION {function} TO "{service_role}"')
    owner = await conn.fetchval("SELECT current_user")
    await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{service_role}"')
    privileges = "SELECT, INSERT, UPDATE, DELETE"
    await conn.execute(f'GRANT {privileges} ON ALL TABLES IN SCHEMA "{schema}" TO "{service_role}"')
    # Month partitions the shadow function makes later.
    await conn.execute(
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
        f'GRANT {privileges} ON TABLES TO "{service_role}"'
    )


async def _partitions(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1) ORDER BY 1",
        f'"{schema}"."{table}"',
    )
    return [r[0] for r in rows]


async def _dependent_views(conn: asyncpg.Connection, tables: tuple[str, ...]) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT v.relname::text
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid
        JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
        JOIN pg_class t ON t.oid = d.refobjid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1::text[])
          AND v.relnamespace = 'public'::regnamespace
        ORDER BY 1
        """,
        list(tables),
    )
    return [r[0] for r in rows]


async def swap(
    conn: asyncpg.Connection,
    processor: str,
    tables: tuple[str, ...],
    service_role: str,
) -> None:
    """Put the shadow tables in ``public`` in the caller's transaction (owner connection).

    Takes each live table's ACCESS EXCLUSIVE lock (readers wait the few milliseconds
    the renames take; ``lock_timeout`` of the caller bounds the wait).
    """
    schema, old = shadow_schema(processor), retired_schema(processor)
    views = {
        name: await conn.fetchval("SELECT pg_get_viewdef($1::regclass)", f"public.{name}")
        for name in await _dependent_views(conn, tables)
    }
    await conn.execute(f'DROP SCHEMA IF EXISTS "{old}" CASCADE')
    await conn.execute(f'CREATE SCHEMA "{old}"')
    for table in tables:
        # The parent first: it locks the partitions' readers out before they move.
        await conn.execute(f'LOCK TABLE public."{table}" IN ACCESS EXCLUSIVE MODE')
        partitions = await _partitions(conn, "public", table)
        await conn.execute(f'ALTER TABLE public."{table}" SET SCHEMA "{old}"')
        for partition in partitions:
            await conn.execute(f'ALTER TABLE public."{partition}" SET SCHEMA "{old}"')
    for table in tables:
        partitions = await _partitions(conn, schema, table)
        await conn.execute(f'ALTER TABLE "{schema}"."{table}" SET SCHEMA public')
        for partition in partitions:
            await conn.execute(f'ALTER TABLE "{schema}"."{partition}" SET SCHEMA public')
    for name, definition in views.items():
        await conn.execute(f'CREATE OR REPLACE VIEW public."{name}" AS {definition}')
    await db.grant_service_role(conn, service_role)
    leftover = await conn.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace($1) "
        "AND relkind IN ('r', 'p')",
        schema,
    )
    if leftover:
        raise LearnstreamError(f"{leftover} tables left in {schema} after the swap")


async def drop_schemas(settings: Settings, *schemas: str) -> None:
    """Drop ``schemas`` and what they hold (a finished or abandoned rebuild's leftovers)."""
    conn = await db.connect(settings, role="owner")
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
