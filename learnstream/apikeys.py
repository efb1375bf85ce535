"""API keys of client apps: one format, one hash, one lookup, shared by ingest/ and api/.

A key reads ``lsk_<keyid>_<secret>``: ``lsk_<keyid>`` is the public ``key_id``
stored in ``api_keys`` (safe to log), ``<secret>`` is shown once when the key is
created. Only the SHA-256 of the whole key is stored. SHA-256 (not a slow
password hash) is enough because the secret is 256 random bits, not a
human-chosen password, and every request has to check it.

Every key carries scopes (:class:`Scope`): what the client app may do with it. No
scope acts on accounts (privacy, profiles, users, roles, keys, classes, audit):
those need a signed-in user. A new key gets :data:`DEFAULT_SCOPES`, the narrowest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from learnstream.db import Queryable
from learnstream.exceptions import LearnstreamError

KEY_PREFIX = "lsk_"
_KEY_FORMAT = re.compile(r"^(lsk_[0-9a-f]{8,32})_([A-Za-z0-9_-]{20,128})$")


class InvalidApiKeyError(LearnstreamError):
    """The presented string is not a well-formed Learnstream API key."""


class Scope(StrEnum):
    """What a client app may do with a key; routes name the scope they need.

    The values are stored in ``api_keys.scopes`` (a CHECK constraint lists them).
    """

    EVENTS_WRITE = "events:write"  # POST /v1/events (ingest)
    VIEWS_READ = "views:read"  # learner views: mastery, dashboard, predictions, profile
    CONTENT_READ = "content:read"  # published content (learner-facing fields) and skills
    FEEDBACK_WRITE = "feedback:write"  # recommendation feedback, notifications read


DEFAULT_SCOPES = frozenset({Scope.EVENTS_WRITE})
"""What a key gets when its creator names no scope: posting events only."""


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """The scopes named by ``values``; ValueError naming an unknown one."""
    known = {scope.value: scope for scope in Scope}
    found = set()
    for value in values:
        if value not in known:
            raise ValueError(f"unknown scope {value!r}; known: {', '.join(sorted(known))}")
        found.add(known[value])
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A live (not revoked) client-app key, as looked up from its presented form."""

    key_id: str
    tenant_id: str
    app_name: str
    scopes: frozenset[Scope] = DEFAULT_SCOPES


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A freshly created key; ``plaintext`` is never stored and shown only once."""

    key_id: str
    tenant_id: str
    app_name: str
    plaintext: str
    created_at: datetime
    scopes: frozenset[Scope] = DEFAULT_SCOPES


def generate_api_key() -> tuple[str, str]:
    """A new random ``(key_id, plaintext)``; the plaintext starts with the key_id."""
    key_id = KEY_PREFIX + secrets.token_hex(6)
    return key_id, f"{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(presented: str) -> str:
    """The ``key_id`` of a well-formed key; InvalidApiKeyError otherwise."""
    match = _KEY_FORMAT.match(presented.strip())
    if match is None:
        raise InvalidApiKeyError("API key is not of the form lsk_<keyid>_<secret>")
    return match[1]


def key_sha256(presented: str) -> bytes:
    """The 32-byte SHA-256 digest stored in ``api_keys.key_sha256``."""
    return hashlib.sha256(presented.strip().encode()).digest()


async def create_api_key(
    db: Queryable, *, tenant_id: str, app_name: str, scopes: Iterable[Scope] = DEFAULT_SCOPES
) -> IssuedApiKey:
    """Insert a new key for ``tenant_id`` holding ``scopes`` (default: events:write only).

    ``db`` is an asyncpg pool or connection; ValueError when ``scopes`` is empty.
    """
    granted = frozenset(Scope(s) for s in scopes)
    if not granted:
        raise ValueError("an API key needs at least one scope")
    key_id, plaintext = generate_api_key()
    created_at = await db.fetchval(
        """
        INSERT INTO api_keys (key_id, key_sha256, tenant_id, app_name, scopes)
        VALUES ($1, $2, $3, $4, $5) RETURNING created_at
        """,
        key_id,
        key_sha256(plaintext),
        tenant_id,
        app_name,
        sorted(granted),
    )
    return IssuedApiKey(key_id, tenant_id, app_name, plaintext, created_at, granted)


async def authenticate_api_key(db: Queryable, presented: str) -> ApiKey | None:
    """The live key matching ``presented``, or None (malformed, unknown, wrong secret, revoked).

    The lookup goes by the public key_id and the digest is compared in constant
    time, so response timing does not reveal how much of a secret was right.
    """
    try:
        key_id = parse_api_key(presented)
    except InvalidApiKeyError:
        return None
    row = await db.fetchrow(
        """
        SELECT key_sha256, tenant_id, app_name, scopes, revoked_at
        FROM api_keys WHERE key_id = $1
        """,
        key_id,
    )
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(bytes(row["key_sha256"]), key_sha256(presented)):
        return None
    return ApiKey(
        key_id=key_id,
        tenant_id=row["tenant_id"],
        app_name=row["app_name"],
        scopes=_known_scopes(row["scopes"]),
    )


def _known_scopes(stored: Iterable[str]) -> frozenset[Scope]:
    # The CHECK constraint admits only known scopes; skipping others keeps a key usable
    # (with less) should a newer deployment have stored a scope this one does not know.
    known = {scope.value for scope in Scope}
    return frozenset(Scope(value) for value in stored if value in known)


async def revoke_api_key(db: Queryable, *, key_id: str, tenant_id: str) -> bool:
    """Revoke a key of ``tenant_id``; True if a live key was revoked just now."""
    status = await db.execute(
        """
        UPDATE api_keys SET revoked_at = now()
        WHERE key_id = $1 AND tenant_id = $2 AND revoked_at IS NULL
        """,
        key_id,
        tenant_id,
    )
    return bool(status == "UPDATE 1")


def bearer_or_header_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key presented in ``Authorization: Bearer lsk_...`` or ``X-API-Key``, if any.

    A Bearer token that does not start with ``lsk_`` is not an API key (it may be
    a user JWT) and yields None here.
    """
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token.startswith(KEY_PREFIX):
            return token
    return None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A key as listed to its tenant's admins (never the secret or its digest)."""

    key_id: str
    app_name: str
    created_at: datetime
    revoked_at: datetime | None
    scopes: frozenset[Scope] = DEFAULT_SCOPES


async def list_api_keys(db: Queryable, *, tenant_id: str) -> list[ApiKeyRecord]:
    """Every key of ``tenant_id``, revoked ones included, oldest first."""
    rows = await db.fetch(
        """
        SELECT key_id, app_name, created_at, revoked_at, scopes FROM api_keys
        WHERE tenant_id = $1 ORDER BY created_at, key_id
        """,
        tenant_id,
    )
    return [
        ApiKeyRecord(
            row["key_id"],
            row["app_name"],
            row["created_at"],
            row["revoked_at"],
            _known_scopes(row["scopes"]),
        )
        for row in rows
    ]
