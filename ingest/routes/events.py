"""``POST /v1/events``: the one way learning events enter Learnstream."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from ingest import codec, openapi
from ingest.deps import EventWriter, IngestorDep, SettingsDep
from ingest.exceptions import FieldProblem, MalformedBodyError, PayloadTooLargeError

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    summary="Post a batch of learning events",
    response_class=Response,
    responses=openapi.ingest_responses(),
    openapi_extra={"requestBody": openapi.ingest_request_body()},
)
async def post_events(
    request: Request, api_key: EventWriter, settings: SettingsDep, ingestor: IngestorDep
) -> Response:
    """Validate, deduplicate and publish a batch; answer once the broker acknowledged.

    The body is an ``IngestRequest`` as ``application/x-protobuf`` or
    ``application/json``; the answer is an ``IngestResponse`` in the same format,
    with one result per event (ACCEPTED, DUPLICATE, REJECTED naming the field,
    or RETRY_LATER). A broker, Redis or PostgreSQL failure answers 503 with
    Retry-After, and no event of the batch is then claimed as accepted.
    """
    fmt = codec.body_format(request.headers.get("content-type"))
    body = await read_body(request, max_bytes=settings.ingest_max_body_bytes)
    events = codec.decode_request(body, fmt, max_events=settings.ingest_max_batch_events)
    response = await ingestor.ingest(events, api_key=api_key, now=datetime.now(UTC))
    headers = {}
    if response.retry_later:
        headers["Retry-After"] = str(settings.ingest_retry_after_s)
    return Response(
        codec.encode_response(response, fmt), media_type=fmt.media_type, headers=headers
    )


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The body, refusing more than ``max_bytes`` by Content-Length or by what arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBodyError(
                f"Content-Length {declared!r} is not a number",
                errors=[FieldProblem("header.Content-Length", "not a number")],
            )
        if int(declared) > max_bytes:
            raise _too_large(f"Content-Length {declared}", max_bytes)
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:  # a chunked body, or a Content-Length that lied
            raise _too_large(f"more than {max_bytes} bytes arrived", max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what}; a request body may have at most {max_bytes} bytes "
        "(split the batch into smaller ones)",
        errors=[FieldProblem("body", f"more than {max_bytes} bytes")],
    )
