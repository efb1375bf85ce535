"""Ingest answers events of an erased learner REJECTED with reason ``erased`` (finding H1).

The attack: after the learner's erasure, one new attempt for their id was accepted and
recreated their views. Here a tombstone is written as erasure writes it; a batch with
events of the erased learner and of a bystander gets, per event, REJECTED ``erased``
for the first and ACCEPTED for the second, and only the bystander's event reaches the
topic. The batch costs one tombstone query; the next batch for the same learners
reuses the cached answer (erased for good).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import learner_key
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    TENANT,
    attempt,
    auth,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

PROTOBUF = {"Content-Type": "application/x-protobuf", "Accept": "application/x-protobuf"}
Status = ingest_pb2.EventStatus


async def test_erased_learner_event_is_rejected_at_ingest(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    await db_pool.execute(
        "INSERT INTO privacy_tombstones (tenant_id, subject_id, erased_at, requested_by) "
        "VALUES ($1, 'gone-1', $2, 'test')",
        TENANT,
        datetime.now(UTC),
    )
    # The same id in another tenant is somebody else, never erased by this tombstone.
    await db_pool.execute(
        "INSERT INTO privacy_tombstones (tenant_id, subject_id, erased_at, requested_by) "
        "VALUES ('other-school', 'stays-1', $1, 'test')",
        datetime.now(UTC),
    )
    async with running_ingest(topics) as client:
        answer = await client.post(
            "/v1/events",
            content=protobuf_body([attempt("gone-1"), attempt("stays-1"), attempt("gone-1")]),
            headers={**auth(api_key), **PROTOBUF},
        )
        result = parse_response(answer)
        assert [r.status for r in result.results] == [
            Status.EVENT_STATUS_REJECTED,
            Status.EVENT_STATUS_ACCEPTED,
            Status.EVENT_STATUS_REJECTED,
        ]
        assert result.results[0].reason == "erased"
        assert result.results[0].field == "events[0].attempt.envelope.user_id"
        assert (result.accepted, result.rejected) == (1, 2)
        ingestor = client._transport.app.state.ingestor  # type: ignore[attr-defined]
        assert ingestor.erased.queries == 1

        again = parse_response(
            await client.post(
                "/v1/events",
                content=protobuf_body([attempt("gone-1")]),
                headers={**auth(api_key), **PROTOBUF},
            )
        )
        assert again.results[0].reason == "erased"
        assert ingestor.erased.queries == 1  # an erased learner stays erased: cached

    published = read_topics(topics, expected=1)
    assert [r.key for r in published] == [learner_key(TENANT, "stays-1")]


async def test_erased_check_answers_every_event_in_one_query(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    async with running_ingest(topics) as client:
        ingestor = client._transport.app.state.ingestor  # type: ignore[attr-defined]
        answer = parse_response(
            await client.post(
                "/v1/events",
                content=protobuf_body([attempt(f"learner-{i}") for i in range(50)]),
                headers={**auth(api_key), **PROTOBUF},
            )
        )
        assert answer.accepted == 50
        assert ingestor.erased.queries == 1
