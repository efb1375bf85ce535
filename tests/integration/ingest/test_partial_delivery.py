"""A batch the broker takes only in part: 503, delivered events stay claimed, the rest retry once.

The broker refuses a record larger than message.max.bytes. With the record-size
guard lifted, a batch [A, huge, B] gets A delivered and huge and B failed: the
answer is 503 and A's claim is "done". The client's retry (now against the
normal guard, which rejects huge up front) reports A DUPLICATE and publishes B:
every event ends up on the topic exactly once.
"""

from __future__ import annotations

import asyncpg

from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import code_submission_pb2, ingest_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    envelope,
    event_ids,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

STATUS = ingest_pb2.EventStatus
HUGE_SOURCE_CHARS = 1_500_000  # above librdkafka's message.max.bytes (1,000,000)


async def test_a_partly_delivered_batch_is_503_and_its_retry_publishes_the_rest_once(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    first, last = attempt(), attempt()
    huge = ingest_pb2.LearningEvent(
        code_submission=code_submission_pb2.CodeSubmissionEvent(
            envelope=envelope("learner-1"),
            item_id="exercise-1",
            skill_ids=["loops"],
            source="#" * HUGE_SOURCE_CHARS,
        )
    )
    body = protobuf_body([first, huge, last])
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}

    unguarded = topics.model_copy(
        update={
            "ingest_max_source_code_chars": 2 * HUGE_SOURCE_CHARS,
            "ingest_max_record_bytes": 4 * HUGE_SOURCE_CHARS,
        }
    )
    async with running_ingest(unguarded) as client:
        response = await client.post("/v1/events", content=body, headers=headers)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(topics.ingest_retry_after_s)
        problem = response.json()
        assert problem["errors"] == [{"field": "kafka", "reason": "unavailable"}]
        assert "did not acknowledge 2 of 3" in problem["detail"]

    # Source code may be long, but no single record may exceed the broker's limit.
    size_guarded = topics.model_copy(update={"ingest_max_source_code_chars": 2 * HUGE_SOURCE_CHARS})
    async with running_ingest(size_guarded) as client:
        answer = parse_response(await client.post("/v1/events", content=body, headers=headers))
    assert [r.status for r in answer.results] == [
        STATUS.EVENT_STATUS_DUPLICATE,  # delivered by the 503 request, its claim kept "done"
        STATUS.EVENT_STATUS_REJECTED,
        STATUS.EVENT_STATUS_ACCEPTED,  # its failed claim was released
    ]
    assert answer.results[1].field == "events[1].code_submission"
    assert "serializes to" in answer.results[1].reason

    records = read_topics(topics, [Stream.ATTEMPTS, Stream.CODE_SUBMISSIONS], expected=2)
    assert event_ids(records) == sorted(
        [first.attempt.envelope.event_id, last.attempt.envelope.event_id]
    )
