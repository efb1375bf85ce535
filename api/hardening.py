"""HTTP hardening of the read API, applied as ASGI middleware before any route runs.

* Body limits per route (:func:`body_limits`): counted while the body streams in
  (``learnstream.asgi.LimitRequestBody``), so a huge body is refused with 413 after
  about its limit, never buffered whole.
* The per-address limit of the unauthenticated ``/v1/auth/*`` routes
  (:class:`LimitAuthByAddress`) counts the request before its body is read or
  validated, so a flood of junk bodies costs one Redis round trip each.
* Security headers by path (:func:`security_headers`): a strict page policy for the
  dashboard, the API policy for everything else.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.services import rate_limits
from learnstream import problems
from learnstream.asgi import API_SECURITY_HEADERS, BodyLimits, api_security_headers
from learnstream.problems import ProblemType, send_problem
from learnstream.settings import Settings

AUTH_PREFIX = "/v1/auth/"
IMPORT_PATH = "/v1/content/import"
# Set in the ASGI scope once the auth request was counted, so the route dependency
# (api.deps.LimitedByIp) does not count it a second time.
IP_LIMIT_COUNTED = "learnstream.ip_limit_counted"

# The dashboard page and its assets: scripts, styles and data from this origin only,
# no inline script or style, no plugins, no framing, forms post to this origin.
DASHBOARD_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", DASHBOARD_CSP),
    *(header for header in API_SECURITY_HEADERS if header[0] != b"content-security-policy"),
)


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of an answer to ``path``."""
    if path == "/dashboard" or path.startswith("/static/"):
        return _PAGE_HEADERS
    return api_security_headers(path)


def body_limits(settings: Settings) -> BodyLimits:
    """Request body limits (bytes): the import, the unauthenticated auth routes, the rest."""
    return BodyLimits(
        settings.api_max_body_bytes,
        {
            IMPORT_PATH: settings.api_max_import_bytes,
            AUTH_PREFIX: settings.api_max_auth_body_bytes,
        },
    )


class LimitAuthByAddress:
    """Counts each ``/v1/auth/*`` request against its client address's per-minute window
    (``api_auth_rate_limit_per_minute``) before the app reads the body: 429 with
    Retry-After over the limit, 503 if Redis does not answer. Uses the app's Redis
    client (``app.state.redis``, opened by the lifespan)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(AUTH_PREFIX):
            await self.app(scope, receive, send)
            return
        redis: Redis | None = getattr(_state_of(scope), "redis", None)
        if redis is None:  # no lifespan ran: the route dependency counts instead
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            decision = await rate_limits.hit(
                redis,
                namespace=self.settings.redis_namespace,
                bucket=f"ip:{client[0] if client else 'unknown'}",
                limit=self.settings.api_auth_rate_limit_per_minute,
                now_s=time.time(),
            )
        except (RedisError, ConnectionError, TimeoutError):
            await send_problem(
                send,
                scope,
                problems.SERVICE_UNAVAILABLE,
                detail="a backing service did not answer; retry shortly",
                headers=[(b"retry-after", b"2")],
            )
            return
        if not decision.allowed:
            refusal = rate_limits.refuse(decision, bucket_kind="client address")
            await send_problem(
                send,
                scope,
                ProblemType(refusal.slug, refusal.status, refusal.title),
                detail=refusal.detail,
                errors=refusal.errors,
                headers=[(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()],
            )
            return
        scope[IP_LIMIT_COUNTED] = True
        await self.app(scope, receive, send)


def _state_of(scope: Scope) -> Any:
    app = scope.get("app")
    return getattr(app, "state", None)
