"""The sign-in lockout gate: one atomic Redis script admits or refuses each credential check.

Rules:
- Every password or TOTP/backup-code check of an account must first be admitted.
  Admission counts the attempt *before* the credential is checked, in the same
  Redis script that reads the count, so however many requests arrive at once at
  most ``login_max_failures`` checks run per lock period (checking first and
  counting after let 100 concurrent guesses through 80 checks).
- The attempt that takes the last slot starts the lock: the counter then lives
  ``login_lockout_s`` seconds and every further attempt is refused (423) without a
  check, until it expires or the account is unlocked (mailed token, password
  reset, admin), which deletes it.
- A right password that still needs the MFA step gives its slot back (``release``);
  a whole successful sign-in clears the counter (``reset``). Failures are forgotten
  ``login_lockout_s`` after the last admitted attempt.
- Addresses without an account get a counter of their own, keyed by tenant and
  address, and exactly the same answers (401, then 423 with the same detail and
  Retry-After), so the lockout does not reveal who has an account.

Redis is the authority for admission; the ``users`` row mirrors the lock
(``failed_logins``, ``locked_until``) for admins, refresh and the audit trail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from api.exceptions import LockedError
from learnstream.settings import Settings

# KEYS[1] the counter; ARGV[1] the limit; ARGV[2] the lock period (ms).
# Returns {admitted (0/1), attempt number or current count, ms until the lock lapses}.
_ADMIT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if n >= limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, n, ttl}
end
n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, n, tonumber(ARGV[2])}
"""

# Give one slot back, never below zero, keeping the key's expiry.
_RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted credential check: its Redis key and its number (1 .. limit) in the run."""

    key: str
    number: int
    limit: int

    @property
    def last(self) -> bool:
        """True if this attempt took the last slot: failing it locks the account."""
        return self.number >= self.limit


def user_key(settings: Settings, *, user_id: str) -> str:
    """The counter of an existing account (password and MFA steps share it)."""
    return f"{settings.redis_namespace}:api:lockout:user:{user_id}"


def unknown_key(settings: Settings, *, tenant_id: str, email_address: str) -> str:
    """The counter of an address that has no account in ``tenant_id``."""
    digest = hashlib.sha256(f"{tenant_id}\0{email_address.strip().lower()}".encode()).hexdigest()
    return f"{settings.redis_namespace}:api:lockout:unknown:{digest[:32]}"


def locked_error(settings: Settings, *, retry_after_s: int) -> LockedError:
    """The one 423 answer of the lockout, the same for every account and for none."""
    return LockedError(
        f"too many failed sign-ins: locked for {max(1, retry_after_s)} s. If this address "
        "has an account, an unlock link was mailed to it; resetting the password or an "
        "admin also unlocks it",
        field="body.email",
        reason="locked",
        headers={"Retry-After": str(max(1, retry_after_s))},
    )


async def admit(redis: Redis, settings: Settings, *, key: str) -> Attempt:
    """Count one credential check against ``key``; LockedError (423) if none is left."""
    admitted, number, ttl_ms = await redis.eval(
        _ADMIT, 1, key, settings.login_max_failures, settings.login_lockout_s * 1000
    )
    if not int(admitted):
        raise locked_error(settings, retry_after_s=(int(ttl_ms) + 999) // 1000)
    return Attempt(key=key, number=int(number), limit=settings.login_max_failures)


async def release(redis: Redis, attempt: Attempt) -> None:
    """The credential was right but the sign-in goes on (MFA step): give the slot back."""
    await redis.eval(_RELEASE, 1, attempt.key)


async def reset(redis: Redis, settings: Settings, *, user_id: str) -> None:
    """Forget the failures of ``user_id`` (signed in, or unlocked); ends a lock at once."""
    await redis.delete(user_key(settings, user_id=user_id))
