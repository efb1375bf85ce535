"""``infra.rebuild_view`` rebuilds from the lake and then the topic tail, and an erased
learner does not come back (finding H1).

The attack: rebuilding a view replayed the topics and brought an erased learner back.
Here the learner-state view is built from real answers (the lake sink writes the lake
from the same records), one learner is erased, and the lake is left holding them (as
if erasure had not reached it). The rebuild empties the view, replays the lake through
the processor's own runner and then the topic tail (every record again, as restarted
workers read it): the erased learner is skipped in both, every other learner's
mastery equals a plain BKT replay of all their answers, and the rows the lake replay
applied are skipped on the topic (stored offsets). The copies are built in the rebuild's
shadow schema and swapped into place. The default lake selection only
takes what the topic no longer holds.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from api.services import privacy
from infra import rebuild_view, shadow_tables
from learnstream import db, lake
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.base import BatchOutcome, BatchRunner, Processor
from processors.events import decode_attempt
from processors.lake_sink import LakeSinkProcessor
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


@pytest.fixture
def own(topics: Settings, tmp_path: Path) -> Settings:
    return topics.model_copy(update={"data_dir": tmp_path / "data"})


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


async def apply(
    settings: Settings, processor: Processor[Any], records: list[SourceRecord], group: str
) -> BatchOutcome:
    runner: BatchRunner[Any] = BatchRunner(processor, settings, consumer_group=group)
    try:
        return await runner.process(records)
    finally:
        await runner.close()


async def test_rebuild_view_does_not_resurrect_erased_learner(
    own: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=4, limit=200)
    tenant = specs[0].tenant_id
    erased = sorted({s.user_id for s in specs})[0]
    records = as_consumed(own, specs)
    # The lake holds the first 120 records; the topic holds them all.
    await apply(own, LakeSinkProcessor(own), records[:120], "test.lake_sink")
    await apply(own, LearnerStateProcessor(own), records, GROUP)
    assert await db_pool.fetchval("SELECT count(*) FROM attempts WHERE user_id = $1", erased) > 0

    elsewhere = own.model_copy(update={"data_dir": tmp_path / "unreachable"})
    redis = Redis.from_url(own.redis_url)
    try:
        await privacy.erase_learner(
            db_pool,
            redis,
            elsewhere,  # the lake is not rewritten: the rebuild must skip the learner itself
            tenant_id=tenant,
            subject_id=erased,
            requested_by=("client_app", "key-1"),
            now=datetime.now(UTC),
        )
    finally:
        await redis.aclose()
    root = lake.default_root(own)
    assert erased in lake.read_attempts(root, columns=["user_id"])["user_id"].to_pylist()

    plan = rebuild_view.RebuildPlan(
        "learner_state",
        GROUP,
        rebuild_view.LEARNER_STATE_TABLES,
        (own.topic(Stream.ATTEMPTS),),
        (),
    )
    owner = await db.connect(own, role="owner")
    runner = rebuild_view.shadow_runner(own, plan)
    copies = await db.create_pool(shadow_tables.shadow_settings(own, plan.schema), max_size=1)
    try:
        await shadow_tables.create_shadow(
            owner, plan.schema, plan.tables, own.database_service_role
        )
        assert await copies.fetchval("SELECT count(*) FROM skill_mastery") == 0
        replayed = await rebuild_view.replay_lake(own, plan, "all", runner)
        lake_specs = [s for s in specs[:120] if s.user_id != erased]
        assert replayed == len(lake_specs)
        assert await stored_mastery(copies) == expected_mastery(lake_specs)

        # The topic tail, read from offset 0 as the rebuild reads it.
        tail = await runner.process(records)
        # What the lake replay applied is skipped; the rest of the erased learner is dropped.
        assert tail.applied == sum(1 for s in specs[120:] if s.user_id != erased)
        assert tail.erased + tail.redelivered + tail.applied == len(records)
        assert tail.erased >= sum(1 for s in specs[120:] if s.user_id == erased)
        async with owner.transaction():
            await shadow_tables.swap(owner, plan.processor, plan.tables, own.database_service_role)
            await rebuild_view.move_offsets(owner, plan)
    finally:
        await copies.close()
        await runner.close()
        await owner.close()
        await shadow_tables.drop_schemas(
            own, plan.schema, shadow_tables.retired_schema(plan.processor)
        )

    kept = [s for s in specs if s.user_id != erased]
    assert await stored_mastery(db_pool) == expected_mastery(kept)
    for table in rebuild_view.LEARNER_STATE_TABLES:
        count = await db_pool.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", erased)
        assert count == 0, table


async def test_rebuild_replays_from_the_lake_only_what_the_topic_no_longer_holds(
    own: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=3, limit=60)
    records = as_consumed(own, specs)
    await apply(own, LakeSinkProcessor(own), records, "test.lake_sink")
    root, topic = lake.default_root(own), own.topic(Stream.ATTEMPTS)
    everything = rebuild_view.lake_records(root, topic, below=None, erased={})
    # The same records, as the processors decode them (a lake row states the score).
    assert [(r.partition, r.offset, r.key, decode_attempt(r)) for r in everything] == sorted(
        ((r.partition, r.offset, r.key, decode_attempt(r)) for r in records),
        key=lambda t: (t[0], t[1]),
    )
    # Retention removed offsets below 5 of every partition: only those come from the lake.
    aged = rebuild_view.lake_records(root, topic, below=dict.fromkeys(range(4), 5), erased={})
    assert aged
    assert all(r.offset < 5 for r in aged)
    assert len(aged) == sum(1 for r in records if r.offset < 5)
    # A topic holding everything (nothing aged out) needs nothing from the lake.
    assert rebuild_view.lake_records(root, topic, below=dict.fromkeys(range(4), 0), erased={}) == []
