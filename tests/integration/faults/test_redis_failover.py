"""Redis Sentinel: the primary dies under ingest load, a replica takes over, and ingest
resumes with nothing accepted lost and nothing published twice.

A primary, a replica and three sentinels run on loopback (tests/integration/faults/
sentinel_support.py). Ingest finds the primary through the sentinels
(``redis_sentinels``). Four clients post; the primary is SIGKILLed mid-stream. Until
the sentinels promote the replica, claims fail and ingest answers 503 with
Retry-After; afterwards the clients' retries go through. Reading the topic back:
every event answered ACCEPTED is there exactly once, and no event is there twice.

What makes that hold, and what would not: a claim or done marker the old primary
acknowledged but had not replicated is lost in the failover. Ingest's dedup writes
WAIT for one replica (``redis_wait_replicas``) in the same round trip, so a claim it
acted on survives the kill; the second test shows the WAIT failing when the replica
cannot acknowledge, and ingest counting it in ``learnstream_ingest_dedup_unreplicated``
(after a failover with no replica left, that is the window that remains open:
docs/operations.md, "Redis Sentinel"). The clients here never resend an event that
was answered ACCEPTED, so a lost done marker could not show; what the test asserts is
what the design promises across a failover of the primary alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.app import create_app
from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.learner_cache import LearnerCache, learner_cache_key
from tests.integration.faults.sentinel_support import SERVICE, SentinelGroup, sentinel_group
from tests.integration.faults.support import (
    SendLog,
    assert_unavailable_names,
    send_until_done,
    wait_until,
)
from tests.integration.ingest.support import (
    attempt,
    auth,
    metrics_url,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

SENDERS = 4
BATCHES = 12
BATCH = 20


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path) as started:
        yield started


def sentinel_settings(settings: Settings, group: SentinelGroup) -> Settings:
    """``settings`` reaching Redis through ``group``'s sentinels (redis_url: database 0)."""
    return settings.model_copy(
        update={
            # The host in redis_url is ignored with sentinels; a dead port proves it.
            "redis_url": "redis://127.0.0.1:1/0",
            "redis_sentinels": group.sentinel_setting,
            "redis_sentinel_service": SERVICE,
            "ingest_delivery_timeout_ms": 1000,
            "ingest_retry_after_s": 1,
        }
    )


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample (or the sum of a labelled one's samples)."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    ]
    return sum(values)


async def test_primary_killed_under_load_ingest_resumes_every_accepted_event_exactly_once(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, group: SentinelGroup
) -> None:
    settings = sentinel_settings(topics, group)
    shards = [
        [[attempt(f"learner-{s}-{b % 4}") for _ in range(BATCH)] for b in range(BATCHES)]
        for s in range(SENDERS)
    ]
    sent = [e.attempt.envelope.event_id for shard in shards for b in shard for e in b]
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
    log = SendLog()
    async with running_ingest(settings) as client:
        deadline = time.monotonic() + 90
        senders = [
            asyncio.create_task(send_until_done(client, headers, shard, log, deadline=deadline))
            for shard in shards
        ]
        await wait_until(lambda: len(log.accepted) >= 80, timeout_s=30, what="80 accepted")
        group.primary.kill()
        accepted_at_kill = len(log.accepted)
        await asyncio.to_thread(group.wait_for_failover, timeout_s=30)
        await asyncio.gather(*senders)
        after = (await client.get(metrics_url(settings))).text
        ready = await client.get("/readyz")

    assert accepted_at_kill < len(sent), "the kill must hit while events are still pending"
    assert log.unavailable, "no request was refused while the primary was down"
    for response in log.unavailable:
        assert_unavailable_names(response, "redis", settings.ingest_retry_after_s)
    assert ready.status_code == 200, ready.text  # ingest is ready again on the new primary
    assert group.primary_port() == group.replica.port
    assert metric(after, "learnstream_ingest_dedup_unavailable") == 0.0
    # Every claim and done marker was acknowledged by the replica until the kill; after
    # it the promoted replica has no replica of its own, so later writes are counted.
    assert metric(after, "learnstream_ingest_dedup_unreplicated_total") > 0

    records = await asyncio.to_thread(
        read_topics, topics, [Stream.ATTEMPTS], expected=len(sent), settle_s=2.0
    )
    copies = Counter(r.headers["learnstream.event_id"].decode() for r in records)
    assert set(copies) == set(sent), "events missing from (or foreign to) the topic"
    repeated = {event_id: n for event_id, n in copies.items() if n > 1}
    assert not repeated, f"{len(repeated)} events published more than once"
    assert max(Counter(log.accepted).values()) == 1
    assert set(log.accepted) | set(log.duplicates) == set(sent)


async def test_dedup_writes_wait_for_a_replica_and_count_when_none_answers(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, group: SentinelGroup
) -> None:
    settings = sentinel_settings(topics, group).model_copy(update={"redis_wait_timeout_ms": 200})
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}

    async with running_ingest(settings) as client:
        replicated = await client.post(
            "/v1/events", content=protobuf_body([attempt() for _ in range(5)]), headers=headers
        )
        assert parse_response(replicated).accepted == 5
        before = metric(
            (await client.get(metrics_url(settings))).text,
            "learnstream_ingest_dedup_unreplicated_total",
        )
        group.replica.pause()  # connected, but acknowledges nothing
        try:
            started = time.perf_counter()
            unconfirmed = await client.post(
                "/v1/events", content=protobuf_body([attempt() for _ in range(3)]), headers=headers
            )
            seconds = time.perf_counter() - started
        finally:
            group.replica.resume()
        after = (await client.get(metrics_url(settings))).text

    assert before == 0.0, "writes the replica acknowledged were counted as unreplicated"
    # Not refused: the primary has the events' claims; only a failover now could lose them.
    assert parse_response(unconfirmed).accepted == 3
    assert metric(after, 'learnstream_ingest_dedup_unreplicated_total{step="claim"}') == 3
    assert metric(after, 'learnstream_ingest_dedup_unreplicated_total{step="done"}') == 3
    assert seconds >= 2 * 0.2, "claim and done marker each waited the WAIT timeout"

    # The keys are on the replica once it runs again (replication caught up).
    with group.replica.client() as replica:
        keys = list(replica.scan_iter(match=f"{settings.redis_namespace}:ingest:*"))
    assert len(keys) == 8


async def test_read_api_and_learner_cache_follow_the_failover(
    migrated_database: Settings, settings: Settings, group: SentinelGroup
) -> None:
    """The other Redis users build their clients with the same helper: the read API's
    readiness and the processors' learner cache reach the primary through the
    sentinels, and the promoted replica after the primary is killed."""
    own = sentinel_settings(settings, group).model_copy(
        update={"database_url": migrated_database.database_url}
    )
    app = create_app(own)
    cache = LearnerCache(own)
    key = learner_cache_key(own, "school-1", "learner-1")
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
        ):
            assert (await api.get("/readyz")).status_code == 200
            with group.primary.client() as primary:
                primary.hset(key, "ability", '{"ability": 0.5, "version": 1}')
                primary.execute_command("WAIT", 1, 1000)  # on the replica before the kill
            assert (await cache.read("school-1", "learner-1"))["ability"]["ability"] == 0.5

            group.primary.kill()
            await asyncio.to_thread(group.wait_for_failover, timeout_s=30)
            deadline = time.monotonic() + 10
            while (await api.get("/readyz")).status_code != 200:  # pooled connections drop
                assert time.monotonic() < deadline, "the read API never reached the new primary"
                await asyncio.sleep(0.2)
            cached: dict[str, dict[str, object]] = {}
            for _ in range(3):  # its pooled connection to the dead primary fails once
                try:
                    cached = await cache.read("school-1", "learner-1")
                    break
                except RedisConnectionError:
                    await asyncio.sleep(0.2)
            assert cached["ability"]["version"] == 1  # read from the promoted replica
    finally:
        await cache.close()
