"""Deduplication of client retries by ``(tenant_id, event_id)`` in Redis.

The life of one key ``<namespace>:ingest:event:<tenant_id>:<event_id>``:

1. **claim** — ``SET key pending:<token> NX GET EX <pending ttl>`` before producing.
   A fresh key is ours (CLAIMED); an existing ``done`` means the event was already
   accepted (DONE, report DUPLICATE); an existing ``pending:…`` means another
   request is publishing it right now (PENDING, report RETRY_LATER).
2. **mark_done** — after the broker acknowledged: ``SET key done EX <dedup ttl>``.
3. **release** — the broker failed the record: delete the key if it still holds our
   token, so the client's retry can publish it.

The pending TTL outlives the longest publish (delivery timeout plus margin); if
the process dies between claim and mark, the claim expires and a retry publishes
again. If it dies after the broker acknowledged but before ``mark_done``, the retry
after the claim expired publishes a second copy: that window is why processors
stay idempotent by event_id too.

Redis unavailable: ingest refuses with 503 naming Redis. There is no fallback
that accepts events without the dedup guarantee.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from learnstream.exceptions import ServiceUnavailableError
from learnstream.settings import Settings

_DONE = b"done"
_PENDING_PREFIX = b"pending:"
# Deletes a claim only while it still holds this request's token; a claim that
# expired and was taken by another request is left alone.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# The AsyncProducer waits message.timeout.ms plus 5 s for acknowledgements; the
# claim must outlive that, with room for Redis round trips.
_PENDING_MARGIN_S = 15


class DedupUnavailableError(ServiceUnavailableError):
    """Redis did not answer; nothing can be claimed."""


class ClaimState(Enum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours now: publish it
    DONE = "done"  # accepted before: a duplicate
    PENDING = "pending"  # another request is publishing it right now


@dataclass(frozen=True, slots=True)
class DedupKey:
    """The identity of an event for deduplication (event_id in canonical form)."""

    tenant_id: str
    event_id: str


def pending_ttl_s(settings: Settings) -> int:
    """Seconds a pending claim lives: the longest a publish can take, plus a margin."""
    return math.ceil(settings.ingest_delivery_timeout_ms / 1000) + 5 + _PENDING_MARGIN_S


def new_claim_token() -> str:
    """A random token that marks one request's claims as its own."""
    return secrets.token_hex(8)


class DedupStore:
    """Claims, completes and releases event ids in Redis."""

    def __init__(
        self, redis: Redis, *, namespace: str, done_ttl_s: int, pending_ttl_s: int
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._done_ttl_s = done_ttl_s
        self._pending_ttl_s = pending_ttl_s
        self._release = redis.register_script(_RELEASE_SCRIPT)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> DedupStore:
        """A store with the namespace and TTLs of ``settings``."""
        return cls(
            redis,
            namespace=settings.redis_namespace,
            done_ttl_s=settings.ingest_dedup_ttl_s,
            pending_ttl_s=pending_ttl_s(settings),
        )

    def redis_key(self, key: DedupKey) -> str:
        """The Redis key of ``key``."""
        return f"{self._namespace}:ingest:event:{key.tenant_id}:{key.event_id}"

    async def claim(self, keys: Sequence[DedupKey], *, token: str) -> list[ClaimState]:
        """Try to claim every key for the request holding ``token``; one state per key.

        One round trip for the whole batch. Raises DedupUnavailableError when Redis fails.
        """
        value = _PENDING_PREFIX + token.encode()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self.redis_key(key), value, nx=True, get=True, ex=self._pending_ttl_s)
                previous = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not answer the dedup claim: {exc}") from exc
        return [_state(found) for found in previous]

    async def mark_done(self, keys: Sequence[DedupKey]) -> None:
        """Record ``keys`` as accepted for the dedup TTL (after the broker acknowledged)."""
        if not keys:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self.redis_key(key), _DONE, ex=self._done_ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not record accepted events: {exc}") from exc

    async def release(self, keys: Sequence[DedupKey], *, token: str) -> None:
        """Drop this request's claims on ``keys`` so a retry can publish them."""
        if not keys:
            return
        value = _PENDING_PREFIX + token.encode()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    await self._release(keys=[self.redis_key(key)], args=[value], client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not release claims: {exc}") from exc


def _state(previous: bytes | None) -> ClaimState:
    if previous is None:
        return ClaimState.CLAIMED
    if previous == _DONE:
        return ClaimState.DONE
    return ClaimState.PENDING
