"""The shard routing agrees with where the real producer puts a learner's events.

learnstream.sharding routes a learner's view rows by the Kafka partition of its key;
that gives one writer per learner only if the partition it computes is the one
ingest's producer (librdkafka, ``murmur2_random``) actually writes the events to. This
publishes records for many learners through :class:`learnstream.kafka.AsyncProducer`
to the test broker and compares the partitions the broker acknowledged.
"""

from __future__ import annotations

from learnstream.kafka import AsyncProducer, OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.sharding import ShardMap, partition_for


async def test_learner_partition_is_the_one_the_producer_writes_to(topics: Settings) -> None:
    settings = topics
    learners = [(f"tenant-{i % 3}", f"learner-{i}") for i in range(200)]
    producer = AsyncProducer(settings)
    try:
        deliveries = await producer.publish(
            [
                OutgoingRecord(settings.topic(Stream.ATTEMPTS), learner_key(t, u), b"{}")
                for t, u in learners
            ]
        )
    finally:
        producer.close(5.0)
    assert all(d.ok for d in deliveries), [d.error for d in deliveries if not d.ok][:3]
    written = [d.partition for d in deliveries]
    assert written == [partition_for(t, u, settings.topic_partitions) for t, u in learners]
    assert len(set(written)) == settings.topic_partitions  # the keys did spread

    # So the shard of a learner is the shard of the partition its events are on.
    shards = ShardMap(
        urls=("postgresql://a/x", "postgresql://b/x"), partitions=settings.topic_partitions
    )
    for (tenant, user), partition in zip(learners, written, strict=True):
        assert shards.shard_for(tenant, user) == shards.shard_of_partition(partition)
