"""The aggregates processor: attempts in, windowed activity counts out.

For dashboards and operators: per tenant, per minute and per hour (tumbling windows
of *event* time, ``envelope.occurred_at``), per skill and over all skills
(``skill_id = ''``): attempts, fully correct answers, partial-credit score sum,
distinct active learners, and accuracy (a generated column, ``correct / attempts``).
The view is ``activity_aggregates``; rows are upserted by window start, so a late
event simply adds to its (older) window.

Exactly-once effect. Counts are increments, applied in the batch's transaction
together with the stored offsets (:mod:`processors.base`), so a replayed batch is
skipped, never added twice. Distinct learners cannot be an increment alone: the
table ``activity_window_learners`` holds one row per (window, skill, learner), an
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` says which learners are new to a
window, and only those add to ``active_learners``. That is exact and idempotent, and
both tables are commutative (the result does not depend on which partition's
batches come first). A HyperLogLog sketch (the ``postgresql-hll`` extension) would
bound the storage at the cost of ~1-2 % error and an extension to install; the exact
table is kept small instead by pruning windows past their allowed lateness
(:func:`prune_window_learners`, an operator job: a learner's first event in a window
already pruned would be counted again).

Why not Faust windowed tables: their state lives in RocksDB or memory and is rebuilt
from a changelog topic on start; the rebuild reads up to the high watermark the
broker reports, which the local broker (Tansu) reports wrongly, and the changelog is
written by Faust's own producer outside the PostgreSQL transaction, so the counts
would be neither recoverable here nor exactly-once with the offsets. PostgreSQL
upserts give both, and the view is directly queryable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg

from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from processors.base import Decoded, Flow
from processors.events import Attempt, decode_attempt
from processors.offsets import SourceRecord

# Window length in seconds per granularity (the values stored in the view).
GRANULARITIES: dict[str, int] = {"minute": 60, "hour": 3600}
# skill_id of the rows that count every attempt of the tenant once.
ALL_SKILLS = ""

_INSERT_LEARNERS = """
    INSERT INTO activity_window_learners (tenant_id, granularity, window_start, skill_id, user_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, granularity, window_start, skill_id
"""
# Rows are inserted in key order so that two workers updating the same windows lock
# them in the same order (a deadlock would only be retried, but costs a batch).
_UPSERT_COUNTS = """
    INSERT INTO activity_aggregates (tenant_id, granularity, window_start, skill_id, attempts,
                                     correct, score_sum, active_learners, updated_at)
    SELECT r.*, now()
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bigint[],
                $6::bigint[], $7::float8[], $8::bigint[])
      AS r(tenant_id, granularity, window_start, skill_id, attempts, correct, score_sum,
           active_learners)
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, granularity, window_start, skill_id) DO UPDATE SET
        attempts = activity_aggregates.attempts + EXCLUDED.attempts,
        correct = activity_aggregates.correct + EXCLUDED.correct,
        score_sum = activity_aggregates.score_sum + EXCLUDED.score_sum,
        active_learners = activity_aggregates.active_learners + EXCLUDED.active_learners,
        updated_at = EXCLUDED.updated_at
"""


class WindowKey(NamedTuple):
    """One row of ``activity_aggregates``."""

    tenant_id: str
    granularity: str
    window_start: datetime  # UTC
    skill_id: str  # ALL_SKILLS for the tenant's total


@dataclass(slots=True)
class WindowCounts:
    """What a batch adds to one window row."""

    attempts: int = 0
    correct: int = 0
    score_sum: float = 0.0


def window_start(occurred_at: datetime, seconds: int) -> datetime:
    """Start (UTC) of the tumbling window of ``seconds`` that contains ``occurred_at``."""
    epoch = int(occurred_at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def window_keys(attempt: Attempt) -> list[WindowKey]:
    """Every row one attempt counts in: each granularity × (each skill + the total)."""
    keys = []
    for granularity, seconds in GRANULARITIES.items():
        start = window_start(attempt.occurred_at, seconds)
        for skill_id in (ALL_SKILLS, *attempt.skill_ids):
            keys.append(WindowKey(attempt.tenant_id, granularity, start, skill_id))
    return keys


def batch_increments(
    attempts: Sequence[Attempt],
) -> tuple[dict[WindowKey, WindowCounts], set[tuple[WindowKey, str]]]:
    """What ``attempts`` add per window row, and the (row, learner) pairs they saw; pure."""
    counts: dict[WindowKey, WindowCounts] = {}
    learners: set[tuple[WindowKey, str]] = set()
    for attempt in attempts:
        for key in window_keys(attempt):
            row = counts.setdefault(key, WindowCounts())
            row.attempts += 1
            row.correct += int(attempt.correct)
            row.score_sum += attempt.score
            learners.add((key, attempt.user_id))
    return counts, learners


class AggregatesProcessor:
    """Windowed activity counts per tenant and skill; see the module docstring."""

    name = "aggregates"
    flow = Flow(
        reads=(Stream.ATTEMPTS,), writes=("activity_aggregates", "activity_window_learners")
    )
    sources = flow.reads

    def __init__(self, settings: Settings) -> None:
        del settings  # nothing configurable yet; the signature is the registry's

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]
    ) -> list[OutgoingRecord]:
        """Add ``batch`` to ``activity_aggregates``; derives no events."""
        counts, learners = batch_increments([item.event for item in batch])
        pairs = sorted(learners)
        new_learners: dict[WindowKey, int] = {}
        if pairs:
            inserted = await conn.fetch(
                _INSERT_LEARNERS,
                [key.tenant_id for key, _ in pairs],
                [key.granularity for key, _ in pairs],
                [key.window_start for key, _ in pairs],
                [key.skill_id for key, _ in pairs],
                [user for _, user in pairs],
            )
            for row in inserted:
                key = WindowKey(
                    row["tenant_id"], row["granularity"], row["window_start"], row["skill_id"]
                )
                new_learners[key] = new_learners.get(key, 0) + 1
        keys = sorted(counts)
        if keys:
            await conn.execute(
                _UPSERT_COUNTS,
                [k.tenant_id for k in keys],
                [k.granularity for k in keys],
                [k.window_start for k in keys],
                [k.skill_id for k in keys],
                [counts[k].attempts for k in keys],
                [counts[k].correct for k in keys],
                [counts[k].score_sum for k in keys],
                [new_learners.get(k, 0) for k in keys],
            )
        return []


async def prune_window_learners(
    conn: asyncpg.Connection, *, granularity: str, before: datetime
) -> int:
    """Forget which learners were seen in ``granularity`` windows starting before ``before``.

    ``activity_aggregates`` keeps its counts; only the per-window learner sets go. Run
    it for windows older than the lateness events may have (e.g. minutes older than a
    day, hours older than a week). Returns the rows deleted.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {sorted(GRANULARITIES)}")
    status = await conn.execute(
        "DELETE FROM activity_window_learners WHERE granularity = $1 AND window_start < $2",
        granularity,
        before,
    )
    return int(status.split()[-1])
