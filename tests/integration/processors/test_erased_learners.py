"""The processors' runner drops every record of an erased learner (finding H1).

The attack: one attempt for an erased id, arriving after the erasure, recreated the
learner's views. Here the learner-state processor (skill_mastery, attempts, ability,
schedules and the Redis hot cache) gets a batch mixing an erased learner with others:
nothing is written for the erased one (no row in any of its tables, no cache key),
the others are applied as if the erased learner's records were not there, the dropped
records are counted under the ``erased`` outcome, and the offsets move past them (they
are never re-read). A tombstone written between two batches takes effect at the next.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.base import BatchRunner
from processors.learner_cache import learner_cache_key
from processors.learner_state import LearnerStateProcessor
from processors.offsets import SourceRecord
from tests.integration.processors.support import (
    DATASET,
    AttemptSpec,
    expected_mastery,
    read_attempts,
    stored_mastery,
)

PARTITIONS = 4
GROUP = "test.learner_state"


def as_consumed(settings: Settings, specs: Sequence[AttemptSpec]) -> list[SourceRecord]:
    topic = settings.topic(Stream.ATTEMPTS)
    next_offset = dict.fromkeys(range(PARTITIONS), 0)
    records = []
    for spec in specs:
        partition = zlib.crc32(spec.key()) % PARTITIONS
        records.append(
            SourceRecord(topic, partition, next_offset[partition], spec.key(), spec.value())
        )
        next_offset[partition] += 1
    return records


def erased_count() -> float:
    value = REGISTRY.get_sample_value(
        "learnstream_processor_events_total", {"processor": "learner_state", "outcome": "erased"}
    )
    return value or 0.0


async def tombstone(pool: asyncpg.Pool, tenant_id: str, user_id: str) -> None:
    await pool.execute(
        "INSERT INTO privacy_tombstones (tenant_id, subject_id, erased_at, requested_by) "
        "VALUES ($1, $2, $3, 'test')",
        tenant_id,
        user_id,
        datetime.now(UTC),
    )


async def rows_of(pool: asyncpg.Pool, user_id: str) -> dict[str, int]:
    return {
        table: int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", user_id))
        for table in ("skill_mastery", "attempts", "learner_ability", "review_schedule")
    }


async def test_processors_drop_events_of_erased_learners(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=4, limit=160)
    learners = sorted({s.user_id for s in specs})
    erased, later = learners[0], learners[1]
    tenant = specs[0].tenant_id
    await tombstone(db_pool, tenant, erased)
    records = as_consumed(topics, specs)
    first, second = records[:80], records[80:]
    runner = BatchRunner(LearnerStateProcessor(topics), topics, consumer_group=GROUP)
    redis = Redis.from_url(topics.redis_url)
    dropped_before = erased_count()
    try:
        outcome = await runner.process(first)
        assert outcome.erased == sum(1 for s in specs[:80] if s.user_id == erased)
        assert outcome.applied == 80 - outcome.erased
        # Erased between two batches: the next batch drops the learner too.
        await tombstone(db_pool, tenant, later)
        again = await runner.process(second)
        gone = {erased, later}
        assert again.erased == sum(1 for s in specs[80:] if s.user_id in gone)
        # Never cached (``later``'s key from the first batch is erasure's to delete).
        assert await redis.exists(learner_cache_key(topics, tenant, erased)) == 0
        kept_user = learners[2]
        assert await redis.exists(learner_cache_key(topics, tenant, kept_user)) == 1
    finally:
        await runner.close()
        await redis.aclose()
    assert erased_count() - dropped_before == outcome.erased + again.erased

    assert await rows_of(db_pool, erased) == dict.fromkeys(
        ("skill_mastery", "attempts", "learner_ability", "review_schedule"), 0
    )
    assert await db_pool.fetchval("SELECT count(*) FROM attempts WHERE user_id = $1", later) == (
        sum(1 for s in specs[:80] if s.user_id == later)
    )
    kept = [s for s in specs[:80] if s.user_id != erased]
    kept += [s for s in specs[80:] if s.user_id not in {erased, later}]
    assert await stored_mastery(db_pool) == expected_mastery(kept)
    # Offsets moved past the dropped records: nothing of them is ever applied later.
    offsets = await db_pool.fetch(
        "SELECT partition, next_offset FROM processor_offsets WHERE consumer_group = $1", GROUP
    )
    assert {r["partition"]: r["next_offset"] for r in offsets} == {
        r.partition: r.offset + 1 for r in records
    }
