"""Errors the API raises on purpose; each becomes an RFC 9457 problem+json answer.

``field`` and ``reason`` name what was wrong, so a client can point at the input
(``body.email``, ``path.user_id``, ``header.Authorization``) and say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from learnstream.exceptions import LearnstreamError


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One offending input: where it is (``body.email``) and why it was refused."""

    field: str
    reason: str


class ApiError(LearnstreamError):
    """Root of every API error; subclasses fix the HTTP status and the problem type."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"
    # Headers every answer of this kind carries (e.g. WWW-Authenticate on 401).
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors or [])
        if field is not None:
            self.errors.insert(0, FieldProblem(field, reason or detail))
        self.headers = {**self.default_headers, **(headers or {})}


class NotAuthenticatedError(ApiError):
    """No credentials, or credentials that did not check out."""

    status = 401
    slug = "not-authenticated"
    title = "Not authenticated"
    default_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="learnstream"'}


class ForbiddenError(ApiError):
    """Authenticated, but this principal may not do this."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFoundError(ApiError):
    """Absent, or present in another tenant (the two are indistinguishable on purpose)."""

    status = 404
    slug = "not-found"
    title = "Not found"


class ConflictError(ApiError):
    """The request clashes with the current state (duplicate, wrong workflow step)."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class InvalidInputError(ApiError):
    """Well-formed but unacceptable input (a cycle, a weak password, a bad token)."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class LockedError(ApiError):
    """The account is locked after repeated failures; the detail says how to unlock."""

    status = 423
    slug = "account-locked"
    title = "Account locked"


class ServiceDownError(ApiError):
    """A backing service did not answer; clients should retry later."""

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"
