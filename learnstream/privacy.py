"""Erased learners, as every place data flows through asks about them.

``privacy_tombstones`` (written by ``api.services.privacy.erase_learner``) names every
erased ``(tenant_id, learner id)``. Ingest rejects their new events, the processors'
runner drops their records, the lake rewrite and ``infra.rebuild_view`` skip their rows:
all of them ask :class:`ErasedLearners`, one query per batch at most.

Serialising erasure with the processors: an erasure takes an exclusive advisory lock
on the learner's bucket (:func:`lock_learners`), a processor batch takes shared locks
on the buckets of the learners it applies, for its whole transaction. So either the
batch committed before the erasure began (and the erasure deletes what it wrote), or
the batch starts after the erasure committed (and sees the tombstone). Buckets, not one
lock per learner, keep a batch of thousands of learners to at most
:data:`LOCK_BUCKETS` locks; an erasure briefly holds up 1/64 of the learners.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from learnstream.db import Queryable

# (tenant_id, learner id as events carry it)
Learner = tuple[str, str]

# First key of the two-key advisory locks (pg_advisory_xact_lock(int, int)): "LSER".
ERASURE_LOCK_CLASS = 0x4C534552
LOCK_BUCKETS = 64

_ERASED_AMONG = """
    SELECT t.tenant_id, t.subject_id
    FROM privacy_tombstones AS t
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, subject_id)
      ON t.tenant_id = wanted.tenant_id AND t.subject_id = wanted.subject_id
"""
_ALL_TOMBSTONES = "SELECT tenant_id, subject_id, erased_at FROM privacy_tombstones"


def learner_of_key(key: bytes | None) -> Learner | None:
    """The learner a record key ``tenant:user`` names (tenant ids never contain ``:``)."""
    if not key:
        return None
    tenant, sep, user = key.partition(b":")
    if not sep or b"\x00" in key:
        # PostgreSQL text cannot hold NUL: no tombstone can name such a learner, and the
        # lookup would fail the whole batch (the record itself is dead-lettered later).
        return None
    try:
        return tenant.decode(), user.decode()
    except UnicodeDecodeError:
        return None


def lock_bucket(tenant_id: str, subject_id: str) -> int:
    """The advisory-lock bucket of a learner, in ``[0, LOCK_BUCKETS)``; stable across processes."""
    return zlib.crc32(f"{tenant_id}\x00{subject_id}".encode()) % LOCK_BUCKETS


async def lock_learners(conn: Queryable, learners: Iterable[Learner], *, exclusive: bool) -> None:
    """Take the transaction-scoped advisory locks of ``learners``' buckets, in bucket order.

    ``exclusive`` for an erasure, shared for a processor batch. Must run inside a
    transaction; the locks go with it.
    """
    buckets = sorted({lock_bucket(t, s) for t, s in learners})
    if not buckets:
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(
        f"SELECT {function}($1::int, b) FROM unnest($2::int[]) WITH ORDINALITY AS u(b, n) "
        "ORDER BY n",
        ERASURE_LOCK_CLASS,
        buckets,
    )


async def erased_among(conn: Queryable, learners: Iterable[Learner]) -> set[Learner]:
    """Which of ``learners`` have a tombstone (one query)."""
    # Ids PostgreSQL text cannot hold (NUL) have no tombstone, and would fail the query.
    wanted = sorted({(t, s) for t, s in learners if "\x00" not in t and "\x00" not in s})
    if not wanted:
        return set()
    rows = await conn.fetch(_ERASED_AMONG, [t for t, _ in wanted], [s for _, s in wanted])
    return {(r["tenant_id"], r["subject_id"]) for r in rows}


async def all_tombstones(conn: Queryable) -> list[tuple[str, str, Any]]:
    """Every tombstone as ``(tenant_id, subject_id, erased_at)``, sorted."""
    rows = await conn.fetch(_ALL_TOMBSTONES)
    return sorted((r["tenant_id"], r["subject_id"], r["erased_at"]) for r in rows)


class ErasedLearners:
    """Answers "which of these learners are erased?" with at most one query per call.

    Erased learners are remembered for good (a tombstone is never removed). Learners
    found not erased are remembered for ``not_erased_ttl_s`` seconds: 0 asks the
    database every time (the processors' runner, which must be exact), a few seconds
    saves ingest a query per request. At most ``max_entries`` of either are kept.
    """

    def __init__(
        self,
        *,
        not_erased_ttl_s: float,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = not_erased_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._erased: set[Learner] = set()
        self._not_erased: dict[Learner, float] = {}  # learner -> monotonic expiry (s)
        self.queries = 0  # database round trips made (for tests and metrics)

    async def among(self, conn: Queryable, learners: Iterable[Learner]) -> set[Learner]:
        """The erased ones among ``learners``."""
        wanted = set(learners)
        found = wanted & self._erased
        now = self._clock()
        unknown = [
            learner
            for learner in wanted - found
            if self._not_erased.get(learner, float("-inf")) <= now
        ]
        if not unknown:
            return found
        self.queries += 1
        erased = await erased_among(conn, unknown)
        if len(self._erased) + len(erased) > self._max_entries:
            self._erased.clear()
        self._erased |= erased
        if self._ttl_s > 0:
            if len(self._not_erased) + len(unknown) > self._max_entries:
                self._not_erased.clear()
            expiry = now + self._ttl_s
            for learner in unknown:
                if learner not in erased:
                    self._not_erased[learner] = expiry
        for learner in erased:
            self._not_erased.pop(learner, None)
        return found | erased
