"""Request and response bodies: protobuf or the proto3 JSON mapping, chosen by Content-Type.

A protobuf body is one ``IngestRequest`` message; if it does not parse, the whole
request is refused (there is no way to tell its events apart). A JSON body is
parsed event by event, so one event with an unknown field or a wrong type is
rejected on its own and its neighbours go on. The answer uses the request's
format; JSON answers keep the proto field names (``event_id``), like the field
paths in rejections.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, NamedTuple, NoReturn

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ingest.exceptions import (
    EmptyBatchError,
    FieldProblem,
    MalformedBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from ingest.validation import Violation
from learnstream.events.v1 import ingest_pb2

PROTOBUF_MEDIA_TYPE = "application/x-protobuf"
JSON_MEDIA_TYPE = "application/json"
# Names protobuf bodies go by in the wild; all mean one serialized message.
_PROTOBUF_ALIASES = frozenset(
    {PROTOBUF_MEDIA_TYPE, "application/protobuf", "application/vnd.google.protobuf"}
)


class BodyFormat(StrEnum):
    """How a request body (and so its answer) is encoded."""

    PROTOBUF = "protobuf"
    JSON = "json"

    @property
    def media_type(self) -> str:
        return PROTOBUF_MEDIA_TYPE if self is BodyFormat.PROTOBUF else JSON_MEDIA_TYPE


class DecodedEvent(NamedTuple):
    """One element of the batch: the parsed event, or why it could not be parsed.

    ``event_id`` is the client's event_id as sent (empty when unknown), so even an
    unparseable JSON event can be answered by id; ``kind`` is the event's oneof member
    ("attempt", ...), None when unset or unparsed. A tuple: one is built per event.
    """

    event: ingest_pb2.LearningEvent | None
    event_id: str = ""
    error: Violation | None = None
    kind: str | None = None


def body_format(content_type: str | None) -> BodyFormat:
    """The format a Content-Type header names; UnsupportedMediaTypeError otherwise.

    JSON must be UTF-8 (RFC 8259), so a ``charset`` other than utf-8 is refused.
    """
    if not content_type:
        _unsupported("no Content-Type header")
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type in _PROTOBUF_ALIASES:
        return BodyFormat.PROTOBUF
    if media_type == JSON_MEDIA_TYPE:
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in {"utf-8", "utf8"}:
                _unsupported(f"JSON bodies must be UTF-8, not charset={charset}")
        return BodyFormat.JSON
    _unsupported(f"Content-Type {media_type!r} is not accepted")


def _unsupported(what: str) -> NoReturn:
    raise UnsupportedMediaTypeError(
        f"{what}; send {PROTOBUF_MEDIA_TYPE} (an IngestRequest message) or "
        f"{JSON_MEDIA_TYPE} (its proto3 JSON mapping)",
        errors=[FieldProblem("header.Content-Type", "unsupported media type")],
    )


def decode_request(body: bytes, fmt: BodyFormat, *, max_events: int) -> list[DecodedEvent]:
    """The events of a request body, in order.

    Raises MalformedBodyError when the body as a whole does not parse,
    EmptyBatchError for zero events and PayloadTooLargeError for more than
    ``max_events``.
    """
    decoded = _decode_protobuf(body) if fmt is BodyFormat.PROTOBUF else _decode_json(body)
    if not decoded:
        raise EmptyBatchError(
            "the batch holds no events; send at least one in `events`",
            errors=[FieldProblem("events", "empty")],
        )
    if len(decoded) > max_events:
        raise PayloadTooLargeError(
            f"the batch holds {len(decoded)} events; at most {max_events} per request",
            errors=[FieldProblem("events", f"more than {max_events} events")],
        )
    return decoded


def _decode_protobuf(body: bytes) -> list[DecodedEvent]:
    try:
        request = ingest_pb2.IngestRequest.FromString(body)
    except DecodeError as exc:
        if "UTF-8" in str(exc):
            detail = "a string field of the body holds invalid UTF-8; protobuf strings are UTF-8"
        else:
            detail = f"the body is not a valid IngestRequest protobuf message ({exc})"
        raise MalformedBodyError(detail, errors=[FieldProblem("body", "malformed")]) from exc
    return [_decoded(event) for event in request.events]


def _decoded(event: ingest_pb2.LearningEvent) -> DecodedEvent:
    kind = event.WhichOneof("event")
    if kind is None:
        return DecodedEvent(event, "")
    return DecodedEvent(event, getattr(event, kind).envelope.event_id, None, kind)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON; send NaN or Infinity as a string")


def _decode_json(body: bytes) -> list[DecodedEvent]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(
            f"the body is not valid UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}",
            errors=[FieldProblem("body", "invalid UTF-8")],
        ) from exc
    try:
        document = json.loads(text.removeprefix("\ufeff"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedBodyError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            errors=[FieldProblem("body", "invalid JSON")],
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise MalformedBodyError(
            f"the body is not valid JSON: {exc}", errors=[FieldProblem("body", "invalid JSON")]
        ) from exc
    if not isinstance(document, dict):
        raise MalformedBodyError(
            f'the JSON body must be an object {{"events": [...]}}, not a {type(document).__name__}',
            errors=[FieldProblem("body", "not an object")],
        )
    unknown = sorted(set(document) - {"events"})
    if unknown:
        raise MalformedBodyError(
            f"unknown member(s) {', '.join(map(repr, unknown))}; IngestRequest has only `events`",
            errors=[FieldProblem(name, "unknown field") for name in unknown],
        )
    events = document.get("events")
    if events is None:
        return []
    if not isinstance(events, list):
        raise MalformedBodyError(
            "`events` must be a JSON array", errors=[FieldProblem("events", "not an array")]
        )
    return [_decode_json_event(element) for element in events]


def _decode_json_event(element: Any) -> DecodedEvent:
    event_id = _json_event_id(element)
    if not isinstance(element, dict):
        return DecodedEvent(
            event=None,
            event_id=event_id,
            error=Violation("", f"must be a JSON object, not {type(element).__name__}"),
        )
    event = ingest_pb2.LearningEvent()
    try:
        json_format.ParseDict(element, event)
    except json_format.ParseError as exc:
        return DecodedEvent(event=None, event_id=event_id, error=Violation("", str(exc)))
    return _decoded(event)


def _json_event_id(element: Any) -> str:
    """The event_id of a JSON event that may not parse, for the answer; "" if not found."""
    if not isinstance(element, dict):
        return ""
    for body in element.values():
        if isinstance(body, dict) and isinstance(body.get("envelope"), dict):
            envelope = body["envelope"]
            event_id = envelope.get("event_id", envelope.get("eventId", ""))
            return event_id if isinstance(event_id, str) else ""
    return ""


def encode_response(response: ingest_pb2.IngestResponse, fmt: BodyFormat) -> bytes:
    """``response`` in the request's format (JSON lists every field, zeros included)."""
    if fmt is BodyFormat.PROTOBUF:
        return response.SerializeToString()
    document = json_format.MessageToDict(
        response,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return json.dumps(document, separators=(",", ":")).encode()
