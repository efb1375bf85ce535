"""OpenAPI documentation of the protobuf-defined bodies, derived from the descriptors.

The JSON schemas are generated from the ``.proto`` contract at start-up, so the
docs cannot drift from it. They describe the proto3 JSON mapping with the proto
field names (``event_id``); ingest also accepts the lowerCamelCase names
(``eventId``), as the mapping requires.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ingest.codec import JSON_MEDIA_TYPE, PROTOBUF_MEDIA_TYPE
from learnstream.events.v1 import ingest_pb2

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": ["number", "string"], "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": ["number", "string"], "format": "float"},
    FieldDescriptor.TYPE_INT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": ["integer", "string"], "format": "uint64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339, UTC, e.g. 2024-05-01T12:00:00Z",
    },
}

EXAMPLE_REQUEST: dict[str, Any] = {
    "events": [
        {
            "attempt": {
                "envelope": {
                    "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                    "user_id": "learner-17",
                    "occurred_at": "2024-05-01T12:00:00Z",
                    "source": {"app": "learnstream-web", "platform": "web", "version": "4.2.1"},
                },
                "item_id": "item-42",
                "skill_ids": ["fractions.add"],
                "correct": True,
                "response_time_ms": 5300,
                "attempt_number": 1,
                "context": "ATTEMPT_CONTEXT_PRACTICE",
            }
        }
    ]
}


def message_schema(descriptor: Descriptor) -> dict[str, Any]:
    """A JSON Schema (OpenAPI 3.1) of ``descriptor``'s proto3 JSON form, inlined."""
    well_known = _WELL_KNOWN.get(descriptor.full_name)
    if well_known is not None:
        return dict(well_known)
    properties = {field.name: _field_schema(field) for field in descriptor.fields}
    schema: dict[str, Any] = {
        "type": "object",
        "title": descriptor.name,
        "properties": properties,
        "additionalProperties": False,
    }
    oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]  # "_x": proto3 optional
    if oneofs:
        members = ", ".join(f.name for f in oneofs[0].fields)
        schema["description"] = f"Set exactly one of: {members}."
    return schema


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        value = message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single_schema(value)}
    single = _single_schema(field)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single_schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.message_type is not None:
        return message_schema(field.message_type)
    if field.enum_type is not None:
        values = field.enum_type.values
        return {
            "type": ["string", "integer"],
            "enum": [v.name for v in values] + [v.number for v in values],
        }
    return dict(_SCALARS.get(field.type, {"type": "string"}))


def ingest_request_body() -> dict[str, Any]:
    """The ``requestBody`` object of ``POST /v1/events`` (both content types)."""
    return {
        "required": True,
        "description": (
            "An IngestRequest: up to `ingest_max_batch_events` events (1,000 by default) and "
            "`ingest_max_body_bytes` bytes. `envelope.tenant_id` comes from the API key and "
            "`envelope.received_at` is set by ingest. Rules: event_id a UUID; user_id at most "
            "128 characters; every identifier (ids, skill_ids, attribute keys: every string "
            "but attempt.response and code_submission.source) printable only, no control, "
            "format, private-use or separator character but the space; occurred_at at most "
            "`ingest_max_future_skew_s` ahead and `ingest_max_event_age_days` back; score and "
            "p_mastery in [0, 1]; counts and durations >= 0; attempt_number and item_version "
            "0 mean unknown; tests_passed <= tests_total; skill_ids non-empty for attempts "
            "and code submissions; session.action and activity.kind required."
        ),
        "content": {
            PROTOBUF_MEDIA_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "A serialized learnstream.events.v1.IngestRequest.",
                }
            },
            JSON_MEDIA_TYPE: {
                "schema": message_schema(ingest_pb2.IngestRequest.DESCRIPTOR),
                "example": EXAMPLE_REQUEST,
            },
        },
    }


def ingest_responses() -> dict[int | str, dict[str, Any]]:
    """The documented answers of ``POST /v1/events``."""
    problem = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
    return {
        200: {
            "description": (
                "One result per event, in request order, in the request's content type. "
                "Given only after the broker acknowledged every ACCEPTED event. A "
                "Retry-After header comes with RETRY_LATER results."
            ),
            "content": {
                PROTOBUF_MEDIA_TYPE: {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "A serialized learnstream.events.v1.IngestResponse.",
                    }
                },
                JSON_MEDIA_TYPE: {"schema": message_schema(ingest_pb2.IngestResponse.DESCRIPTOR)},
            },
        },
        400: {"description": "Malformed body or empty batch", "content": problem},
        401: {"description": "Missing, malformed, unknown or revoked API key", "content": problem},
        403: {"description": "The API key lacks the scope events:write", "content": problem},
        413: {"description": "Too many bytes or too many events", "content": problem},
        415: {"description": "Content-Type is neither protobuf nor JSON", "content": problem},
        503: {
            "description": (
                "Broker, Redis or PostgreSQL unavailable; retry after Retry-After seconds. "
                "No event of the batch was claimed accepted; events the broker did take are "
                "reported DUPLICATE on the retry."
            ),
            "content": problem,
        },
    }


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}
