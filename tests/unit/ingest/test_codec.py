"""Body decoding and encoding: content types, malformed bodies, per-event JSON errors."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from ingest.codec import BodyFormat, body_format, decode_request, encode_response
from ingest.exceptions import (
    EmptyBatchError,
    MalformedBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from learnstream.events.v1 import attempt_pb2, envelope_pb2, ingest_pb2

EVENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def attempt(event_id: str = EVENT_ID, response: str = "42") -> ingest_pb2.LearningEvent:
    return ingest_pb2.LearningEvent(
        attempt=attempt_pb2.AttemptEvent(
            envelope=envelope_pb2.Envelope(event_id=event_id, user_id="u1"),
            item_id="i1",
            response=response,
        )
    )


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-protobuf", BodyFormat.PROTOBUF),
        ("application/protobuf", BodyFormat.PROTOBUF),
        ("Application/X-Protobuf; proto=learnstream.events.v1.IngestRequest", BodyFormat.PROTOBUF),
        ("application/json", BodyFormat.JSON),
        ("application/json; charset=utf-8", BodyFormat.JSON),
        ('application/json; charset="UTF-8"', BodyFormat.JSON),
    ],
)
def test_accepted_content_types(content_type: str, expected: BodyFormat) -> None:
    assert body_format(content_type) is expected


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/xml", "application/json; charset=latin-1"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        body_format(content_type)
    assert caught.value.status == 415
    assert "application/x-protobuf" in caught.value.detail


def test_protobuf_round_trip_keeps_every_event_and_its_id() -> None:
    request = ingest_pb2.IngestRequest(events=[attempt(), attempt(event_id="x")])
    decoded = decode_request(request.SerializeToString(), BodyFormat.PROTOBUF, max_events=10)
    assert [d.event for d in decoded] == list(request.events)
    assert [d.event_id for d in decoded] == [EVENT_ID, "x"]
    assert all(d.error is None for d in decoded)


def test_corrupt_protobuf_is_malformed() -> None:
    with pytest.raises(MalformedBodyError, match="not a valid IngestRequest"):
        decode_request(b"\xff\xff\xff\xff", BodyFormat.PROTOBUF, max_events=10)


def test_protobuf_with_invalid_utf8_string_names_utf8() -> None:
    body = ingest_pb2.IngestRequest(events=[attempt(response="MARK")]).SerializeToString()
    body = body.replace(b"MARK", b"\xff\xfe\xfd\xfc")
    with pytest.raises(MalformedBodyError, match="UTF-8"):
        decode_request(body, BodyFormat.PROTOBUF, max_events=10)


def test_empty_batches_are_refused_in_both_formats() -> None:
    with pytest.raises(EmptyBatchError):
        decode_request(b"", BodyFormat.PROTOBUF, max_events=10)
    for body in (b'{"events": []}', b"{}", b'{"events": null}'):
        with pytest.raises(EmptyBatchError):
            decode_request(body, BodyFormat.JSON, max_events=10)


def test_batch_size_limit_is_inclusive() -> None:
    three = ingest_pb2.IngestRequest(events=[attempt()] * 3).SerializeToString()
    assert len(decode_request(three, BodyFormat.PROTOBUF, max_events=3)) == 3
    with pytest.raises(PayloadTooLargeError, match="3 events; at most 2"):
        decode_request(three, BodyFormat.PROTOBUF, max_events=2)


def json_body(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def test_json_accepts_proto_and_camel_case_names() -> None:
    snake = {"attempt": {"envelope": {"event_id": EVENT_ID, "user_id": "u1"}, "item_id": "i1"}}
    camel = {"attempt": {"envelope": {"eventId": EVENT_ID, "userId": "u1"}, "itemId": "i1"}}
    decoded = decode_request(json_body(snake, camel), BodyFormat.JSON, max_events=10)
    assert decoded[0].event == decoded[1].event
    assert decoded[0].event is not None
    assert decoded[0].event.attempt.envelope.user_id == "u1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"events": [', "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"events": {}}', "must be a JSON array"),
        (b'{"events": [], "extra": 1}', "unknown member"),
        (b'{"events": [{"attempt": {"score": NaN}}]}', "not valid JSON"),
        (b'{"events": [{"x": "\xff"}]}', "not valid UTF-8"),
    ],
)
def test_malformed_json_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBodyError, match=message):
        decode_request(body, BodyFormat.JSON, max_events=10)


def test_a_utf8_bom_is_tolerated() -> None:
    body = "\ufeff".encode() + json_body({"session": {}})
    assert len(decode_request(body, BodyFormat.JSON, max_events=10)) == 1


def test_one_bad_json_event_does_not_spoil_its_neighbours() -> None:
    good = {"attempt": {"envelope": {"event_id": EVENT_ID}}}
    typo = {"attempt": {"envelope": {"event_id": "e-2"}, "scor": 1}}
    two_kinds: dict[str, object] = {"attempt": {}, "session": {}}
    not_object = 7
    decoded = decode_request(
        json_body(good, typo, two_kinds, not_object), BodyFormat.JSON, max_events=10
    )
    assert decoded[0].error is None
    assert decoded[0].event is not None
    assert decoded[1].event is None
    assert decoded[1].event_id == "e-2"  # answered by id even though it did not parse
    assert decoded[1].error is not None
    assert "scor" in decoded[1].error.reason
    assert decoded[2].error is not None
    assert "oneof" in decoded[2].error.reason
    assert decoded[3].error is not None
    assert "JSON object" in decoded[3].error.reason


def test_json_response_keeps_proto_names_and_zero_values() -> None:
    response = ingest_pb2.IngestResponse(
        results=[
            ingest_pb2.EventResult(
                index=0, event_id=EVENT_ID, status=ingest_pb2.EVENT_STATUS_ACCEPTED
            )
        ],
        accepted=1,
    )
    document = json.loads(encode_response(response, BodyFormat.JSON))
    assert document["results"][0] == {
        "index": 0,
        "event_id": EVENT_ID,
        "status": "EVENT_STATUS_ACCEPTED",
        "field": "",
        "reason": "",
    }
    assert document["rejected"] == 0
    # and it parses back into the same message, as any proto3 JSON client would do
    assert json_format.Parse(json.dumps(document), ingest_pb2.IngestResponse()) == response


def test_protobuf_response_is_the_serialized_message() -> None:
    response = ingest_pb2.IngestResponse(accepted=3)
    encoded = encode_response(response, BodyFormat.PROTOBUF)
    assert ingest_pb2.IngestResponse.FromString(encoded) == response
