"""The broker becomes unreachable while clients are posting: 503 + Retry-After, nothing
claimed that is not on the topic, and after it returns every event is there exactly once.

Four concurrent clients post 15 batches of 20 attempts each to ingest (in-process,
real producer, Redis and PostgreSQL). Once 100 events were accepted, the proxy in
front of the broker is cut for 5 s (longer than the 2 s delivery timeout, so batches
in flight and new ones fail), then restored; the clients keep retrying as a real
client would (after Retry-After, only what was not yet ACCEPTED or DUPLICATE).

The existing ingest test (tests/integration/ingest/test_broker_restart.py) restarts
the broker between requests and checks the retried batch; this one cuts it under
concurrent load and counts every event of the whole run by event_id, which a broker
behind a proxy allows (it keeps its records across the outage).

Exactly once on the topic holds because a request that stops waiting (503) leaves its
claims pending until librdkafka reports each record (ingest/batch.py): a retry in the
meantime gets RETRY_LATER, never a second publish. The second test walks that path
step by step: 503, RETRY_LATER while undecided, DUPLICATE once the broker stored it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg

from ingest.producer import message_timeout_ms
from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream, ensure_topics
from learnstream.settings import Settings
from tests.integration.faults.support import (
    STATUS,
    SendLog,
    assert_unavailable_names,
    proxied_broker,
    send_until_done,
    wait_until,
)
from tests.integration.ingest.support import (
    attempt,
    auth,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

SENDERS = 4
BATCHES = 15
BATCH = 20
OUTAGE_S = 5.0


async def test_broker_cut_under_load_then_every_event_exactly_once(
    settings: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, tmp_path: Path
) -> None:
    async with proxied_broker(settings, tmp_path / "tansu.log") as (behind_proxy, proxy):
        own = behind_proxy.model_copy(
            update={"ingest_delivery_timeout_ms": 2000, "ingest_retry_after_s": 1}
        )
        await asyncio.to_thread(ensure_topics, own)
        shards = [
            [[attempt(f"learner-{s}-{b % 5}") for _ in range(BATCH)] for b in range(BATCHES)]
            for s in range(SENDERS)
        ]
        sent = [e.attempt.envelope.event_id for shard in shards for b in shard for e in b]
        headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
        log = SendLog()
        async with running_ingest(own) as client:
            deadline = time.monotonic() + 90
            senders = [
                asyncio.create_task(send_until_done(client, headers, shard, log, deadline=deadline))
                for shard in shards
            ]
            await wait_until(lambda: len(log.accepted) >= 100, timeout_s=30, what="100 accepted")
            await proxy.stop()
            accepted_at_cut = len(log.accepted)
            await asyncio.sleep(OUTAGE_S)
            refused_during_outage = len(log.unavailable)
            await proxy.start()
            await asyncio.gather(*senders)
        records = await asyncio.to_thread(
            read_topics, own, [Stream.ATTEMPTS], expected=len(sent), settle_s=2.0
        )

    assert accepted_at_cut < len(sent), "the outage must hit while events are still pending"
    assert refused_during_outage >= 1, "no request was refused while the broker was cut off"
    for response in log.unavailable:
        assert_unavailable_names(response, "kafka", own.ingest_retry_after_s)
    copies = Counter(r.headers["learnstream.event_id"].decode() for r in records)
    assert set(copies) == set(sent), "events missing from (or foreign to) the topic"
    repeated = {event_id: n for event_id, n in copies.items() if n > 1}
    assert not repeated, f"{len(repeated)} events on the topic more than once: {repeated}"
    # No event was claimed ACCEPTED twice; every event ended ACCEPTED or DUPLICATE (an event
    # delivered in a batch answered 503 comes back DUPLICATE on the retry).
    assert max(Counter(log.accepted).values()) == 1
    assert set(log.accepted) | set(log.duplicates) == set(sent)


async def test_a_batch_answered_503_while_in_flight_stays_claimed_then_is_duplicate(
    settings: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, tmp_path: Path
) -> None:
    async with proxied_broker(settings, tmp_path / "tansu.log") as (behind_proxy, proxy):
        own = behind_proxy.model_copy(
            update={"ingest_delivery_timeout_ms": 2000, "ingest_retry_after_s": 1}
        )
        await asyncio.to_thread(ensure_topics, own)
        headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
        batch = [attempt(f"learner-{i}") for i in range(5)]
        sent = [e.attempt.envelope.event_id for e in batch]
        async with running_ingest(own) as client:
            warm = await client.post(
                "/v1/events", content=protobuf_body([attempt()]), headers=headers
            )
            assert parse_response(warm).accepted == 1  # the producer is connected

            await proxy.stop()
            refused = await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
            assert_unavailable_names(refused, "kafka", own.ingest_retry_after_s)
            # Still undecided: the claims are pending, so nothing is published again.
            undecided = parse_response(
                await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
            )
            assert [r.status for r in undecided.results] == [STATUS.EVENT_STATUS_RETRY_LATER] * 5

            await proxy.start()
            # librdkafka delivers the records it kept; their claims become done.
            deadline = time.monotonic() + message_timeout_ms(own) / 1000 + 10
            while True:
                answer = parse_response(
                    await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
                )
                if answer.retry_later == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert [r.status for r in answer.results] == [STATUS.EVENT_STATUS_DUPLICATE] * 5
        records = await asyncio.to_thread(
            read_topics, own, [Stream.ATTEMPTS], expected=len(sent) + 1, settle_s=2.0
        )
    copies = Counter(r.headers["learnstream.event_id"].decode() for r in records)
    assert {event_id: copies[event_id] for event_id in sent} == dict.fromkeys(sent, 1)
