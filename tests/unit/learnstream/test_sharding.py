"""learnstream.sharding: a learner's shard is stable, follows its Kafka partition, and
spreads learners evenly over the shards."""

from __future__ import annotations

import collections
import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from learnstream.exceptions import ConfigurationError
from learnstream.settings import Settings
from learnstream.sharding import ShardMap, murmur2, partition_for

URLS = tuple(f"postgresql://learnstream@pg-{i}:5432/learnstream" for i in range(3))

# Kafka's own test vectors (clients UtilsTest.testMurmur2), signed Java ints.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_is_kafkas() -> None:
    for data, signed in JAVA_MURMUR2.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


def test_partition_is_the_one_faust_and_producers_pick() -> None:
    rng = random.Random(7)
    partitions = list(range(24))
    for _ in range(2_000):
        tenant, user = f"t{rng.randrange(50)}", f"u{rng.randrange(10**9)}"
        expected = DefaultPartitioner()(f"{tenant}:{user}".encode(), partitions, partitions)
        assert partition_for(tenant, user, 24) == expected


def test_shard_routing_is_stable_and_balanced() -> None:
    shards = ShardMap(urls=URLS, partitions=24)
    learners = [(f"school-{i % 40}", f"learner-{i}") for i in range(30_000)]
    first = [shards.shard_for(t, u) for t, u in learners]

    # Stable: the same answer from a fresh map (no per-process hash seed, no state) ...
    again = ShardMap(urls=URLS, partitions=24)
    assert [again.shard_for(t, u) for t, u in learners] == first
    # ... and pinned values (Kafka's murmur2 partitions, then partition % 3), so a change
    # of the function, which would strand every learner's rows, cannot pass unnoticed.
    assert [partition_for("demo", f"u{i}", 24) for i in range(8)] == [8, 10, 8, 14, 5, 14, 18, 23]
    assert [shards.shard_for("demo", f"u{i}") for i in range(8)] == [2, 1, 2, 2, 2, 2, 0, 2]

    # Balanced: each of 3 shards gets a third of 30,000 learners within 3 %.
    counts = collections.Counter(first)
    assert sorted(counts) == [0, 1, 2]
    for shard, count in counts.items():
        assert abs(count - 10_000) < 300, (shard, count)

    # One writer per learner: a shard is a set of whole partitions, and a learner's
    # shard is its partition's.
    owners = {p: shards.shard_of_partition(p) for p in range(24)}
    assert sorted(p for s in range(3) for p in shards.partitions_of(s)) == list(range(24))
    for t, u in learners[:2_000]:
        assert shards.shard_for(t, u) == owners[partition_for(t, u, 24)]
    assert shards.url_for("demo", "u0") == URLS[shards.shard_for("demo", "u0")]


def test_doubling_the_shards_splits_each_in_two() -> None:
    three, six = ShardMap(URLS, 24), ShardMap((*URLS, "a", "b", "c"), 24)
    for partition in range(24):
        # Partitions of old shard s go to s or s+3 only: each old shard splits in two.
        assert six.shard_of_partition(partition) % 3 == three.shard_of_partition(partition)


def test_one_shard_is_database_url_by_default() -> None:
    settings = Settings(database_url="postgresql://x@db:5432/ls", topic_partitions=8)
    shards = ShardMap.from_settings(settings)
    assert shards.urls == ("postgresql://x@db:5432/ls",)
    assert shards.url_for("t", "u") == "postgresql://x@db:5432/ls"

    listed = Settings(
        database_shard_urls=" postgresql://a/ls, postgresql://b/ls ", topic_partitions=8
    )
    assert ShardMap.from_settings(listed).urls == ("postgresql://a/ls", "postgresql://b/ls")


def test_shard_map_refuses_what_cannot_route() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        ShardMap(urls=(URLS[0], URLS[0]), partitions=24)
    with pytest.raises(ConfigurationError, match="partitions"):
        ShardMap(urls=URLS, partitions=2)
    with pytest.raises(ValueError, match="partition 24"):
        ShardMap(urls=URLS, partitions=24).shard_of_partition(24)
