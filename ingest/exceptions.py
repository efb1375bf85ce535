"""Errors ingest answers with; each maps to one RFC 9457 problem type.

Every class carries its HTTP status, a short ``slug`` (the problem ``type`` is
``urn:learnstream:problem:<slug>``, the same scheme the read API uses) and a
title. ``detail`` says what was wrong with this request and ``errors`` names the
fields concerned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from learnstream.exceptions import LearnstreamError, ServiceUnavailableError


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One refused input: ``field`` is a path such as ``events[3].attempt.score``."""

    field: str
    reason: str


class IngestError(LearnstreamError):
    """Root of the errors ingest answers as problem+json."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})


class MalformedBodyError(IngestError):
    """The body is not a parseable IngestRequest (bad protobuf, bad JSON, bad UTF-8)."""

    slug = "malformed-body"
    title = "Malformed request body"


class EmptyBatchError(IngestError):
    """The request holds no events."""

    slug = "empty-batch"
    title = "Empty batch"


class PayloadTooLargeError(IngestError):
    """The body has more bytes, or the batch more events, than ingest takes at once."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaTypeError(IngestError):
    """The Content-Type is neither protobuf nor JSON."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class NotAuthenticatedError(IngestError):
    """No API key, or one that is malformed, unknown or revoked."""

    status = 401
    slug = "not-authenticated"
    title = "Not authenticated"

    def __init__(self, detail: str, *, errors: Sequence[FieldProblem] = ()) -> None:
        super().__init__(detail, errors=errors, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(IngestError):
    """A valid API key whose scopes do not include what the route needs."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class DependencyUnavailableError(IngestError, ServiceUnavailableError):
    """A backing service (broker, Redis, PostgreSQL) failed; the client should retry.

    ``dependency`` names it ("kafka", "redis", "postgresql"); nothing of the
    request was claimed as accepted.
    """

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, dependency: str, detail: str, *, retry_after_s: int) -> None:
        super().__init__(
            detail,
            errors=[FieldProblem(field=dependency, reason="unavailable")],
            headers={"Retry-After": str(retry_after_s)},
        )
        self.dependency = dependency
