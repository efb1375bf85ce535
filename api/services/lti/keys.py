"""The tool's RSA signing keys: the newest signs; the JWKS publishes every key that is
current or retired less than :data:`RETIRED_KEYS_PUBLISHED_S` ago, so a platform that
cached the old set still verifies messages signed just before a rotation."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from joserfc.jwk import RSAKey

from api.services import mfa
from learnstream.db import Queryable
from learnstream.settings import Settings

RETIRED_KEYS_PUBLISHED_S = 24 * 3600
_SEAL_LABEL = "lti-tool-key"


async def rotate(db: asyncpg.Pool, settings: Settings, *, now: datetime) -> str:
    """Make a new signing key and retire the current one; the new key id."""
    key = RSAKey.generate_key(
        2048, parameters={"kid": str(uuid.uuid4()), "alg": "RS256", "use": "sig"}
    )
    kid = str(key.kid)
    sealed = mfa.seal(
        json.dumps(key.as_dict(private=True)), user_id=_SEAL_LABEL, ring=mfa.keyring(settings)
    )
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE lti_tool_keys SET retired_at = $1 WHERE retired_at IS NULL", now)
        await conn.execute(
            "INSERT INTO lti_tool_keys (kid, private_jwk, public_jwk, created_at) "
            "VALUES ($1, $2, $3::jsonb, $4)",
            kid,
            sealed,
            json.dumps(key.as_dict(private=False)),
            now,
        )
    return kid


async def signing_key(db: Queryable, settings: Settings, *, now: datetime) -> RSAKey:
    """The current signing key (made on first use)."""
    row = await db.fetchrow(
        "SELECT private_jwk FROM lti_tool_keys WHERE retired_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1"
    )
    if row is None:
        await rotate(db, settings, now=now)
        return await signing_key(db, settings, now=now)
    opened = mfa.open_sealed(row["private_jwk"], user_id=_SEAL_LABEL, ring=mfa.keyring(settings))
    return RSAKey.import_key(json.loads(opened.secret))


async def jwks(db: Queryable, settings: Settings, *, now: datetime) -> dict[str, Any]:
    """The tool's public key set (RFC 7517), current key first."""
    await signing_key(db, settings, now=now)  # a set is never empty
    rows = await db.fetch(
        "SELECT public_jwk FROM lti_tool_keys WHERE retired_at IS NULL OR retired_at > $1 "
        "ORDER BY created_at DESC",
        now - timedelta(seconds=RETIRED_KEYS_PUBLISHED_S),
    )
    return {"keys": [json.loads(r["public_jwk"]) for r in rows]}
