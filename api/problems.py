"""RFC 9457 problem details: every error answer is ``application/problem+json``.

Besides the standard members (type, title, status, detail, instance) each answer
carries ``errors``: a list of ``{"field": ..., "reason": ...}`` naming the input
that was refused, e.g. ``{"field": "body.email", "reason": "value is not a valid email"}``.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.exceptions import ApiError, FieldProblem
from learnstream.exceptions import ServiceUnavailableError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger(__name__)

# Titles for the plain HTTP errors Starlette raises itself (unknown route, wrong method).
_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 401: "Not authenticated"}


def problem_type(slug: str) -> str:
    """The problem ``type`` URI; a URN, because it names a kind of error, not a page."""
    return f"urn:learnstream:problem:{slug}"


def problem_body(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    errors: list[FieldProblem] | None = None,
) -> dict[str, Any]:
    """The JSON members of one problem answer."""
    return {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "errors": [{"field": e.field, "reason": e.reason} for e in errors or []],
    }


def problem_response(
    request: Request,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response for ``request``."""
    body = problem_body(
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def validation_problems(exc: RequestValidationError) -> list[FieldProblem]:
    """Pydantic's validation errors as ``body.email``-style fields with their reasons."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(FieldProblem(field=location or "request", reason=str(error.get("msg"))))
    return problems


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(
        request,
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc)
    first = problems[0] if problems else FieldProblem("request", "invalid")
    return problem_response(
        request,
        status=422,
        slug="validation",
        title="Request validation failed",
        detail=f"{first.field}: {first.reason}",
        errors=problems,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _HTTP_TITLES.get(exc.status_code, "HTTP error")
    errors = None
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's answer to a body that does not decode as JSON: name it like every 4xx.
        errors = [FieldProblem(field="body", reason="not valid JSON (or not UTF-8)")]
    return problem_response(
        request,
        status=exc.status_code,
        slug=title.lower().replace(" ", "-"),
        title=title,
        detail=str(exc.detail),
        errors=errors,
        headers=dict(exc.headers or {}),
    )


async def _unstorable_text(request: Request, exc: Exception) -> JSONResponse:
    # Valid JSON and valid per the model, but PostgreSQL text cannot hold it (a NUL
    # character): the client's input, so a 422 naming it, not a 500.
    return problem_response(
        request,
        status=422,
        slug="validation",
        title="Request validation failed",
        detail=f"a text value cannot be stored: {exc}",
        errors=[
            FieldProblem(field="body", reason="contains a NUL (U+0000) or unencodable character")
        ],
    )


async def _service_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("backing service unavailable", extra={"path": request.url.path, "err": str(exc)})
    return problem_response(
        request,
        status=503,
        slug="service-unavailable",
        title="Service unavailable",
        detail="a backing service did not answer; retry shortly",
        headers={"Retry-After": "2"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem_response(
        request,
        status=500,
        slug="internal",
        title="Internal error",
        detail="the server failed to answer; the error is logged",
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


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to a problem+json answer."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in _BACKING_SERVICE_ERRORS:
        app.add_exception_handler(error, _service_unavailable)
    for error in _UNSTORABLE_TEXT_ERRORS:
        app.add_exception_handler(error, _unstorable_text)
    app.add_exception_handler(Exception, _unexpected)
