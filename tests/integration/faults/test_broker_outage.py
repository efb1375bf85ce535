"""The broker becomes unreachable while clients are posting: 503 + Retry-After, nothing
claimed that is not on the topic, and after it returns every event is there — once, or
again only if a request carrying it was answered 503 (the known gap described below).

Four concurrent clients post 15 batches of 20 attempts each to ingest (in-process,
real producer, Redis and PostgreSQL). Once 100 events were accepted, the proxy in
front of the broker is cut for 5 s (longer than the 2 s delivery timeout, so batches
in flight and new ones fail), then restored; the clients keep retrying as a real
client would (after Retry-After, only what was not yet ACCEPTED or DUPLICATE).

The existing ingest test (tests/integration/ingest/test_broker_restart.py) restarts
the broker between requests and checks the retried batch; this one cuts it under
concurrent load and counts every event of the whole run by event_id, which a broker
behind a proxy allows (it keeps its records across the outage).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg

from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream, ensure_topics
from learnstream.settings import Settings
from tests.integration.faults.support import (
    SendLog,
    assert_unavailable_names,
    proxied_broker,
    send_until_done,
    wait_until,
)
from tests.integration.ingest.support import attempt, auth, read_topics, running_ingest

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
    # Known gap (issue 7 note): a delivery that times out locally while the broker stored
    # it is released, so the client's retry publishes it again. Consumers drop repeats by
    # event_id (learner_state's attempts table). What must hold: an event repeats only if
    # requests carrying it were answered 503, at most once more per such answer.
    unexplained = {e: n for e, n in repeated.items() if n > 1 + log.in_unavailable[e]}
    assert not unexplained, f"{len(unexplained)} events repeated beyond their 503s: {unexplained}"
    # No event was claimed ACCEPTED twice; every event ended ACCEPTED or DUPLICATE (an event
    # delivered in a batch answered 503 comes back DUPLICATE on the retry).
    assert max(Counter(log.accepted).values()) == 1
    assert set(log.accepted) | set(log.duplicates) == set(sent)
