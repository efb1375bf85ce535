"""Identifiers with control characters are REJECTED at ingest, naming the field.

Proves (attack review finding L7): an attempt whose ``itemId`` or ``skillIds`` hold
NUL, sent as the JSON a client writes, is answered REJECTED with the field and the
reason, and never reaches the topic (before, it was ACCEPTED and the processors
dead-lettered it, since PostgreSQL text cannot hold NUL); its valid neighbour in
the same batch is accepted. The rule for every identifier of every event kind is
unit-tested in tests/unit/ingest/test_validation.py.
"""

from __future__ import annotations

import json

import httpx
from google.protobuf import json_format

from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.ingest.support import attempt, auth, event_ids, parse_response, read_topics

STATUS = ingest_pb2.EventStatus


async def test_ingest_rejects_nul_in_item_id(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    good, bad_item, bad_skill = attempt(), attempt(), attempt()
    events = [json_format.MessageToDict(e) for e in (good, bad_item, bad_skill)]
    events[1]["attempt"]["itemId"] = "item\x00-1"
    events[2]["attempt"]["skillIds"] = ["fractions.add", "\x00"]
    # json.dumps writes NUL as \u0000, as a client's JSON encoder does.
    body = json.dumps({"events": events})
    assert "\\u0000" in body
    response = await ingest.post(
        "/v1/events",
        content=body,
        headers={**auth(api_key), "Content-Type": "application/json"},
    )
    answer = parse_response(response)
    assert [r.status for r in answer.results] == [
        STATUS.EVENT_STATUS_ACCEPTED,
        STATUS.EVENT_STATUS_REJECTED,
        STATUS.EVENT_STATUS_REJECTED,
    ]
    assert [r.field for r in answer.results[1:]] == [
        "events[1].attempt.item_id",
        "events[2].attempt.skill_ids[1]",
    ]
    assert "U+0000" in answer.results[1].reason
    assert "printable" in answer.results[1].reason
    records = read_topics(topics, [Stream.ATTEMPTS], expected=1)
    assert event_ids(records) == [good.attempt.envelope.event_id]
