"""API keys for ingest: a cached authenticator and the command line that issues keys.

The key format, hashing and lookup live in the kernel (:mod:`learnstream.apikeys`),
shared with the read API. Ingest checks a key on every POST, so lookups are
cached for ``api_key_cache_ttl_s``: a revoked key keeps working at most that long.
Unknown keys are cached too (so a flood of bad keys costs one query each per TTL),
in a bounded map.

Command line::

    python -m ingest.apikeys create --tenant T --app A [--scope events:write ...]
    python -m ingest.apikeys revoke KEY_ID

``create`` prints the key once. Each ``--scope`` grants one scope (events:write,
views:read, content:read, feedback:write); without any the key gets events:write
only, the narrowest. No scope acts on accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg

from ingest.exceptions import DependencyUnavailableError
from learnstream import apikeys, db
from learnstream.apikeys import ApiKey
from learnstream.exceptions import ServiceUnavailableError
from learnstream.settings import Settings, get_settings

# Tenant ids go into record keys as "<tenant>:<user>", so they must not contain ":".
TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_CACHED_KEYS = 10_000

KeyLookup = Callable[[str], Awaitable[ApiKey | None]]


class CachedApiKeyAuthenticator:
    """Answers "which live key is this?" from a TTL cache in front of PostgreSQL."""

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        ttl_s: float,
        retry_after_s: int,
        max_entries: int = _MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._retry_after_s = retry_after_s
        self._max_entries = max_entries
        self._clock = clock
        # sha256 of the presented key -> (key or None, monotonic expiry in s)
        self._cache: dict[bytes, tuple[ApiKey | None, float]] = {}

    @classmethod
    def for_pool(cls, pool: asyncpg.Pool, settings: Settings) -> CachedApiKeyAuthenticator:
        """An authenticator over the ``api_keys`` table reached through ``pool``."""

        async def lookup(presented: str) -> ApiKey | None:
            return await apikeys.authenticate_api_key(pool, presented)

        return cls(
            lookup, ttl_s=settings.api_key_cache_ttl_s, retry_after_s=settings.ingest_retry_after_s
        )

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` names, or None; 503 error when PostgreSQL fails."""
        digest = hashlib.sha256(presented.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            key = await self._lookup(presented)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailableError(
                "postgresql",
                f"PostgreSQL did not answer the API-key lookup: {exc}",
                retry_after_s=self._retry_after_s,
            ) from exc
        if self._ttl_s > 0:
            self._remember(digest, key, now + self._ttl_s)
        return key

    def _remember(self, digest: bytes, key: ApiKey | None, expires_at: float) -> None:
        self._cache.pop(digest, None)
        while len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]  # the oldest insertion
        self._cache[digest] = (key, expires_at)


# --- command line ----------------------------------------------------------------


async def _create(
    settings: Settings,
    tenant_id: str,
    app_name: str,
    scopes: frozenset[apikeys.Scope] = apikeys.DEFAULT_SCOPES,
) -> str:
    if not TENANT_ID_PATTERN.match(tenant_id):
        raise SystemExit(
            f"error: tenant id {tenant_id!r} must match {TENANT_ID_PATTERN.pattern} "
            "(letters, digits, '.', '_', '-'; no ':')"
        )
    conn = await db.connect(settings)
    try:
        issued = await apikeys.create_api_key(
            conn, tenant_id=tenant_id, app_name=app_name, scopes=scopes
        )
    finally:
        await conn.close()
    return (
        f"key_id:  {issued.key_id}\n"
        f"tenant:  {issued.tenant_id}\n"
        f"app:     {issued.app_name}\n"
        f"scopes:  {' '.join(sorted(issued.scopes))}\n"
        f"api_key: {issued.plaintext}\n"
        "Store the api_key now: it is shown only this once (only its SHA-256 is kept).\n"
    )


async def _revoke(settings: Settings, key_id: str) -> str:
    conn = await db.connect(settings)
    try:
        tenant_id = await conn.fetchval("SELECT tenant_id FROM api_keys WHERE key_id = $1", key_id)
        if tenant_id is None:
            raise SystemExit(f"error: no API key {key_id!r}")
        revoked = await apikeys.revoke_api_key(conn, key_id=key_id, tenant_id=tenant_id)
    finally:
        await conn.close()
    if not revoked:
        return f"{key_id} was already revoked\n"
    return (
        f"revoked {key_id} (tenant {tenant_id}); running services stop accepting it within "
        f"{settings.api_key_cache_ttl_s:g} s (their key cache)\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m ingest.apikeys``."""
    parser = argparse.ArgumentParser(prog="python -m ingest.apikeys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a key for a client app of a tenant")
    create.add_argument("--tenant", required=True, help="tenant id, e.g. school-42")
    create.add_argument("--app", required=True, help="client application name")
    create.add_argument(
        "--scope",
        action="append",
        choices=[scope.value for scope in apikeys.Scope],
        help="grant this scope (repeat for several); default: events:write only",
    )
    revoke = commands.add_parser("revoke", help="revoke a key by its key_id (lsk_...)")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "create":
            scopes = apikeys.parse_scopes(args.scope) if args.scope else apikeys.DEFAULT_SCOPES
            out = asyncio.run(_create(settings, args.tenant, args.app, scopes))
        else:
            out = asyncio.run(_revoke(settings, args.key_id))
    except ServiceUnavailableError as exc:
        raise SystemExit(f"error: {exc}") from exc
    # A command line talks to a person on stdout (print is kept out of library code).
    sys.stdout.write(out)


if __name__ == "__main__":
    main()
