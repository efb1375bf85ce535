"""RFC 9457 problem details: the one error scheme of ingest and the read API.

Every error answer of either service is ``application/problem+json`` with the standard
members (``type``, ``title``, ``status``, ``detail``, ``instance``) and ``errors``: a list
of ``{"field": ..., "reason": ...}`` naming the input that was refused, e.g.
``{"field": "body.email", "reason": "value is not a valid email"}``.

``type`` is ``urn:learnstream:problem:<slug>`` (a URN: it names a kind of error, not a
page). The slugs form one set, :data:`PROBLEM_TYPES`, listed in docs/architecture.md
("Errors"); a test keeps the table, the exception classes and this set in step.

Each service keeps its own domain exceptions (``api/exceptions.py``,
``ingest/exceptions.py``), all derived from :class:`ProblemError`, and renders them here:
:func:`install_problem_handlers` for errors raised inside the app, :func:`send_problem`
for middleware that answers before any route runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from learnstream.exceptions import LearnstreamError, ServiceUnavailableError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One kind of problem: its ``slug`` (the tail of ``type``), HTTP status and title."""

    slug: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        """The problem ``type`` member."""
        return problem_type(self.slug)


# The one slug set of both services (docs/architecture.md, "Errors").
BAD_REQUEST = ProblemType("bad-request", 400, "Bad request")
MALFORMED_REQUEST = ProblemType("malformed-request", 400, "Malformed request")
MALFORMED_BODY = ProblemType("malformed-body", 400, "Malformed request body")
EMPTY_BATCH = ProblemType("empty-batch", 400, "Empty batch")
NOT_AUTHENTICATED = ProblemType("not-authenticated", 401, "Not authenticated")
FORBIDDEN = ProblemType("forbidden", 403, "Forbidden")
NOT_FOUND = ProblemType("not-found", 404, "Not found")
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", 405, "Method not allowed")
CONFLICT = ProblemType("conflict", 409, "Conflict")
PAYLOAD_TOO_LARGE = ProblemType("payload-too-large", 413, "Payload too large")
UNSUPPORTED_MEDIA_TYPE = ProblemType("unsupported-media-type", 415, "Unsupported media type")
VALIDATION = ProblemType("validation", 422, "Request validation failed")
INVALID_INPUT = ProblemType("invalid-input", 422, "Invalid input")
ACCOUNT_LOCKED = ProblemType("account-locked", 423, "Account locked")
RATE_LIMITED = ProblemType("rate-limited", 429, "Too many requests")
INTERNAL = ProblemType("internal", 500, "Internal error")
SERVICE_UNAVAILABLE = ProblemType("service-unavailable", 503, "Service unavailable")
# Any other status Starlette raises itself (rare: 406, 416, ...).
HTTP_ERROR = ProblemType("http-error", 0, "HTTP error")

PROBLEM_TYPES: dict[str, ProblemType] = {
    p.slug: p
    for p in (
        BAD_REQUEST,
        MALFORMED_REQUEST,
        MALFORMED_BODY,
        EMPTY_BATCH,
        NOT_AUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        CONFLICT,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        VALIDATION,
        INVALID_INPUT,
        ACCOUNT_LOCKED,
        RATE_LIMITED,
        INTERNAL,
        SERVICE_UNAVAILABLE,
        HTTP_ERROR,
    )
}

# The problem of a plain HTTP error Starlette raises itself (unknown route, wrong method).
_BY_HTTP_STATUS = {
    p.status: p
    for p in (
        BAD_REQUEST,
        NOT_AUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        CONFLICT,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        RATE_LIMITED,
        SERVICE_UNAVAILABLE,
    )
}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One refused input: where it is (``body.email``, ``events[3].attempt.score``,
    ``header.Authorization``) and why it was refused."""

    field: str
    reason: str


class ProblemError(LearnstreamError):
    """Root of the errors a service answers as problem+json; subclasses fix the HTTP
    status, the slug (one of :data:`PROBLEM_TYPES`) and the title."""

    status: ClassVar[int] = INTERNAL.status
    slug: ClassVar[str] = INTERNAL.slug
    title: ClassVar[str] = INTERNAL.title
    # Headers every answer of this kind carries (e.g. WWW-Authenticate on 401).
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        errors: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        if field is not None:
            self.errors.insert(0, FieldProblem(field, reason or detail))
        self.headers = {**self.default_headers, **(headers or {})}


def problem_type(slug: str) -> str:
    """The problem ``type`` URI of ``slug``."""
    return f"urn:learnstream:problem:{slug}"


def problem_body(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    errors: Sequence[FieldProblem] = (),
) -> dict[str, Any]:
    """The JSON members of one problem answer."""
    return {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "errors": [{"field": e.field, "reason": e.reason} for e in errors],
    }


def problem_response(
    request: Request,
    problem: ProblemType,
    *,
    detail: str,
    status: int | None = None,
    errors: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response for ``request`` (``status`` overrides the type's own)."""
    status = status or problem.status
    body = problem_body(
        status=status,
        slug=problem.slug,
        title=problem.title,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def send_problem(
    send: Send,
    scope: Scope,
    problem: ProblemType,
    *,
    detail: str,
    errors: Sequence[FieldProblem] = (),
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole problem+json answer through ``send``: for middleware that answers
    before any route (and so any exception handler) runs."""
    body = json.dumps(
        problem_body(
            status=problem.status,
            slug=problem.slug,
            title=problem.title,
            detail=detail,
            instance=scope.get("path", ""),
            errors=errors,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validation_problems(exc: RequestValidationError) -> list[FieldProblem]:
    """Pydantic's validation errors as ``body.email``-style fields with their reasons."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(FieldProblem(field=location or "request", reason=str(error.get("msg"))))
    return problems


async def _problem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    if exc.status >= 500:
        logger.warning("answering %s: %s", exc.status, exc.detail)
    return problem_response(
        request,
        ProblemType(exc.slug, exc.status, exc.title),
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc)
    first = problems[0] if problems else FieldProblem("request", "invalid")
    return problem_response(
        request, VALIDATION, detail=f"{first.field}: {first.reason}", errors=problems
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    problem = _BY_HTTP_STATUS.get(exc.status_code, HTTP_ERROR)
    errors = []
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's answer to a body that does not decode as JSON: name it like every 4xx.
        problem = MALFORMED_BODY
        errors = [FieldProblem(field="body", reason="not valid JSON (or not UTF-8)")]
    return problem_response(
        request,
        problem,
        status=exc.status_code,
        detail=str(exc.detail),
        errors=errors,
        headers=dict(exc.headers or {}),
    )


async def _unstorable_text(request: Request, exc: Exception) -> JSONResponse:
    # Valid JSON and valid per the model, but PostgreSQL text cannot hold it (a NUL
    # character): the client's input, so a 422 naming it, not a 500.
    return problem_response(
        request,
        VALIDATION,
        detail=f"a text value cannot be stored: {exc}",
        errors=[
            FieldProblem(field="body", reason="contains a NUL (U+0000) or unencodable character")
        ],
    )


async def _service_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("backing service unavailable", extra={"path": request.url.path, "err": str(exc)})
    return problem_response(
        request,
        SERVICE_UNAVAILABLE,
        detail="a backing service did not answer; retry shortly",
        headers={"Retry-After": "2"},
    )


# A backing service that drops or refuses connections is a 503 to retry, not a 500.
_BACKING_SERVICE_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailableError,
    RedisError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
    TimeoutError,
)

# PostgreSQL refusing a character of a text value (SQLSTATE 22021, 22P05).
_UNSTORABLE_TEXT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


def install_problem_handlers(
    app: FastAPI,
    *,
    internal_detail: str = "the server failed to answer; the error is logged",
) -> None:
    """Route every error ``app`` can raise to a problem+json answer.

    ``internal_detail`` is the ``detail`` of an unexpected error's 500 (ingest adds that
    nothing of the request was claimed accepted). A :class:`ProblemError` that is also a
    ``ServiceUnavailableError`` keeps its own answer: Starlette picks the handler of the
    first class in the exception's MRO, and :class:`ProblemError` comes first there.
    """

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"path": request.url.path},
        )
        return problem_response(request, INTERNAL, detail=internal_detail)

    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in _BACKING_SERVICE_ERRORS:
        app.add_exception_handler(error, _service_unavailable)
    for error in _UNSTORABLE_TEXT_ERRORS:
        app.add_exception_handler(error, _unstorable_text)
    app.add_exception_handler(Exception, unexpected)
