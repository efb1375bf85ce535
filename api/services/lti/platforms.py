"""Platforms (LMSs) a tenant registered, and their public keys.

A platform is found by (issuer, client_id) at login initiation and launch; its JWKS is
fetched from ``jwks_url`` and kept for :data:`JWKS_TTL_S`. A message signed with a key
id the cached set lacks refetches the set once (the platform rotated its key), at most
every :data:`JWKS_REFETCH_S` per URL, so forged key ids cannot make the tool hammer it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import KeySet

from api.exceptions import ConflictError, NotFoundError
from learnstream.db import Queryable

JWKS_TTL_S = 300.0
JWKS_REFETCH_S = 10.0
_HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Platform:
    tenant_id: str
    platform_id: str
    issuer: str
    client_id: str
    auth_login_url: str
    auth_token_url: str
    jwks_url: str
    deployment_ids: tuple[str, ...]


def _platform(row: Any) -> Platform:
    values = dict(row)
    values.pop("created_at", None)
    values["deployment_ids"] = tuple(values["deployment_ids"])
    return Platform(**values)


async def register(db: Queryable, platform: Platform) -> None:
    """Add ``platform`` to its tenant; 409 if the id or (issuer, client_id) is taken."""
    status: str = await db.execute(
        """
        INSERT INTO lti_platforms (tenant_id, platform_id, issuer, client_id, auth_login_url,
                                   auth_token_url, jwks_url, deployment_ids)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING
        """,
        platform.tenant_id,
        platform.platform_id,
        platform.issuer,
        platform.client_id,
        platform.auth_login_url,
        platform.auth_token_url,
        platform.jwks_url,
        list(platform.deployment_ids),
    )
    if status == "INSERT 0 0":
        raise ConflictError(
            "a platform with this id, or this issuer and client id, is registered",
            field="body.platform_id",
            reason="taken",
        )


async def list_platforms(db: Queryable, *, tenant_id: str) -> list[Platform]:
    rows = await db.fetch(
        "SELECT * FROM lti_platforms WHERE tenant_id = $1 ORDER BY platform_id", tenant_id
    )
    return [_platform(r) for r in rows]


async def remove(db: Queryable, *, tenant_id: str, platform_id: str) -> None:
    status: str = await db.execute(
        "DELETE FROM lti_platforms WHERE tenant_id = $1 AND platform_id = $2",
        tenant_id,
        platform_id,
    )
    if status == "DELETE 0":
        raise NotFoundError("no such platform", field="path.platform_id")


async def find(db: Queryable, *, issuer: str, client_id: str | None) -> Platform | None:
    """The platform of ``issuer`` (and ``client_id``; when absent, the issuer's only one)."""
    if client_id:
        row = await db.fetchrow(
            "SELECT * FROM lti_platforms WHERE issuer = $1 AND client_id = $2", issuer, client_id
        )
        return _platform(row) if row else None
    rows = await db.fetch("SELECT * FROM lti_platforms WHERE issuer = $1 LIMIT 2", issuer)
    return _platform(rows[0]) if len(rows) == 1 else None


async def get(db: Queryable, *, tenant_id: str, platform_id: str) -> Platform:
    row = await db.fetchrow(
        "SELECT * FROM lti_platforms WHERE tenant_id = $1 AND platform_id = $2",
        tenant_id,
        platform_id,
    )
    if row is None:
        raise NotFoundError("no such platform", field="platform_id")
    return _platform(row)


class JwksCache:
    """Platform key sets by URL, with when each was fetched and its key ids."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[float, set[str], dict[str, Any]]] = {}
        self._refetched_for_kid: dict[str, float] = {}

    async def key_set(self, url: str, *, kid: str | None) -> KeySet:
        """The set at ``url``; fetched when absent or stale, and once more when it lacks
        ``kid`` (at most every JWKS_REFETCH_S per URL)."""
        now = time.monotonic()
        cached = self._sets.get(url)
        unknown_kid = cached is not None and kid is not None and kid not in cached[1]
        last_refetch = self._refetched_for_kid.get(url, -JWKS_REFETCH_S)
        if unknown_kid and now - last_refetch >= JWKS_REFETCH_S:
            self._refetched_for_kid[url] = now
            cached = None
        if cached is None or now - cached[0] >= JWKS_TTL_S:
            async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
                response = await client.get(url)
                response.raise_for_status()
                document: dict[str, Any] = response.json()
            kids = {str(k.get("kid")) for k in document.get("keys", [])}
            cached = (now, kids, document)
            self._sets[url] = cached
        return KeySet.import_key_set(cached[2])  # type: ignore[arg-type]


JWKS_CACHE = JwksCache()
