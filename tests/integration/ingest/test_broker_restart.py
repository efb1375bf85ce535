"""Ingest survives a broker restart: 503 + Retry-After while it is down, then recovers.

A broker of this test's own (not the session broker other tests use) is stopped
and a new one started on the same port. Tansu keeps nothing across a restart, so
the topics are created again. An idempotent librdkafka producer can be left
fatal by such a restart; AsyncProducer replaces it on the next publish. The
records of the refused batch stay claimed until librdkafka reports them (within
``message.timeout.ms``, ingest/producer.py): until then a retry gets RETRY_LATER,
never a second publish. The test proves the client's retries succeed within that
bound and that each event of the retried batch is on its topic exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from infra import services
from ingest.producer import message_timeout_ms
from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import Stream, ensure_topics
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    event_ids,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

STATUS = ingest_pb2.EventStatus


@pytest.fixture
def own_broker(settings: Settings) -> Iterator[Settings]:
    """Settings on a broker started for this test alone (stopped at the end)."""
    own = settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{services.free_port()}",
            "ingest_delivery_timeout_ms": 2000,
        }
    )
    services.start_broker(own)
    try:
        ensure_topics(own)
        yield own
    finally:
        services.stop_broker(own)


async def test_publishing_recovers_after_the_broker_restarts(
    own_broker: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
    async with running_ingest(own_broker) as client:
        before = parse_response(
            await client.post("/v1/events", content=protobuf_body([attempt()]), headers=headers)
        )
        assert before.accepted == 1

        services.stop_broker(own_broker)
        batch = [attempt(f"learner-{i}") for i in range(5)]
        response = await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(own_broker.ingest_retry_after_s)
        assert response.json()["errors"] == [{"field": "kafka", "reason": "unavailable"}]

        services.start_broker(own_broker)
        ensure_topics(own_broker)
        # The refused batch's deliveries are decided within message.timeout.ms at most.
        deadline = time.monotonic() + message_timeout_ms(own_broker) / 1000 + 15
        pending = list(batch)
        accepted_or_duplicate = 0
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} events not accepted in time"
            response = await client.post(
                "/v1/events", content=protobuf_body(pending), headers=headers
            )
            if response.status_code == 503:
                await asyncio.sleep(int(response.headers["Retry-After"]))
                continue
            answer = parse_response(response)
            assert answer.rejected == 0
            accepted_or_duplicate += answer.accepted + answer.duplicates
            pending = [
                event
                for event, result in zip(pending, answer.results, strict=True)
                if result.status == STATUS.EVENT_STATUS_RETRY_LATER
            ]
            if pending:
                await asyncio.sleep(int(response.headers["Retry-After"]))
        assert accepted_or_duplicate == len(batch)

    records = read_topics(own_broker, [Stream.ATTEMPTS], expected=len(batch))
    assert event_ids(records) == sorted(e.attempt.envelope.event_id for e in batch)
