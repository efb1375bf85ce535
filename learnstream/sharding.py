"""Which PostgreSQL instance holds a learner's view rows, once one instance is not enough.

A learner's rows go where the learner's Kafka partition goes:

    key = "tenant_id:user_id"                    (learnstream.kafka.learner_key)
    partition = murmur2(key) & 0x7fffffff % P    (Kafka's default partitioner; P = partitions)
    shard = partition % N                        (N = number of database URLs)

The first step is the one every Kafka client of Learnstream already applies when it
produces (librdkafka's ``murmur2_random``, aiokafka's and the Java client's default), so
all of one learner's events sit on one partition, which one processor worker consumes:
routing by partition gives each learner's rows exactly one writer, and lets a worker
commit a partition's view rows and its offsets (``processor_offsets``) in ONE
transaction on that partition's shard, so the exactly-once effect of processors.base
holds shard by shard. Whole partitions move when shards are added (N -> 2N moves half
of them, each shard splitting in two), never single learners.

Routing depends on P: the topics' partition count must not change while the shard map
is in use (Kafka would move keys between partitions anyway, breaking per-learner order).

With ``database_shard_urls`` empty (the default, and every local run) there is one shard,
``database_url``. docs/deployment.md, "Several PostgreSQL instances", explains the move.
"""

from __future__ import annotations

from dataclasses import dataclass

from learnstream.exceptions import ConfigurationError
from learnstream.settings import Settings

_MURMUR2_SEED = 0x9747B28C
_MURMUR2_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit integer (0 .. 2**32-1).

    The same function as ``org.apache.kafka.common.utils.Utils.murmur2`` (whose signed
    result is this one minus 2**32 when >= 2**31), librdkafka's ``murmur2`` partitioner
    and aiokafka's ``partitioner.murmur2``.
    """
    length = len(data)
    h = (_MURMUR2_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _MURMUR2_M) & _MASK32
        k ^= k >> 24
        k = (k * _MURMUR2_M) & _MASK32
        h = (h * _MURMUR2_M) & _MASK32
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 15
    return h


def partition_for(tenant_id: str, user_id: str, partitions: int) -> int:
    """The Kafka partition (0 .. partitions-1) of a learner's events, as producers pick it."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    key = f"{tenant_id}:{user_id}".encode()
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class ShardMap:
    """The learner-view databases and the partition count the routing is based on.

    ``urls[i]`` is shard i's PostgreSQL URL; ``partitions`` is the partition count of
    the learner topics (``topic_partitions``).
    """

    urls: tuple[str, ...]
    partitions: int

    def __post_init__(self) -> None:
        if not self.urls:
            raise ConfigurationError("a shard map needs at least one database URL")
        if len(set(self.urls)) != len(self.urls):
            raise ConfigurationError("LEARNSTREAM_DATABASE_SHARD_URLS lists a database twice")
        if self.partitions < len(self.urls):
            # A shard without a partition would never be written; one with several
            # learners' partitions is the point.
            raise ConfigurationError(
                f"{len(self.urls)} database shards need at least as many topic partitions "
                f"(LEARNSTREAM_TOPIC_PARTITIONS is {self.partitions})"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardMap:
        """The shards of ``database_shard_urls``, or the single ``database_url``."""
        listed = tuple(
            url.strip() for url in settings.database_shard_urls.split(",") if url.strip()
        )
        return cls(urls=listed or (settings.database_url,), partitions=settings.topic_partitions)

    @property
    def count(self) -> int:
        """Number of shards (>= 1)."""
        return len(self.urls)

    def shard_of_partition(self, partition: int) -> int:
        """The shard (0 .. count-1) that holds the rows of ``partition``'s learners."""
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} outside 0..{self.partitions - 1}")
        return partition % len(self.urls)

    def shard_for(self, tenant_id: str, user_id: str) -> int:
        """The shard (0 .. count-1) of one learner."""
        return self.shard_of_partition(partition_for(tenant_id, user_id, self.partitions))

    def url_for(self, tenant_id: str, user_id: str) -> str:
        """The database URL holding one learner's view rows."""
        return self.urls[self.shard_for(tenant_id, user_id)]

    def partitions_of(self, shard: int) -> list[int]:
        """The partitions whose learners live on ``shard``, ascending."""
        return [p for p in range(self.partitions) if p % len(self.urls) == shard]
