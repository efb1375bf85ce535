"""Errors ingest answers with; each maps to one RFC 9457 problem type.

Every class carries its HTTP status, a short ``slug`` (the problem ``type`` is
``urn:learnstream:problem:<slug>``) and a title, from the one slug set both services
share (learnstream/problems.py, which also renders them). ``detail`` says what was
wrong with this request and ``errors`` names the fields concerned.
"""

from __future__ import annotations

from typing import ClassVar

from learnstream import problems
from learnstream.exceptions import ServiceUnavailableError
from learnstream.problems import FieldProblem, ProblemError

__all__ = [
    "DependencyUnavailableError",
    "EmptyBatchError",
    "FieldProblem",
    "ForbiddenError",
    "IngestError",
    "MalformedBodyError",
    "NotAuthenticatedError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
]


class IngestError(ProblemError):
    """Root of the errors ingest answers as problem+json."""

    status = problems.BAD_REQUEST.status
    slug = problems.BAD_REQUEST.slug
    title = problems.BAD_REQUEST.title


class MalformedBodyError(IngestError):
    """The body is not a parseable IngestRequest (bad protobuf, bad JSON, bad UTF-8)."""

    slug = problems.MALFORMED_BODY.slug
    title = problems.MALFORMED_BODY.title


class EmptyBatchError(IngestError):
    """The request holds no events."""

    slug = problems.EMPTY_BATCH.slug
    title = problems.EMPTY_BATCH.title


class PayloadTooLargeError(IngestError):
    """The body has more bytes, or the batch more events, than ingest takes at once."""

    status = problems.PAYLOAD_TOO_LARGE.status
    slug = problems.PAYLOAD_TOO_LARGE.slug
    title = problems.PAYLOAD_TOO_LARGE.title


class UnsupportedMediaTypeError(IngestError):
    """The Content-Type is neither protobuf nor JSON."""

    status = problems.UNSUPPORTED_MEDIA_TYPE.status
    slug = problems.UNSUPPORTED_MEDIA_TYPE.slug
    title = problems.UNSUPPORTED_MEDIA_TYPE.title


class NotAuthenticatedError(IngestError):
    """No API key, or one that is malformed, unknown or revoked."""

    status = problems.NOT_AUTHENTICATED.status
    slug = problems.NOT_AUTHENTICATED.slug
    title = problems.NOT_AUTHENTICATED.title
    default_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(IngestError):
    """A valid API key whose scopes do not include what the route needs."""

    status = problems.FORBIDDEN.status
    slug = problems.FORBIDDEN.slug
    title = problems.FORBIDDEN.title


class DependencyUnavailableError(IngestError, ServiceUnavailableError):
    """A backing service (broker, Redis, PostgreSQL) failed; the client should retry.

    ``dependency`` names it ("kafka", "redis", "postgresql"); nothing of the
    request was claimed as accepted.
    """

    status = problems.SERVICE_UNAVAILABLE.status
    slug = problems.SERVICE_UNAVAILABLE.slug
    title = problems.SERVICE_UNAVAILABLE.title

    def __init__(self, dependency: str, detail: str, *, retry_after_s: int) -> None:
        super().__init__(
            detail,
            errors=[FieldProblem(field=dependency, reason="unavailable")],
            headers={"Retry-After": str(retry_after_s)},
        )
        self.dependency = dependency
