"""processors.base.BatchRunner on the real PostgreSQL and broker, without Faust.

Records are handed to the runner as Faust would hand them (topic, partition,
offset, raw bytes), so these tests need no consumer group and run in seconds.

Proves: a redelivered batch (the crash case: Kafka's committed offset lags
PostgreSQL's) changes nothing, even through a new runner; a PostgreSQL outage
stops progress without moving offsets and the batch goes through once the
database is back, also after open connections were cut; an event that the
database rejects is dead-lettered alone while the rest of its batch is applied.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from prometheus_client import REGISTRY

from infra.services import free_port
from learnstream.kafka import DEADLETTER_ERROR_HEADER, DEADLETTER_ORIGIN_HEADER, Stream
from learnstream.settings import Settings
from processors.base import BatchRunner
from processors.events import Attempt
from processors.learner_state import LearnerStateProcessor
from processors.offsets import SourceRecord
from tests.integration.processors.support import (
    DATASET,
    T0,
    AttemptSpec,
    TcpProxy,
    consume_all,
    expected_mastery,
    read_attempts,
    stored_mastery,
    wait_for,
)

PARTITIONS = 4


def as_consumed(settings: Settings, specs: Sequence[AttemptSpec]) -> list[SourceRecord]:
    """The records a consumer would see: one partition per learner, offsets counting up."""
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


def new_runner(settings: Settings) -> BatchRunner[Attempt]:
    return BatchRunner(
        LearnerStateProcessor(settings),
        settings,
        consumer_group="test.learner_state",
        retry_max_s=0.2,
    )


def retries() -> float:
    value = REGISTRY.get_sample_value(
        "learnstream_processor_transient_retries_total", {"processor": "learner_state"}
    )
    return value or 0.0


async def test_redelivered_records_change_nothing(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=12, limit=600)
    records = as_consumed(topics, specs)
    runner = new_runner(topics)
    try:
        first = await runner.process(records[:300])
        overlapping = await runner.process(records[200:450])
    finally:
        await runner.close()
    assert (first.applied, first.redelivered) == (300, 0)
    assert (overlapping.applied, overlapping.redelivered) == (150, 100)
    assert await stored_mastery(db_pool) == expected_mastery(specs[:450])

    restarted = new_runner(topics)  # a new process: no memory of what was applied
    try:
        again = await restarted.process(records)
    finally:
        await restarted.close()
    assert (again.applied, again.redelivered) == (150, 450)
    assert await stored_mastery(db_pool) == expected_mastery(specs)
    offsets = await db_pool.fetch(
        "SELECT partition, next_offset FROM processor_offsets WHERE consumer_group = $1",
        "test.learner_state",
    )
    last = {r.partition: r.offset + 1 for r in records}
    assert {r["partition"]: r["next_offset"] for r in offsets} == last


async def test_database_outage_is_retried_until_it_returns(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=5, limit=200)
    records = as_consumed(topics, specs)
    proxy = TcpProxy("127.0.0.1", 5432, free_port())
    database = topics.database_url.rsplit("/", 1)[1]
    settings = topics.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"}
    )
    runner = new_runner(settings)
    retries_before = retries()
    try:
        # Down from the start: the batch waits, nothing is stored.
        batch = asyncio.create_task(runner.process(records[:100]))

        async def retried_three_times() -> bool:
            return retries() >= retries_before + 3

        await wait_for(retried_three_times, what="three retries", timeout_s=30)
        assert not batch.done()
        assert await db_pool.fetchval("SELECT count(*) FROM processor_offsets") == 0
        await proxy.start()
        outcome = await asyncio.wait_for(batch, timeout=30)
        assert outcome.applied == 100
        assert outcome.retries >= 3

        # Connections cut under an idle pool (a database restart), then back.
        await proxy.stop()
        await proxy.start()
        outcome = await asyncio.wait_for(runner.process(records[100:]), timeout=30)
        assert outcome.applied == 100
    finally:
        await runner.close()
        await proxy.stop()
    assert await stored_mastery(db_pool) == expected_mastery(specs)


async def test_event_rejected_by_the_database_is_deadlettered_alone(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    specs = read_attempts(shared_data / DATASET, students=4, limit=120)
    # Valid protobuf and a matching key, but PostgreSQL text cannot hold a NUL.
    rejected = AttemptSpec(
        event_id=str(uuid.uuid4()),
        tenant_id="tenant\x00a",
        user_id="student-0",
        skill_ids=("7",),
        correct=True,
        occurred_at=T0,
    )
    records = as_consumed(topics, [*specs[:60], rejected, *specs[60:]])
    runner = new_runner(topics)
    try:
        outcome = await runner.process(records)
    finally:
        await runner.close()
    assert (outcome.applied, outcome.deadlettered) == (len(specs), 1)
    assert await stored_mastery(db_pool) == expected_mastery(specs)

    (dead,) = consume_all(
        topics, topics.topic(Stream.DEADLETTER), until=lambda m: len(m) >= 1, timeout_s=20
    )
    headers = dict(dead.headers())
    assert dead.value() == rejected.value()
    assert headers[DEADLETTER_ORIGIN_HEADER].decode() == records[60].origin
    assert b"0x00" in headers[DEADLETTER_ERROR_HEADER]
