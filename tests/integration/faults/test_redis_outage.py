"""Redis becomes unreachable while clients are posting: ingest refuses with 503 naming Redis
(its documented behaviour: no acceptance without deduplication), says so in its
metrics, and once Redis returns the clients' retries put every event on the topic
exactly once.

Ingest reaches Redis through a loopback TCP proxy that the test cuts for 3 s while four
clients post; Redis itself keeps running. A claim that reached Redis just before the
cut stays "pending" until its TTL (delivery timeout + 20 s) and is answered
RETRY_LATER meanwhile, so the clients' deadline allows for it.

The ingest helper's test (tests/integration/ingest/test_refusals.py) covers Redis
absent from the start; this one cuts it under load and checks the recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis

from infra.services import free_port
from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream, ensure_topics
from learnstream.redis import redis_client
from learnstream.settings import Settings
from tests.integration.faults.support import (
    SendLog,
    assert_unavailable_names,
    proxied_broker,
    send_until_done,
    wait_until,
)
from tests.integration.ingest.support import (
    TENANT,
    attempt,
    auth,
    metrics_url,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)
from tests.integration.processors.support import TcpProxy

SENDERS = 4
BATCHES = 12
BATCH = 20
OUTAGE_S = 3.0


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_redis_cut_under_load_is_refused_then_every_event_exactly_once(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    redis = urlsplit(topics.redis_url)
    proxy = TcpProxy(redis.hostname or "127.0.0.1", redis.port or 6379, free_port())
    await proxy.start()
    settings = topics.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{proxy.port}{redis.path or '/0'}",
            "ingest_delivery_timeout_ms": 1000,
            "ingest_retry_after_s": 1,
        }
    )
    shards = [
        [[attempt(f"learner-{s}-{b % 4}") for _ in range(BATCH)] for b in range(BATCHES)]
        for s in range(SENDERS)
    ]
    sent = [e.attempt.envelope.event_id for shard in shards for b in shard for e in b]
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
    log = SendLog()
    try:
        async with running_ingest(settings) as client:
            deadline = time.monotonic() + 75
            senders = [
                asyncio.create_task(send_until_done(client, headers, shard, log, deadline=deadline))
                for shard in shards
            ]
            await wait_until(lambda: len(log.accepted) >= 80, timeout_s=30, what="80 accepted")
            await proxy.stop()
            accepted_at_cut = len(log.accepted)
            await asyncio.sleep(OUTAGE_S)
            during = (await client.get(metrics_url(settings))).text
            refused_during_outage = len(log.unavailable)
            await proxy.start()
            await asyncio.gather(*senders)
            after = (await client.get(metrics_url(settings))).text
    finally:
        await proxy.stop()

    assert accepted_at_cut < len(sent), "the outage must hit while events are still pending"
    assert refused_during_outage >= 1, "no request was refused while Redis was cut off"
    for response in log.unavailable:
        assert_unavailable_names(response, "redis", settings.ingest_retry_after_s)
    assert metric(during, "learnstream_ingest_dedup_unavailable") == 1.0
    assert metric(after, "learnstream_ingest_dedup_unavailable") == 0.0
    assert metric(after, "learnstream_ingest_dedup_refusals_total") >= 1.0

    records = await asyncio.to_thread(
        read_topics, topics, [Stream.ATTEMPTS], expected=len(sent), settle_s=2.0
    )
    copies = Counter(r.headers["learnstream.event_id"].decode() for r in records)
    assert set(copies) == set(sent), "events missing from (or foreign to) the topic"
    repeated = {event_id: n for event_id, n in copies.items() if n > 1}
    assert not repeated, f"{len(repeated)} events published more than once"
    assert max(Counter(log.accepted).values()) == 1
    assert set(log.accepted) | set(log.duplicates) == set(sent)


async def stored(client: Redis, keys: list[str]) -> list[bytes]:
    """The raw values of ``keys`` (b"" where absent)."""
    return [value if isinstance(value, bytes) else b"" for value in await client.mget(keys)]


async def test_done_marker_is_written_once_redis_returns_not_left_to_expire(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, tmp_path: Path
) -> None:
    """The broker acknowledges a batch while Redis is away (a Sentinel failover, an
    outage): the done markers are retried until Redis takes them. Left pending, the
    claims would expire and a resend of these accepted events would publish them again."""
    redis = urlsplit(topics.redis_url)
    redis_proxy = TcpProxy(redis.hostname or "127.0.0.1", redis.port or 6379, free_port())
    await redis_proxy.start()
    direct = redis_client(topics)
    batch = [attempt("learner-1") for _ in range(5)]
    keys = [
        f"{topics.redis_namespace}:ingest:event:{TENANT}:{e.attempt.envelope.event_id}"
        for e in batch
    ]
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
    try:
        async with proxied_broker(topics, tmp_path / "tansu.log") as (behind_proxy, kafka):
            settings = behind_proxy.model_copy(
                update={
                    "redis_url": f"redis://127.0.0.1:{redis_proxy.port}{redis.path or '/0'}",
                    "ingest_delivery_timeout_ms": 1000,
                    "ingest_retry_after_s": 1,
                }
            )
            await asyncio.to_thread(ensure_topics, settings)
            async with running_ingest(settings) as client:
                await kafka.stop()  # the records wait in the producer ...
                posted = asyncio.create_task(
                    client.post("/v1/events", content=protobuf_body(batch), headers=headers)
                )
                for _ in range(200):  # ... after their claims were taken
                    if await direct.exists(*keys) == len(keys):
                        break
                    await asyncio.sleep(0.02)
                await redis_proxy.stop()
                await kafka.start()  # delivered now, while Redis is away
                # Delivered within the wait: ACCEPTED (the broker has them); else 503.
                assert (await posted).status_code in {200, 503}
                deadline = time.monotonic() + 30
                while (
                    "learnstream_ingest_dedup_unavailable 1.0"
                    not in (await client.get(metrics_url(settings))).text
                ):
                    assert time.monotonic() < deadline, "the done marker never failed"
                    await asyncio.sleep(0.1)
                assert all(v.startswith(b"pending:") for v in await stored(direct, keys))
                await redis_proxy.start()
                deadline = time.monotonic() + 10
                while await stored(direct, keys) != [b"done"] * len(keys):
                    assert time.monotonic() < deadline, await stored(direct, keys)
                    await asyncio.sleep(0.1)
                # A resend is now a duplicate, never a second publish.
                again = parse_response(
                    await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
                )
                assert again.duplicates == len(batch)
    finally:
        await redis_proxy.stop()
        await direct.aclose()
