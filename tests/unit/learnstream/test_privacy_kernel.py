"""The erased-learner kernel: record keys to learners, lock buckets, the lookup cache,
the Redis key builder, and the topics' explicit configuration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from learnstream import privacy, redis_keys
from learnstream.kafka import Stream, config_mismatches, topic_config
from learnstream.settings import Settings


class FakeTombstones:
    """Answers the tombstone query from a set and counts the queries (pure logic only)."""

    def __init__(self, erased: set[tuple[str, str]]) -> None:
        self.erased = erased
        self.queries = 0

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        tenants, subjects = args
        self.queries += 1
        return [
            {"tenant_id": t, "subject_id": s}
            for t, s in zip(tenants, subjects, strict=True)
            if (t, s) in self.erased
        ]

    # The rest of learnstream.db.Queryable: the tombstone lookup never uses it.
    async def fetchrow(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        raise NotImplementedError

    async def execute(self, query: str, *args: Any) -> str:
        raise NotImplementedError

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError


def test_learner_of_key_splits_at_the_first_colon_only() -> None:
    assert privacy.learner_of_key(b"acme:u:globex:7") == ("acme", "u:globex:7")
    assert privacy.learner_of_key(b"no-colon") is None
    assert privacy.learner_of_key(None) is None
    assert privacy.learner_of_key(b"acme\x00:x") is None  # cannot have a tombstone


def test_lock_buckets_are_stable_and_in_range() -> None:
    buckets = {privacy.lock_bucket("acme", f"learner-{i}") for i in range(1000)}
    assert buckets <= set(range(privacy.LOCK_BUCKETS))
    assert len(buckets) == privacy.LOCK_BUCKETS
    assert privacy.lock_bucket("acme", "7") == privacy.lock_bucket("acme", "7")
    assert privacy.lock_bucket("acme", "7") != privacy.lock_bucket("acme:7", "")


async def test_erased_learners_caches_erased_for_good_and_others_for_the_ttl() -> None:
    now = [0.0]
    conn = FakeTombstones({("acme", "gone")})
    cache = privacy.ErasedLearners(not_erased_ttl_s=5.0, clock=lambda: now[0])
    wanted = {("acme", "gone"), ("acme", "stays")}
    assert await cache.among(conn, wanted) == {("acme", "gone")}
    assert await cache.among(conn, wanted) == {("acme", "gone")}
    assert conn.queries == 1
    conn.erased.add(("acme", "stays"))  # erased meanwhile: seen once the TTL ran out
    now[0] = 5.5
    assert await cache.among(conn, wanted) == wanted
    assert conn.queries == 2
    assert await cache.among(conn, wanted) == wanted
    assert conn.queries == 2


async def test_erased_learners_without_ttl_asks_every_time_for_the_unknown() -> None:
    conn = FakeTombstones(set())
    cache = privacy.ErasedLearners(not_erased_ttl_s=0)
    for _ in range(3):
        assert await cache.among(conn, {("acme", "a"), ("acme", "b")}) == set()
    assert conn.queries == 3
    assert await cache.among(conn, set()) == set()
    assert conn.queries == 3


def test_redis_keys_escape_every_id_so_no_tenant_reaches_another() -> None:
    victim = redis_keys.redis_key("ns", redis_keys.PLACEMENT, "acme", "7")
    crafted = redis_keys.redis_key("ns", redis_keys.PLACEMENT, "globex", "u:acme:7")
    assert victim == "ns:placement:acme:7"
    assert crafted == "ns:placement:globex:u%3Aacme%3A7"
    assert not crafted.endswith(":acme:7")
    # Injective: different (tenant, id) pairs never give the same key.
    assert redis_keys.redis_key("ns", "k", "a:b", "c") != redis_keys.redis_key(
        "ns", "k", "a", "b:c"
    )
    assert redis_keys.component("50%*?[x]") == "50%25%2A%3F%5Bx%5D"
    uuid_text = "0b7c1f3e-2a4d-4e6f-8a9b-0c1d2e3f4a5b"
    assert redis_keys.component(uuid_text) == uuid_text  # ordinary ids keep their keys
    assert redis_keys.learner_data_keys("ns", "acme", "7") == (
        "ns:learner:acme:7",
        "ns:placement:acme:7",
    )


def test_every_topic_has_explicit_retention_and_erasures_are_compacted() -> None:
    settings = Settings(topic_retention_ms=3_600_000)
    assert topic_config(settings, Stream.ATTEMPTS) == {
        "cleanup.policy": "delete",
        "retention.ms": "3600000",
    }
    assert topic_config(settings, Stream.PRIVACY_ERASURES)["cleanup.policy"] == "compact"
    assert Settings().topic_retention_ms == 7 * 24 * 3600 * 1000
    described = {
        settings.topic(Stream.ATTEMPTS): {"retention.ms": "-1", "cleanup.policy": "delete"},
        settings.topic(Stream.PRIVACY_ERASURES): {},  # a broker that reports nothing
    }
    assert config_mismatches(settings, [Stream.ATTEMPTS, Stream.PRIVACY_ERASURES], described) == {
        settings.topic(Stream.ATTEMPTS): {"retention.ms": ("3600000", "-1")}
    }
