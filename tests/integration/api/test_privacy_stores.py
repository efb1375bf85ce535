"""Erasure and export reach every store: the lake, Redis and the privacy.erasures topic.

Findings H1 and L8 of the attack review. Erasure is called through the service the
route calls (``api.services.privacy``), against the real PostgreSQL, Redis, broker and
a lake of this test's own. Proves: every lake file holding the learner is rewritten
without them (atomically, other learners' and other tenants' rows untouched, a file
left empty removed); the erasure is published on the compacted ``privacy.erasures``
topic, whose configuration the broker reports as compacted; the export lists the lake
rows (with their file) and the Redis keys (with their values); and erasing a learner
never deletes another tenant's key, even one whose user id spells ``<tenant>:<id>``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pyarrow.parquet as pq
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from redis.asyncio import Redis

from api.services import privacy
from api.services.events import EventPublisher
from api.services.principals import Principal, PrincipalKind
from learnstream import lake, redis_keys
from learnstream.kafka import Stream, consumer_config, describe_topic_config, ensure_topics
from learnstream.settings import Settings
from processors.learner_cache import learner_cache_key

TOPIC = "learnstream.attempts.v1"
DAY = datetime(2024, 5, 6, 9, tzinfo=UTC)


@pytest.fixture
def own(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with a lake of this test's own."""
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


@pytest.fixture
async def redis(own: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(own.redis_url)
    yield client
    async for key in client.scan_iter(match=f"{own.redis_namespace}:*"):
        await client.delete(key)
    await client.aclose()


def write_lake(root: Path, rows: list[tuple[str, str, int]], partition: int = 0) -> list[Path]:
    """(tenant, user, day offset) rows as lake attempts of one Kafka partition."""
    attempts = [
        lake.LakeAttempt(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            user_id=user,
            occurred_at=DAY + timedelta(days=day, minutes=i),
            item_id="item-1",
            skill_ids=("fractions",),
            correct=i % 2 == 0,
            kafka_partition=partition,
            kafka_offset=i,
        )
        for i, (tenant, user, day) in enumerate(rows)
    ]
    return lake.write_attempts(
        root, lake.attempts_table(attempts), topic=TOPIC, partition=partition
    )


def lake_users(root: Path) -> list[tuple[str, str]]:
    """(tenant, user) of every lake row, sorted."""
    table = lake.read_attempts(root, columns=["tenant_id", "user_id"])
    return sorted(zip(table["tenant_id"].to_pylist(), table["user_id"].to_pylist(), strict=True))


async def erase(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    tenant_id: str,
    subject_id: str,
    publisher: EventPublisher | None = None,
) -> privacy.ErasureReport:
    return await privacy.erase_learner(
        pool,
        redis,
        settings,
        tenant_id=tenant_id,
        subject_id=subject_id,
        requested_by=("client_app", "key-1"),
        now=datetime.now(UTC),
        publisher=publisher,
    )


async def add_mastery(pool: asyncpg.Pool, tenant_id: str, user_id: str) -> None:
    await pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at)
        VALUES ($1, $2, 'fractions', 0.6, 3, 2, $3, now())
        """,
        tenant_id,
        user_id,
        uuid.uuid4(),
    )


async def test_erasure_rewrites_lake_files(
    own: Settings, db_pool: asyncpg.Pool, redis: Redis, tenants: tuple[str, str]
) -> None:
    root = lake.default_root(own)
    mixed = write_lake(root, [("acme", "ext-42", 0), ("acme", "ext-7", 0), ("acme", "ext-42", 0)])
    only_erased = write_lake(root, [("acme", "ext-42", 1)], partition=1)
    other_tenant = write_lake(root, [("globex", "ext-42", 0)], partition=2)
    inode_before = os.stat(mixed[0]).st_ino
    await add_mastery(db_pool, "acme", "ext-42")

    report = await erase(db_pool, redis, own, "acme", "ext-42")

    assert (report.lake_rows_deleted, report.lake_files_rewritten) == (3, 2)
    assert lake_users(root) == [("acme", "ext-7"), ("globex", "ext-42")]
    # Rewritten by a rename over the old name (a new file), and whole.
    assert os.stat(mixed[0]).st_ino != inode_before
    assert pq.read_table(mixed[0])["user_id"].to_pylist() == ["ext-7"]
    assert not only_erased[0].exists()
    assert pq.read_table(other_tenant[0])["user_id"].to_pylist() == ["ext-42"]
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    # Nothing left to do: a second pass changes nothing.
    assert lake.erase_learners(root, {"acme": ["ext-42"]}).rows_removed == 0


async def test_erasure_is_published_on_privacy_erasures_topic(
    own: Settings, db_pool: asyncpg.Pool, redis: Redis, tenants: tuple[str, str]
) -> None:
    ensure_topics(own)
    topic = own.topic(Stream.PRIVACY_ERASURES)
    # Tansu does not compact, but it reports the configuration the topic was created with.
    assert describe_topic_config(own, [topic])[topic].get("cleanup.policy") == "compact"
    await add_mastery(db_pool, "acme", "ext-42")
    publisher = EventPublisher(own)
    try:
        report = await erase(db_pool, redis, own, "acme", "ext-42", publisher)
    finally:
        publisher.close()
    assert report.published

    consumer = Consumer(consumer_config(own, f"privacy-test-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        message = None
        for _ in range(100):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                break
        assert message is not None
        assert message.error() is None
        assert message.key() == b"acme:ext-42"
        value = json.loads(message.value() or b"")
        assert (value["tenant_id"], value["subject_id"]) == ("acme", "ext-42")
        assert datetime.fromisoformat(value["erased_at"]) == report.erased_at
    finally:
        consumer.close()


async def test_export_includes_lake_and_redis_copies(
    own: Settings, db_pool: asyncpg.Pool, redis: Redis, tenants: tuple[str, str]
) -> None:
    root = lake.default_root(own)
    (file,) = write_lake(root, [("acme", "ext-42", 0), ("acme", "ext-7", 0)])
    write_lake(root, [("globex", "ext-42", 0)], partition=1)
    await add_mastery(db_pool, "acme", "ext-42")
    cache = learner_cache_key(own, "acme", "ext-42")
    await redis.hset(cache, "mastery:fractions", json.dumps({"p_mastery": 0.6, "version": 1}))
    placement = redis_keys.redis_key(own.redis_namespace, redis_keys.PLACEMENT, "acme", "ext-42")
    await redis.set(placement, json.dumps({"answered": 2}))
    await redis.set(learner_cache_key(own, "globex", "ext-42"), b"not theirs")

    principal = Principal("acme", "key-1", PrincipalKind.CLIENT_APP)
    exported = await privacy.export_learner(
        db_pool, principal, subject_id="ext-42", now=datetime.now(UTC), redis=redis, settings=own
    )

    assert [r["skill_id"] for r in exported["tables"]["skill_mastery"]] == ["fractions"]
    assert [(c["source"], c["file"]) for c in exported["lake"]] == [
        ("lake", str(file.relative_to(root)))
    ]
    assert exported["lake"][0]["row"]["user_id"] == "ext-42"
    assert {c["key"]: (c["type"], c["value"]) for c in exported["redis"]} == {
        cache: ("hash", {"mastery:fractions": {"p_mastery": 0.6, "version": 1}}),
        placement: ("string", {"answered": 2}),
    }
    json.dumps(exported)  # JSON-ready as the route answers it


async def test_erasure_redis_keys_do_not_cross_tenants(
    own: Settings, db_pool: asyncpg.Pool, redis: Redis, tenants: tuple[str, str]
) -> None:
    # globex's learner id spells "<acme>:<7>": a glob "*acme:7" over keys matched it.
    victim, bystander = ("acme", "7"), ("globex", "u:acme:7")
    keys = {
        who: [
            learner_cache_key(own, *who),
            redis_keys.redis_key(own.redis_namespace, redis_keys.PLACEMENT, *who),
        ]
        for who in (victim, bystander)
    }
    for who, names in keys.items():
        await add_mastery(db_pool, *who)
        for name in names:
            await redis.set(name, b"x")
    assert not any(k.endswith(":acme:7") for k in keys[bystander])

    report = await erase(db_pool, redis, own, *victim)

    assert report.redis_keys_deleted == 2
    assert [await redis.exists(k) for k in keys[victim]] == [0, 0]
    assert [await redis.exists(k) for k in keys[bystander]] == [1, 1]
