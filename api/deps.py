"""Shared request dependencies as ``Annotated`` aliases, so routes read like their contract.

Callers authenticate in one of two ways, both in the Authorization header:
``Bearer lsk_...`` (or ``X-API-Key``) for client apps, ``Bearer <JWT>`` for users.

Every route declares who may call it with exactly one of the guards below (an alias
such as ``AdminUser``, ``allow(policy)``, ``CurrentUser`` or ``Public``); each carries
its :class:`api.services.access.Policy` as ``access_policy``, which
tests/unit/test_route_policies.py looks for on every route. ``CurrentPrincipal`` only
authenticates: a route must not take it without a guard.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from api.exceptions import NotAuthenticatedError
from api.hardening import IP_LIMIT_COUNTED
from api.services import access, audit, rate_limits, token_versions, tokens
from api.services.email import EmailSender
from api.services.events import EventPublisher
from api.services.principals import Principal, PrincipalKind, Role
from learnstream import apikeys
from learnstream.redis_keys import id_path
from learnstream.settings import Settings

# auto_error=False: a missing credential becomes our own 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="User access token (JWT) or lsk_ API key")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="lsk_ API key")


# Every dependency is ``async def``, even one that only reads app.state: FastAPI runs a
# plain ``def`` in its threadpool, a thread hop per request for an attribute read
# (tests/unit/test_request_dependencies.py).
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


async def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def _email_sender(request: Request) -> EmailSender:
    sender: EmailSender = request.app.state.email_sender
    return sender


async def _publisher(request: Request) -> EventPublisher:
    publisher: EventPublisher = request.app.state.publisher
    return publisher


def _ip_of(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _client_ip(request: Request) -> str | None:
    return _ip_of(request)


async def utc_now() -> datetime:
    """The request's clock; services take ``now`` as an argument so tests can move time."""
    return datetime.now(UTC)


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
RedisDep = Annotated[Redis, Depends(_redis)]
EmailSenderDep = Annotated[EmailSender, Depends(_email_sender)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
ClientIp = Annotated[str | None, Depends(_client_ip)]
Now = Annotated[datetime, Depends(utc_now)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


async def _user_claims(
    bearer: BearerDep, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> tokens.AccessClaims:
    if bearer is None or bearer.credentials.startswith(apikeys.KEY_PREFIX):
        raise NotAuthenticatedError(
            "sign in and send the access token as Authorization: Bearer <token>",
            field="header.Authorization",
            reason="user access token required",
        )
    claims = tokens.decode_access_token(bearer.credentials, settings=settings)
    # A valid signature is not enough: the account must exist in the token's tenant, be
    # active, and not have had a security event since the token was issued (one cached
    # Redis GET; api/services/token_versions.py).
    current = await token_versions.current(
        pool, redis, settings, tenant_id=claims.tenant_id, user_id=claims.user_id
    )
    if claims.token_version != current:
        raise NotAuthenticatedError(
            "this access token has ended (signed out, password reset, role change, or the "
            "account is gone); refresh it or sign in again",
            field="header.Authorization",
            reason="session ended",
        )
    return claims


UserClaims = Annotated[tokens.AccessClaims, Depends(_user_claims)]


async def _current_principal(
    request: Request,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    bearer: BearerDep,
    x_api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    authorization = f"Bearer {bearer.credentials}" if bearer else None
    presented_key = apikeys.bearer_or_header_key(authorization, x_api_key)
    if presented_key is not None:
        key = await apikeys.authenticate_api_key(pool, presented_key)
        if key is None:
            # Anyone can send bogus keys at will: one row per client IP and key id per
            # window (and a few per IP), the rest counted (attack review L3).
            ip = _ip_of(request)
            await audit.record_throttled(
                pool,
                redis,
                audit.Throttle(
                    settings.redis_namespace,
                    settings.api_audit_window_s,
                    settings.api_audit_rows_per_source,
                ),
                source=ip or "unknown",
                subject=presented_key[:16],
                now_s=time.time(),
                tenant_id=None,
                actor=None,
                action=audit.Action.API_KEY_REJECTED,
                outcome=audit.Outcome.DENIED,
                ip=ip,
                details={"key_id_prefix": presented_key[:16]},
            )
            raise NotAuthenticatedError(
                "API key is malformed, unknown or revoked",
                field="header.Authorization" if x_api_key is None else "header.X-API-Key",
                reason="invalid API key",
            )
        return Principal(
            tenant_id=key.tenant_id,
            subject_id=key.key_id,
            kind=PrincipalKind.CLIENT_APP,
            scopes=key.scopes,
        )
    if bearer is None:
        raise NotAuthenticatedError(
            "send an API key (Authorization: Bearer lsk_... or X-API-Key) or a user access token",
            field="header.Authorization",
            reason="missing credentials",
        )
    return (await _user_claims(bearer, pool, redis, settings)).principal()


async def _limited_principal(
    principal: Annotated[Principal, Depends(_current_principal)],
    redis: RedisDep,
    settings: SettingsDep,
) -> Principal:
    kind = "API key" if principal.is_client_app else "user"
    decision = await rate_limits.hit(
        redis,
        namespace=settings.redis_namespace,
        bucket=f"{principal.kind.value}:{id_path(principal.tenant_id, principal.subject_id)}",
        limit=settings.api_rate_limit_per_minute,
        now_s=time.time(),
    )
    if not decision.allowed:
        raise rate_limits.refuse(decision, bucket_kind=kind)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_limited_principal)]


async def _limit_by_ip(request: Request, redis: RedisDep, settings: SettingsDep) -> None:
    if request.scope.get(IP_LIMIT_COUNTED):
        return  # counted before the body was read (api.hardening.LimitAuthByAddress)
    decision = await rate_limits.hit(
        redis,
        namespace=settings.redis_namespace,
        bucket=f"ip:{_ip_of(request) or 'unknown'}",
        limit=settings.api_auth_rate_limit_per_minute,
        now_s=time.time(),
    )
    if not decision.allowed:
        raise rate_limits.refuse(decision, bucket_kind="client address")


# For unauthenticated endpoints that check secrets (login, reset, verification):
# per-IP limits slow credential stuffing that per-account lockout cannot see.
LimitedByIp = Depends(_limit_by_ip)


class _SignedInUser:
    """Any signed-in user (a user access token, never an API key), rate-limited."""

    access_policy = access.SIGNED_IN

    async def __call__(
        self, claims: UserClaims, redis: RedisDep, settings: SettingsDep
    ) -> Principal:
        return await _limited_principal(claims.principal(), redis, settings)


class _SignedInClaims:
    """The claims of any signed-in user's access token (for sign-out)."""

    access_policy = access.SIGNED_IN

    async def __call__(
        self, bearer: BearerDep, pool: PoolDep, redis: RedisDep, settings: SettingsDep
    ) -> tokens.AccessClaims:
        return await _user_claims(bearer, pool, redis, settings)


CurrentUser = Annotated[Principal, Depends(_SignedInUser())]
SignedInClaims = Annotated[tokens.AccessClaims, Depends(_SignedInClaims())]


class RouteGuard:
    """The dependency enforcing one route's :class:`access.Policy` (403, audited)."""

    def __init__(self, policy: access.Policy) -> None:
        self.access_policy = policy

    async def __call__(self, principal: CurrentPrincipal, pool: PoolDep) -> Principal:
        await access.ensure_allowed(pool, principal, self.access_policy)
        return principal


class _PublicRoute:
    """Declares a route open to anyone; checks nothing."""

    access_policy = access.PUBLIC

    async def __call__(self) -> None:
        return None


def allow(policy: access.Policy) -> RouteGuard:
    """The guard of a route open to ``policy``: ``Annotated[Principal, Depends(allow(p))]``."""
    return RouteGuard(policy)


def require_roles(*roles: Role) -> RouteGuard:
    """A guard admitting users holding one of ``roles`` (MFA-checked where required)."""
    names = ", ".join(sorted(roles))
    return RouteGuard(access.Policy(names, roles=frozenset(roles)))


# A route with no caller to check (sign-in, health, the static page) says so.
Public = Depends(_PublicRoute())
AdminUser = Annotated[Principal, Depends(allow(access.ADMIN))]
TeacherOrAdmin = Annotated[Principal, Depends(allow(access.TEACHER_OR_ADMIN))]
Editor = Annotated[Principal, Depends(allow(access.EDITOR))]
ContentStaff = Annotated[Principal, Depends(allow(access.CONTENT_STAFF))]
Learner = Annotated[Principal, Depends(allow(access.LEARNER))]
Operator = Annotated[Principal, Depends(allow(access.OPERATOR))]
PlatformOperator = Annotated[Principal, Depends(allow(access.PLATFORM_OPERATOR))]
CatalogueReader = Annotated[Principal, Depends(allow(access.CATALOGUE_READ))]
LearnerViewer = Annotated[Principal, Depends(allow(access.LEARNER_VIEWS))]
LearnerActor = Annotated[Principal, Depends(allow(access.LEARNER_ACTIVITY))]
LearnerAccount = Annotated[Principal, Depends(allow(access.LEARNER_ACCOUNT))]
