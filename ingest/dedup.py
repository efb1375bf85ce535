"""Deduplication of client retries by ``(tenant_id, event_id)`` in Redis.

The life of one key ``<namespace>:ingest:event:<tenant_id>:<event_id>``:

1. **claim** — ``SET key pending:<token> NX GET EX <pending ttl>`` before producing.
   A fresh key is ours (CLAIMED); an existing ``done`` means the event was already
   accepted (DONE, report DUPLICATE); an existing ``pending:…`` means another
   request is publishing it right now (PENDING, report RETRY_LATER).
2. **mark_done** — after the broker acknowledged: ``SET key done EX <dedup ttl>``.
3. **release** — the broker failed the record for sure: delete the key if it still
   holds our token, so the client's retry can publish it.

Each step is ONE Lua script call (``EVALSHA``) per tenant of the batch (a batch has
one): the key prefix ``<namespace>:ingest:event:<tenant_id>:`` and the event ids
joined by newlines are two arguments, and the script builds each key. redis-py then
packs four arguments and parses one answer string per batch, not an argument and an
answer element per event (that packing and parsing was 15 % of ingest's event-loop
CPU at batches of 100, docs/performance.md). Redis runs a script atomically; per
key it does the same command as before, so the semantics and TTLs are unchanged.
(Keys not declared in ``KEYS`` rule out Redis Cluster; Learnstream uses one Redis,
or one primary with Sentinel.)

A claim stays pending while its record's delivery is undecided, even after the
request stopped waiting and answered 503 (ingest/batch.py): the delivery report
marks it done or releases it. The pending TTL outlives librdkafka's delivery
bound (``message.timeout.ms``, ingest/producer.py) plus margin, so if the process
dies between claim and mark, the claim expires only after its record can no
longer land, and a retry then publishes again. If it dies after the broker
acknowledged but before ``mark_done``, the retry after the claim expired
publishes a second copy: that window is why processors stay idempotent by
event_id too.

Redis unavailable: ingest refuses with 503 naming Redis. There is no fallback
that accepts events without the dedup guarantee.

Redis Sentinel (``redis_sentinels``): replication is asynchronous, so a claim or a
done marker the old primary acknowledged but had not sent to a replica is gone after
a failover. Claims and done markers therefore wait (``WAIT``, same round trip) until
``redis_wait_replicas`` replicas hold them, at most ``redis_wait_timeout_ms``; fewer
acknowledgements are counted (``on_unreplicated``), not refused, so ingest keeps
running on a primary whose replica is gone. A lost claim lets a concurrent copy of the
event be published; a lost done marker lets a later resend of an accepted event be
published again (docs/operations.md, "Redis Sentinel"). Releases do not wait: a lost
release leaves a claim pending until its TTL, which delays a retry and loses nothing.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ingest.producer import message_timeout_ms
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import report_bound_s
from learnstream.redis import uses_sentinel, wait_for_replicas
from learnstream.settings import Settings

_PENDING_PREFIX = b"pending:"
# Every script: ARGV[1] = the key prefix, ARGV[2] = the event ids joined by "\n".
# Claims every key (ARGV[3] = pending:<token>, ARGV[4] = pending TTL in s); answers one
# digit per key: 0 = claimed, 1 = done before, 2 = pending for another request.
_CLAIM_SCRIPT = """
local states = {}
for id in string.gmatch(ARGV[2], "[^\\n]+") do
  local previous = redis.call('SET', ARGV[1] .. id, ARGV[3], 'NX', 'GET', 'EX', ARGV[4])
  if not previous then
    states[#states + 1] = '0'
  elseif previous == 'done' then
    states[#states + 1] = '1'
  else
    states[#states + 1] = '2'
  end
end
return table.concat(states)
"""
# Marks every key done for ARGV[3] seconds.
_MARK_DONE_SCRIPT = """
local marked = 0
for id in string.gmatch(ARGV[2], "[^\\n]+") do
  redis.call('SET', ARGV[1] .. id, 'done', 'EX', ARGV[3])
  marked = marked + 1
end
return marked
"""
# Deletes each claim only while it still holds this request's token (ARGV[3]); a claim
# that expired and was taken by another request is left alone.
_RELEASE_SCRIPT = """
local released = 0
for id in string.gmatch(ARGV[2], "[^\\n]+") do
  local key = ARGV[1] .. id
  if redis.call('GET', key) == ARGV[3] then
    released = released + redis.call('DEL', key)
  end
end
return released
"""
# Beyond the delivery report's due time: Redis round trips of marking or releasing.
_PENDING_MARGIN_S = 15


class DedupUnavailableError(ServiceUnavailableError):
    """Redis did not answer; nothing can be claimed."""


class ClaimState(Enum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours now: publish it
    DONE = "done"  # accepted before: a duplicate
    PENDING = "pending"  # another request is publishing it right now


class DedupKey(NamedTuple):
    """The identity of an event for deduplication (event_id in canonical form); a
    tuple, built and hashed once per event."""

    tenant_id: str
    event_id: str


def pending_ttl_s(settings: Settings) -> int:
    """Seconds a pending claim lives: until its delivery report is due, plus a margin.

    librdkafka reports every record within ``message.timeout.ms`` (ingest/producer.py);
    ingest waits :data:`~learnstream.kafka.REPORT_MARGIN_S` beyond that, then needs
    Redis round trips.
    """
    return math.ceil(report_bound_s(message_timeout_ms(settings))) + _PENDING_MARGIN_S


def new_claim_token() -> str:
    """A random token that marks one request's claims as its own."""
    return secrets.token_hex(8)


class DedupStore:
    """Claims, completes and releases event ids in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        done_ttl_s: int,
        pending_ttl_s: int,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 50,
        on_unreplicated: Callable[[str, int], None] | None = None,
    ) -> None:
        """``wait_replicas`` > 0: claims and done markers WAIT for that many replicas,
        at most ``wait_timeout_ms``; ``on_unreplicated(step, keys)`` hears of each call
        ("claim" or "done") that fewer replicas acknowledged."""
        self._redis = redis
        self._namespace = namespace
        self._done_ttl_s = done_ttl_s
        self._pending_ttl_s = pending_ttl_s
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._on_unreplicated = on_unreplicated
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._mark_done = redis.register_script(_MARK_DONE_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)

    @classmethod
    def from_settings(
        cls,
        redis: Redis,
        settings: Settings,
        *,
        on_unreplicated: Callable[[str, int], None] | None = None,
    ) -> DedupStore:
        """A store with the namespace and TTLs of ``settings``; with Redis Sentinel, its
        writes wait for ``redis_wait_replicas`` replicas (none with one server)."""
        return cls(
            redis,
            namespace=settings.redis_namespace,
            done_ttl_s=settings.ingest_dedup_ttl_s,
            pending_ttl_s=pending_ttl_s(settings),
            wait_replicas=settings.redis_wait_replicas if uses_sentinel(settings) else 0,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            on_unreplicated=on_unreplicated,
        )

    @property
    def pending_ttl(self) -> int:
        """Seconds a claim stays pending (:func:`pending_ttl_s`)."""
        return self._pending_ttl_s

    def redis_key(self, key: DedupKey) -> str:
        """The Redis key of ``key``."""
        return f"{self._prefix(key.tenant_id)}{key.event_id}"

    def _prefix(self, tenant_id: str) -> str:
        return f"{self._namespace}:ingest:event:{tenant_id}:"

    def _by_tenant(self, keys: Sequence[DedupKey]) -> list[tuple[str, list[int], bytes]]:
        """Per tenant: its key prefix, the positions of its keys in ``keys`` and their
        event ids joined by newlines (what the scripts take)."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if not key.event_id or "\n" in key.event_id:
                raise ValueError(f"not an event id: {key.event_id!r}")
            groups.setdefault(key.tenant_id, []).append(index)
        return [
            (
                self._prefix(tenant),
                positions,
                "\n".join(keys[i].event_id for i in positions).encode(),
            )
            for tenant, positions in groups.items()
        ]

    async def claim(self, keys: Sequence[DedupKey], *, token: str) -> list[ClaimState]:
        """Try to claim every key for the request holding ``token``; one state per key.

        One script call per tenant (a batch has one). Raises DedupUnavailableError
        when Redis fails.
        """
        value = _PENDING_PREFIX + token.encode()
        states: list[ClaimState] = [ClaimState.CLAIMED] * len(keys)
        try:
            for prefix, positions, ids in self._by_tenant(keys):
                codes = await self._run(
                    "claim", self._claim, len(positions), [prefix, ids, value, self._pending_ttl_s]
                )
                for position, code in zip(positions, codes, strict=True):
                    states[position] = _STATE_OF_CODE[code - _ZERO]
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not answer the dedup claim: {exc}") from exc
        return states

    async def mark_done(self, keys: Sequence[DedupKey]) -> None:
        """Record ``keys`` as accepted for the dedup TTL (after the broker acknowledged)."""
        try:
            for prefix, positions, ids in self._by_tenant(keys):
                await self._run(
                    "done", self._mark_done, len(positions), [prefix, ids, self._done_ttl_s]
                )
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not record accepted events: {exc}") from exc

    async def release(self, keys: Sequence[DedupKey], *, token: str) -> None:
        """Drop this request's claims on ``keys`` so a retry can publish them."""
        value = _PENDING_PREFIX + token.encode()
        try:
            for prefix, _positions, ids in self._by_tenant(keys):
                await self._release(keys=[], args=[prefix, ids, value])
        except (RedisError, OSError) as exc:
            raise DedupUnavailableError(f"Redis did not release claims: {exc}") from exc

    async def _run(
        self, step: str, script: AsyncScript, count: int, args: list[bytes | str | int]
    ) -> Any:
        """One script call about ``count`` keys; with ``wait_replicas``, followed by WAIT
        in the same round trip."""
        if not self._wait_replicas:
            return await script(keys=[], args=args)
        result, acknowledged = await wait_for_replicas(
            self._redis,
            script,
            keys=[],
            args=args,
            replicas=self._wait_replicas,
            timeout_ms=self._wait_timeout_ms,
        )
        if acknowledged < self._wait_replicas and self._on_unreplicated is not None:
            self._on_unreplicated(step, count)
        return result


# The claim script's digits, by value (byte minus _ZERO).
_STATE_OF_CODE = (ClaimState.CLAIMED, ClaimState.DONE, ClaimState.PENDING)
_ZERO = ord("0")
