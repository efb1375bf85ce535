"""Records published through ingest land where Faust/aiokafka and the Java client put them.

ingest's librdkafka producer uses ``murmur2_random``; aiokafka's DefaultPartitioner
(what Faust processors use) and the Java client use murmur2 too. Here 40
learners' events are published through ingest and each record's partition is
compared with aiokafka's choice for its key; with librdkafka's default
(consistent_random, CRC32) about three in four would differ.
"""

from __future__ import annotations

from collections import defaultdict

import httpx
from aiokafka.partitioner import DefaultPartitioner

from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    parse_response,
    protobuf_body,
    read_topics,
)

LEARNERS = 40


async def test_each_learner_lands_on_the_partition_aiokafka_would_choose(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    batch = [attempt(f"learner-{i}") for i in range(LEARNERS) for _ in range(2)]
    answer = parse_response(
        await ingest.post(
            "/v1/events",
            content=protobuf_body(batch),
            headers={**auth(api_key), "Content-Type": "application/x-protobuf"},
        )
    )
    assert answer.accepted == len(batch)

    records = read_topics(topics, [Stream.ATTEMPTS], expected=len(batch))
    assert len(records) == len(batch)
    partitions = list(range(topics.topic_partitions))
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
        partitions_of_key[record.key].add(record.partition)
    assert len(partitions_of_key) == LEARNERS
    assert all(len(found) == 1 for found in partitions_of_key.values())
    assert len({p for found in partitions_of_key.values() for p in found}) > 1  # spread out
