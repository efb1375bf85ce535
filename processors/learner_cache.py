"""The Redis hot cache of each learner's current state, refreshed after every commit.

One hash per learner, ``<redis_namespace>:learner:<tenant_id>:<user_id>`` (ids
percent-encoded by :mod:`learnstream.redis_keys`), with fields

* ``ability`` → ``{"ability", "ability_se", "n_responses", "version"}`` (logits);
* ``mastery:<skill_id>`` → ``{"p_mastery", "attempts", "correct", "last_attempt_at",
  "version"}`` (p_mastery in [0, 1], time ISO-8601 UTC);
* ``review:<item_id>`` → ``{"algorithm", "due_at", "reviews", "version"}``,

each value JSON carrying the ``version`` of its PostgreSQL row. Readers (the API)
read a field and fall back to PostgreSQL on a miss; PostgreSQL stays the truth.

Refresh, not delete-then-wait: after a batch commits, the rows it touched are read
back from PostgreSQL (committed state, so never a value a rollback could undo) and
written with one Lua script call for the whole batch that replaces a field only when
the incoming version is newer. Two writers refreshing one learner around a rebalance
therefore cannot put an older value over a newer one. The key's TTL
(``learner_cache_ttl_s``) is renewed on every refresh; if Redis is down the refresh
is logged and counted, and entries that missed it expire with the TTL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from learnstream import redis_keys
from learnstream.redis import redis_client
from learnstream.settings import Settings
from learnstream.views import ability as ability_view
from learnstream.views import mastery as mastery_view
from learnstream.views import reviews as reviews_view

log = logging.getLogger(__name__)

# One call per committed batch. KEYS: the touched learners' hashes. ARGV[1]: TTL in
# seconds; then, for each key in order, the number of its fields followed by that many
# (field, version, json) triples. Returns how many fields were written.
_WRITE_NEWER = """
local ttl = tonumber(ARGV[1])
local at = 2
local written = 0
for k = 1, #KEYS do
  local last = at + 3 * tonumber(ARGV[at])
  for i = at + 1, last, 3 do
    local current = redis.call('HGET', KEYS[k], ARGV[i])
    local current_version = -1
    if current then current_version = tonumber(cjson.decode(current)['version']) end
    if tonumber(ARGV[i + 1]) > current_version then
      redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 2])
      written = written + 1
    end
  end
  redis.call('EXPIRE', KEYS[k], ttl)
  at = last + 1
end
return written
"""


@dataclass(frozen=True, slots=True)
class Touched:
    """What one committed attempt may have changed for its learner."""

    tenant_id: str
    user_id: str
    skill_ids: tuple[str, ...]
    item_id: str  # "" when the attempt named no item


def learner_cache_key(settings: Settings, tenant_id: str, user_id: str) -> str:
    """The Redis key of one learner's hot-cache hash (ids escaped: learnstream.redis_keys)."""
    return redis_keys.redis_key(
        settings.redis_namespace, redis_keys.LEARNER_CACHE, tenant_id, user_id
    )


class LearnerCache:
    """Refreshes learners' hot-cache hashes from committed PostgreSQL rows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: Redis | None = None
        self._write_newer: AsyncScript | None = None

    async def refresh(self, conn: asyncpg.Connection, touched: Iterable[Touched]) -> int:
        """Re-read the touched rows through ``conn`` and write them; returns fields written."""
        items = list(touched)
        if not items:
            return 0
        fields = await self._read_fields(conn, items)
        if not fields:
            return 0
        keys: list[str] = []
        args: list[Any] = [self.settings.learner_cache_ttl_s]
        for (tenant_id, user_id), triples in sorted(fields.items()):
            keys.append(learner_cache_key(self.settings, tenant_id, user_id))
            args.append(len(triples))
            for triple in triples:
                args.extend(triple)
        # One EVALSHA for the whole batch: a pipeline of one script call per learner
        # cost a SCRIPT EXISTS round trip and a command per learner. (One Redis, not a
        # cluster: a batch's keys span hash slots.)
        return int(await self._ensure_script()(keys=keys, args=args))

    async def read(self, tenant_id: str, user_id: str) -> dict[str, dict[str, Any]]:
        """One learner's cached fields, decoded (empty when nothing is cached)."""
        raw = await self._ensure_redis().hgetall(
            learner_cache_key(self.settings, tenant_id, user_id)
        )
        return {
            field.decode() if isinstance(field, bytes) else field: json.loads(value)
            for field, value in raw.items()
        }

    async def close(self) -> None:
        """Close the Redis connection pool."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._write_newer = None

    def _ensure_redis(self) -> Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings, socket_timeout_s=5)
        return self._redis

    def _ensure_script(self) -> AsyncScript:
        if self._write_newer is None:
            # Registered once: the script object keeps its SHA and reloads the script
            # itself after a Redis restart (NOSCRIPT).
            self._write_newer = self._ensure_redis().register_script(_WRITE_NEWER)
        return self._write_newer

    async def _read_fields(
        self, conn: asyncpg.Connection, touched: list[Touched]
    ) -> dict[tuple[str, str], list[tuple[str, int, str]]]:
        learners = sorted({(t.tenant_id, t.user_id) for t in touched})
        skills = sorted({(t.tenant_id, t.user_id, s) for t in touched for s in t.skill_ids})
        items = sorted({(t.tenant_id, t.user_id, t.item_id) for t in touched if t.item_id})
        fields: dict[tuple[str, str], list[tuple[str, int, str]]] = {}

        def add(row: asyncpg.Record, field: str, value: dict[str, Any]) -> None:
            value["version"] = row["version"]
            fields.setdefault((row["tenant_id"], row["user_id"]), []).append(
                (field, int(row["version"]), json.dumps(value, sort_keys=True))
            )

        for row in await conn.fetch(mastery_view.CACHE_READ, *_columns(skills, 3)):
            add(
                row,
                f"mastery:{row['skill_id']}",
                {
                    "p_mastery": row["p_mastery"],
                    "attempts": row["attempts"],
                    "correct": row["correct"],
                    "last_attempt_at": row["last_attempt_at"].isoformat(),
                },
            )
        for row in await conn.fetch(ability_view.CACHE_READ, *_columns(learners, 2)):
            add(
                row,
                "ability",
                {
                    "ability": row["ability"],
                    "ability_se": row["ability_se"],
                    "n_responses": row["n_responses"],
                },
            )
        for row in await conn.fetch(reviews_view.CACHE_READ, *_columns(items, 3)):
            add(
                row,
                f"review:{row['item_id']}",
                {
                    "algorithm": row["algorithm"],
                    "due_at": row["due_at"].isoformat(),
                    "reviews": row["reviews"],
                },
            )
        return fields


def _columns(rows: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    return [[row[i] for row in rows] for i in range(width)]
