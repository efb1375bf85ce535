"""Shared request dependencies as ``Annotated`` aliases, so routes read like their contract."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from api.exceptions import NotAuthenticatedError
from api.services import audit
from api.services.principals import Principal, PrincipalKind
from learnstream import apikeys
from learnstream.settings import Settings

# auto_error=False: a missing credential becomes our own 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="User access token or lsk_ API key")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="lsk_ API key")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
RedisDep = Annotated[Redis, Depends(_redis)]


async def _current_principal(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    authorization = f"Bearer {bearer.credentials}" if bearer else None
    presented_key = apikeys.bearer_or_header_key(authorization, x_api_key)
    if presented_key is not None:
        key = await apikeys.authenticate_api_key(pool, presented_key)
        if key is None:
            await audit.record(
                pool,
                tenant_id=None,
                actor=None,
                action=audit.Action.API_KEY_REJECTED,
                outcome=audit.Outcome.DENIED,
                ip=_client_ip(request),
                details={"key_id_prefix": presented_key[:16]},
            )
            raise NotAuthenticatedError(
                "API key is malformed, unknown or revoked",
                field="header.Authorization" if x_api_key is None else "header.X-API-Key",
                reason="invalid API key",
            )
        return Principal(
            tenant_id=key.tenant_id, subject_id=key.key_id, kind=PrincipalKind.CLIENT_APP
        )
    if bearer is not None:
        raise NotAuthenticatedError(
            "bearer token is neither an lsk_ API key nor a valid access token",
            field="header.Authorization",
            reason="invalid bearer token",
        )
    raise NotAuthenticatedError(
        "send an API key (Authorization: Bearer lsk_... or X-API-Key) or a user access token",
        field="header.Authorization",
        reason="missing credentials",
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]
