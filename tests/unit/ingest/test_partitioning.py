"""Record keys and the partitioner: one learner maps to one partition whatever the producer.

The ingest producer (librdkafka) is configured with ``murmur2_random``, the Java
client's hash; Faust's aiokafka producer uses the same murmur2. These tests pin
the key format, the configuration, and that aiokafka's murmur2 equals the Java
client's on Apache Kafka's own test vectors. The integration test
``tests/integration/ingest/test_partitioning.py`` checks on a real broker that
librdkafka puts each key where aiokafka would.
"""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from learnstream.kafka import learner_key, producer_config
from learnstream.settings import Settings


def test_same_learner_same_key_and_different_learners_differ() -> None:
    assert learner_key("t1", "u1") == learner_key("t1", "u1") == b"t1:u1"
    assert learner_key("t1", "u1") != learner_key("t2", "u1")
    assert learner_key("t1", "u1") != learner_key("t1", "u2")


def test_the_producer_hashes_keys_like_the_java_client() -> None:
    assert producer_config(Settings())["partitioner"] == "murmur2_random"


# From Apache Kafka's UtilsTest.testMurmur2 (signed 32-bit results).
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2)
def test_aiokafka_murmur2_equals_the_java_client(key: bytes, java: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == java & 0xFFFFFFFF


def test_one_learner_one_partition_across_calls() -> None:
    partitions = list(range(8))
    key = learner_key("school-1", "learner-17")
    chosen = {DefaultPartitioner()(key, partitions, partitions) for _ in range(20)}
    assert len(chosen) == 1
