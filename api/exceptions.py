"""Errors the API raises on purpose; each becomes an RFC 9457 problem+json answer.

``field`` and ``reason`` name what was wrong, so a client can point at the input
(``body.email``, ``path.user_id``, ``header.Authorization``) and say why. Rendering and
the slug set are the kernel's (learnstream/problems.py), shared with ingest.
"""

from __future__ import annotations

from typing import ClassVar

from learnstream import problems
from learnstream.problems import FieldProblem, ProblemError

__all__ = [
    "ApiError",
    "ConflictError",
    "FieldProblem",
    "ForbiddenError",
    "InvalidInputError",
    "LockedError",
    "NotAuthenticatedError",
    "NotFoundError",
    "ServiceDownError",
]


class ApiError(ProblemError):
    """Root of every API error; subclasses fix the HTTP status and the problem type."""


class NotAuthenticatedError(ApiError):
    """No credentials, or credentials that did not check out."""

    status = problems.NOT_AUTHENTICATED.status
    slug = problems.NOT_AUTHENTICATED.slug
    title = problems.NOT_AUTHENTICATED.title
    default_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="learnstream"'}


class ForbiddenError(ApiError):
    """Authenticated, but this principal may not do this."""

    status = problems.FORBIDDEN.status
    slug = problems.FORBIDDEN.slug
    title = problems.FORBIDDEN.title


class NotFoundError(ApiError):
    """Absent, or present in another tenant (the two are indistinguishable on purpose)."""

    status = problems.NOT_FOUND.status
    slug = problems.NOT_FOUND.slug
    title = problems.NOT_FOUND.title


class ConflictError(ApiError):
    """The request clashes with the current state (duplicate, wrong workflow step)."""

    status = problems.CONFLICT.status
    slug = problems.CONFLICT.slug
    title = problems.CONFLICT.title


class InvalidInputError(ApiError):
    """Well-formed but unacceptable input (a cycle, a weak password, a bad token)."""

    status = problems.INVALID_INPUT.status
    slug = problems.INVALID_INPUT.slug
    title = problems.INVALID_INPUT.title


class LockedError(ApiError):
    """The account is locked after repeated failures; the detail says how to unlock."""

    status = problems.ACCOUNT_LOCKED.status
    slug = problems.ACCOUNT_LOCKED.slug
    title = problems.ACCOUNT_LOCKED.title


class ServiceDownError(ApiError):
    """A backing service did not answer; clients should retry later."""

    status = problems.SERVICE_UNAVAILABLE.status
    slug = problems.SERVICE_UNAVAILABLE.slug
    title = problems.SERVICE_UNAVAILABLE.title
