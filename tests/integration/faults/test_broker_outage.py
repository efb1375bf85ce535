"""The broker is cut again and again while clients are posting: 503 + Retry-After or
RETRY_LATER meanwhile, and in the end every event is on the topic exactly once.

Four concurrent clients keep posting batches of 20 attempts to ingest (in-process,
real producer, Redis and PostgreSQL). Meanwhile the proxy in front of the broker is
cut :data:`CUTS` times, each at a random moment (0.2-1.5 s of service in between)
for a random 0.1-3.5 s: some cuts are shorter than the 2 s a request waits (the
batches in flight are delivered late, the answer is still ACCEPTED), some longer
(the request answers 503 while librdkafka still holds the records, which the broker
may already have stored). The proxy closes every open connection at a cut, so an
acknowledgement on the wire is lost while its record stays stored. The clients
retry as a real client would (after Retry-After, only what was not yet ACCEPTED or
DUPLICATE). The seed of the random moments is in every failure message.

The existing ingest test (tests/integration/ingest/test_broker_restart.py) restarts
the broker between requests and checks the retried batch; this one cuts it under
concurrent load and counts every event of the whole run by event_id, which a broker
behind a proxy allows (it keeps its records across the outages).

Exactly once on the topic holds because a request that stops waiting (503) leaves its
claims pending until librdkafka reports each record (ingest/batch.py), and
librdkafka's delivery bound (message.timeout.ms, 12 s here) outlives every cut: a
retry in the meantime gets RETRY_LATER, never a second publish. The second test walks
that path step by step: 503, RETRY_LATER while undecided, DUPLICATE once stored.
"""

from __future__ import annotations

import asyncio
import random
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
    cut_repeatedly,
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
BATCH = 20
CUTS = 12
# Service between cuts and length of a cut, seconds (uniformly drawn).
UP_S = (0.2, 1.5)
DOWN_S = (0.1, 3.5)


async def test_repeated_broker_cuts_under_load_then_every_event_exactly_once(
    settings: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    async with proxied_broker(settings, tmp_path / "tansu.log") as (behind_proxy, proxy):
        own = behind_proxy.model_copy(
            update={"ingest_delivery_timeout_ms": 2000, "ingest_retry_after_s": 1}
        )
        await asyncio.to_thread(ensure_topics, own)
        headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
        log = SendLog()
        sent: list[str] = []
        cutting = asyncio.Event()
        cutting.set()
        async with running_ingest(own) as client:
            deadline = time.monotonic() + 150

            async def sender(shard: int) -> None:
                # New batches while the cuts go on; each is retried until settled.
                number = 0
                while cutting.is_set():
                    batch = [attempt(f"learner-{shard}-{number % 5}") for _ in range(BATCH)]
                    number += 1
                    sent.extend(e.attempt.envelope.event_id for e in batch)
                    await send_until_done(client, headers, [batch], log, deadline=deadline)

            senders = [asyncio.create_task(sender(s)) for s in range(SENDERS)]
            await wait_until(lambda: len(log.accepted) >= 100, timeout_s=30, what="100 accepted")
            cuts = await cut_repeatedly(proxy, rng, cuts=CUTS, up_s=UP_S, down_s=DOWN_S)
            cutting.clear()
            await asyncio.gather(*senders)
        records = await asyncio.to_thread(
            read_topics, own, [Stream.ATTEMPTS], expected=len(sent), settle_s=2.0, timeout_s=60
        )

    where = f"(seed {seed}, cuts {cuts})"
    assert len(cuts) == CUTS
    assert log.unavailable or log.retry_later, f"no request was held back by a cut {where}"
    for response in log.unavailable:
        assert_unavailable_names(response, "kafka", own.ingest_retry_after_s)
    copies = Counter(r.headers["learnstream.event_id"].decode() for r in records)
    missing = set(sent) - set(copies)
    assert not missing, f"{len(missing)} of {len(sent)} events missing from the topic {where}"
    assert set(copies) == set(sent), f"events foreign to the topic {where}"
    repeated = {event_id: n for event_id, n in copies.items() if n > 1}
    assert not repeated, f"{len(repeated)} events on the topic more than once {where}: {repeated}"
    # No event was claimed ACCEPTED twice; every event ended ACCEPTED or DUPLICATE (an event
    # delivered in a batch answered 503 comes back DUPLICATE on the retry).
    assert max(Counter(log.accepted).values()) == 1, where
    assert set(log.accepted) | set(log.duplicates) == set(sent), where


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
