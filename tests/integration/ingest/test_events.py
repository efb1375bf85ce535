"""POST /v1/events against the real broker, Redis and PostgreSQL.

Proves: JSON and protobuf batches land on the topic of each event kind, keyed by
learner, as the specific message's bytes stamped with tenant and receipt time;
duplicates (in one batch and across requests) are published once; a bad event
is rejected by field path without spoiling its neighbours; malformed or refused
requests publish nothing; a claim held by another request answers RETRY_LATER.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from google.protobuf import json_format
from redis.asyncio import Redis

from ingest.dedup import DedupKey, DedupStore
from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import EVENT_TYPE_HEADER, Stream, learner_key
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    TENANT,
    attempt,
    auth,
    event_ids,
    new_event_id,
    one_of_each_kind,
    parse_response,
    protobuf_body,
    read_topics,
)

STATUS = ingest_pb2.EventStatus
KIND_TOPIC = {
    "attempt": Stream.ATTEMPTS,
    "code_submission": Stream.CODE_SUBMISSIONS,
    "session": Stream.SESSIONS,
    "placement": Stream.PLACEMENTS,
    "activity": Stream.ACTIVITY,
}


def json_body(events: list[ingest_pb2.LearningEvent]) -> str:
    return json.dumps(
        {"events": [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in events]}
    )


def assert_published_as_sent(
    settings: Settings, sent: list[ingest_pb2.LearningEvent], received_after: datetime
) -> None:
    """Each sent event is on its kind's topic once, keyed by learner, with its own bytes."""
    records = read_topics(settings, expected=len(sent))
    assert len(records) == len(sent)
    by_id = {r.headers["learnstream.event_id"].decode(): r for r in records}
    for event in sent:
        kind = event.WhichOneof("event")
        assert kind is not None
        message = getattr(event, kind)
        record = by_id[message.envelope.event_id]
        assert record.topic == settings.topic(KIND_TOPIC[kind])
        assert record.key == learner_key(TENANT, message.envelope.user_id)
        assert record.headers[EVENT_TYPE_HEADER] == message.DESCRIPTOR.full_name.encode()
        published = type(message).FromString(record.value)
        assert published.envelope.tenant_id == TENANT
        received_at = published.envelope.received_at.ToDatetime(tzinfo=UTC)
        assert received_after <= received_at <= datetime.now(UTC)
        # Apart from what ingest stamps, the record is the message as sent.
        published.envelope.tenant_id = message.envelope.tenant_id
        published.envelope.ClearField("received_at")
        assert published == message


async def test_a_json_batch_is_published_per_kind(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    sent = one_of_each_kind("learner-1") + one_of_each_kind("learner-2")
    before = datetime.now(UTC)
    response = await ingest.post(
        "/v1/events",
        content=json_body(sent),
        headers={**auth(api_key), "Content-Type": "application/json"},
    )
    assert response.headers["content-type"].startswith("application/json")
    answer = parse_response(response)
    assert answer.accepted == len(sent)
    assert [r.status for r in answer.results] == [STATUS.EVENT_STATUS_ACCEPTED] * len(sent)
    assert [r.index for r in answer.results] == list(range(len(sent)))
    assert_published_as_sent(topics, sent, before)


async def test_a_protobuf_batch_is_published_and_answered_in_protobuf(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    sent = one_of_each_kind("learner-3")
    before = datetime.now(UTC)
    response = await ingest.post(
        "/v1/events",
        content=protobuf_body(sent),
        headers={"X-API-Key": api_key.plaintext, "Content-Type": "application/x-protobuf"},
    )
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = parse_response(response)
    assert answer.accepted == len(sent)
    assert [r.event_id for r in answer.results] == [
        getattr(e, e.WhichOneof("event") or "").envelope.event_id for e in sent
    ]
    assert_published_as_sent(topics, sent, before)


async def test_duplicates_are_published_once(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    first, second, third = attempt(), attempt(), attempt()
    first_id = first.attempt.envelope.event_id
    headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}

    answer = parse_response(
        await ingest.post(
            "/v1/events", content=protobuf_body([first, second, first]), headers=headers
        )
    )
    assert [r.status for r in answer.results] == [
        STATUS.EVENT_STATUS_ACCEPTED,
        STATUS.EVENT_STATUS_ACCEPTED,
        STATUS.EVENT_STATUS_DUPLICATE,
    ]
    assert "events[0]" in answer.results[2].reason
    assert (answer.accepted, answer.duplicates) == (2, 1)

    # The client retries: the same id, in upper case this time, is still the same event.
    retried = attempt(event_id=first_id.upper())
    answer = parse_response(
        await ingest.post("/v1/events", content=protobuf_body([retried, third]), headers=headers)
    )
    assert [r.status for r in answer.results] == [
        STATUS.EVENT_STATUS_DUPLICATE,
        STATUS.EVENT_STATUS_ACCEPTED,
    ]
    records = read_topics(topics, [Stream.ATTEMPTS], expected=3)
    assert event_ids(records) == sorted(
        [first_id, second.attempt.envelope.event_id, third.attempt.envelope.event_id]
    )


async def test_a_bad_event_is_rejected_alone_by_field_path(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    good = attempt()
    bad_score = attempt(score=1.5)
    other_tenant = attempt()
    other_tenant.attempt.envelope.tenant_id = "school-2"
    unparseable_id = new_event_id()
    unparseable = {"attempt": {"envelope": {"event_id": unparseable_id}, "scor": 1}}
    body = json.loads(json_body([good, bad_score, other_tenant]))
    body["events"].append(unparseable)
    response = await ingest.post("/v1/events", json=body, headers=auth(api_key))
    answer = parse_response(response)
    assert [r.status for r in answer.results] == [
        STATUS.EVENT_STATUS_ACCEPTED,
        STATUS.EVENT_STATUS_REJECTED,
        STATUS.EVENT_STATUS_REJECTED,
        STATUS.EVENT_STATUS_REJECTED,
    ]
    assert [r.field for r in answer.results[1:]] == [
        "events[1].attempt.score",
        "events[2].attempt.envelope.tenant_id",
        "events[3]",
    ]
    assert "[0, 1]" in answer.results[1].reason
    assert "scor" in answer.results[3].reason
    assert answer.results[3].event_id == unparseable_id
    assert (answer.accepted, answer.rejected) == (1, 3)
    records = read_topics(topics, [Stream.ATTEMPTS], expected=1)
    assert event_ids(records) == [good.attempt.envelope.event_id]


async def test_an_event_id_another_request_is_publishing_is_retry_later(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    in_flight = attempt()
    event_id = in_flight.attempt.envelope.event_id
    redis = Redis.from_url(topics.redis_url)
    try:
        store = DedupStore.from_settings(redis, topics)
        # Another ingest request's claim, as it looks while that request publishes.
        await redis.set(store.redis_key(DedupKey(TENANT, event_id)), "pending:other", ex=60)
        response = await ingest.post(
            "/v1/events",
            content=protobuf_body([in_flight, attempt()]),
            headers={**auth(api_key), "Content-Type": "application/x-protobuf"},
        )
        answer = parse_response(response)
        assert answer.results[0].status == STATUS.EVENT_STATUS_RETRY_LATER
        assert answer.results[0].field == "events[0].attempt.envelope.event_id"
        assert answer.results[1].status == STATUS.EVENT_STATUS_ACCEPTED
        assert (answer.accepted, answer.retry_later) == (1, 1)
        assert response.headers["Retry-After"] == str(topics.ingest_retry_after_s)
        # That other request finished (its claim is gone): now the retry is accepted.
        await redis.delete(store.redis_key(DedupKey(TENANT, event_id)))
        answer = parse_response(
            await ingest.post(
                "/v1/events",
                content=protobuf_body([in_flight]),
                headers={**auth(api_key), "Content-Type": "application/x-protobuf"},
            )
        )
        assert answer.results[0].status == STATUS.EVENT_STATUS_ACCEPTED
    finally:
        await redis.aclose()
    records = read_topics(topics, [Stream.ATTEMPTS], expected=2)
    assert event_id in event_ids(records)
    assert len(records) == 2


async def test_an_old_or_future_event_is_rejected(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    future = attempt()
    future.attempt.envelope.occurred_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    answer = parse_response(
        await ingest.post(
            "/v1/events",
            content=protobuf_body([future]),
            headers={**auth(api_key), "Content-Type": "application/x-protobuf"},
        )
    )
    assert answer.results[0].field == "events[0].attempt.envelope.occurred_at"
    assert "future" in answer.results[0].reason
