"""Per-user token version: a security event ends every access token issued before it.

Each access token carries ``ver``, the user's ``users.token_version`` when it was
issued. Every request compares it with the current version; password reset, role
demotion, sign-out, refresh-family revocation, MFA enrolment and erasure raise the
version (``bump``), so the user's earlier access tokens stop working at once instead
of at expiry. Their refresh tokens are revoked separately where the event calls for
it; a device whose refresh token still stands just refreshes once.

PostgreSQL holds the truth; Redis caches it per user (``<ns>:api:token-version:
<tenant>:<user>``) so a request costs one GET, the same round trip the old sign-out
deny list cost. Cache rules that keep a stale value from winning:

- a reader that missed fills the key with ``SET NX``, never overwriting;
- a bump, after its transaction commits, raises the key to the new version with a
  compare-and-set script (only ever upwards), so a fill that read the database
  before the commit cannot lower it again;
- a user who is unknown, disabled or erased has ``NO_VERSION`` (-1), which no token
  carries; it is not cached (no key naming an erased learner lingers), so such a
  token costs one indexed lookup per request until it expires;
- erasure raises the key to ``ERASED``, above every real version, for
  ``ERASED_MARKER_TTL_S`` only: long enough that a fill which read the row just
  before the erasure committed cannot cache it, short enough that no key naming
  the erased learner outlives the erasure by more than that.

Only a lost Redis write (Redis down between commit and raise) leaves a stale value,
for at most ``CACHE_TTL_S``. Any code that changes ``users.status`` must bump too.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from api.services.identifiers import is_uuid
from learnstream.db import Queryable
from learnstream.settings import Settings

# How long a cached version lives without a bump (s): bounds the damage of a lost write.
CACHE_TTL_S = 300
ERASED_MARKER_TTL_S = 30
NO_VERSION = -1
ERASED = 2**62

# Raise KEYS[1] to ARGV[1] (never lower it); ARGV[2] is the TTL in seconds.
_RAISE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Bumped:
    """A version raised in the database, to announce to the cache after commit."""

    tenant_id: str
    user_id: str
    version: int


async def current(
    db: Queryable, redis: Redis, settings: Settings, *, tenant_id: str, user_id: str
) -> int:
    """The version an access token of ``user_id`` in ``tenant_id`` must carry to be valid.

    ``NO_VERSION`` (-1) when no active account has that id in that tenant (a token
    with an unknown ``sub`` never passes), ``ERASED`` after erasure.
    """
    key = cache_key(settings, tenant_id, user_id)
    cached = await redis.get(key)
    if cached is not None:
        return int(cached)
    if not is_uuid(user_id):
        return NO_VERSION
    found = await db.fetchval(
        "SELECT token_version FROM users WHERE id = $1 AND tenant_id = $2 AND status = 'active'",
        user_id,
        tenant_id,
    )
    if found is None:
        return NO_VERSION
    await redis.set(key, int(found), ex=CACHE_TTL_S, nx=True)
    return int(found)


async def bump(conn: Queryable, *, user_id: str) -> Bumped | None:
    """Raise the user's version inside the caller's transaction (None: no such user).

    Call ``announce`` with the result after the transaction commits.
    """
    row = await conn.fetchrow(
        """
        UPDATE users SET token_version = token_version + 1 WHERE id = $1
        RETURNING tenant_id, token_version
        """,
        user_id,
    )
    if row is None:
        return None
    return Bumped(row["tenant_id"], user_id, int(row["token_version"]))


async def announce(redis: Redis, settings: Settings, bumped: Bumped | None) -> None:
    """Raise the cached version to a committed bump, so the next request sees it."""
    if bumped is not None:
        key = cache_key(settings, bumped.tenant_id, bumped.user_id)
        await _raise(redis, key, bumped.version, ttl_s=CACHE_TTL_S)


async def end_all_sessions_now(
    db: Queryable, redis: Redis, settings: Settings, *, user_id: str
) -> None:
    """``bump`` in its own statement and ``announce``: every access token of the user dies."""
    await announce(redis, settings, await bump(db, user_id=user_id))


async def forget_erased(redis: Redis, settings: Settings, *, tenant_id: str, user_id: str) -> None:
    """After erasure: no token of this user passes again, even before the cache expires."""
    key = cache_key(settings, tenant_id, user_id)
    await _raise(redis, key, ERASED, ttl_s=ERASED_MARKER_TTL_S)


def cache_key(settings: Settings, tenant_id: str, user_id: str) -> str:
    """The Redis key of the cached version; ends in ``<tenant>:<user>`` like every
    per-learner key, so erasure's key sweep (api/services/privacy.py) finds it."""
    return f"{settings.redis_namespace}:api:token-version:{tenant_id}:{user_id}"


async def _raise(redis: Redis, key: str, version: int, *, ttl_s: int) -> None:
    await redis.eval(_RAISE_SCRIPT, 1, key, str(version), str(ttl_s))
