"""Request dependencies as ``Annotated`` aliases, so routes read like their contract.

Everything lives on ``app.state`` (set by the lifespan in :mod:`ingest.app`), so a
test can run the lifespan itself and call the app through ASGITransport.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ingest.apikeys import CachedApiKeyAuthenticator
from ingest.batch import BatchIngestor
from ingest.exceptions import FieldProblem, ForbiddenError, NotAuthenticatedError
from ingest.metrics import IngestMetrics
from learnstream import apikeys
from learnstream.apikeys import ApiKey, Scope
from learnstream.settings import Settings

# auto_error=False: a missing key becomes our own 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="API key: Authorization: Bearer lsk_...")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key lsk_...")


# Every dependency is ``async def``, even one that only reads app.state: FastAPI runs a
# plain ``def`` in its threadpool, a thread hop per request for an attribute read
# (tests/unit/test_request_dependencies.py).
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> IngestMetrics:
    metrics: IngestMetrics = request.app.state.metrics
    return metrics


async def _ingestor(request: Request) -> BatchIngestor:
    ingestor: BatchIngestor = request.app.state.ingestor
    return ingestor


async def _authenticator(request: Request) -> CachedApiKeyAuthenticator:
    authenticator: CachedApiKeyAuthenticator = request.app.state.authenticator
    return authenticator


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[IngestMetrics, Depends(_metrics)]
IngestorDep = Annotated[BatchIngestor, Depends(_ingestor)]
AuthenticatorDep = Annotated[CachedApiKeyAuthenticator, Depends(_authenticator)]


async def _current_api_key(
    authenticator: AuthenticatorDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key_header)],
) -> ApiKey:
    authorization = f"Bearer {bearer.credentials}" if bearer else None
    presented = apikeys.bearer_or_header_key(authorization, x_api_key)
    field = "header.X-API-Key" if x_api_key else "header.Authorization"
    if presented is None:
        raise NotAuthenticatedError(
            "send an API key as `Authorization: Bearer lsk_...` or `X-API-Key: lsk_...`",
            errors=[FieldProblem(field, "missing API key")],
        )
    key = await authenticator.authenticate(presented)
    if key is None:
        raise NotAuthenticatedError(
            "the API key is malformed, unknown or revoked",
            errors=[FieldProblem(field, "invalid API key")],
        )
    return key


CurrentApiKey = Annotated[ApiKey, Depends(_current_api_key)]


class KeyScopeGuard:
    """A dependency admitting an API key that holds ``scope``: the route's access policy.

    ``access_policy`` is what tests/unit/test_route_policies.py looks for: every route
    of both apps declares who may call it.
    """

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.access_policy = f"API key with scope {scope.value}"

    async def __call__(self, key: CurrentApiKey) -> ApiKey:
        if self.scope not in key.scopes:
            field = "header.Authorization"
            raise ForbiddenError(
                f"this API key lacks the scope {self.scope.value}; issue one with "
                f"`python -m ingest.apikeys create --scope {self.scope.value}`",
                errors=[FieldProblem(field, f"missing scope {self.scope.value}")],
            )
        return key


class PublicRoute:
    """A dependency that checks nothing: the route's declared policy is "anyone"."""

    access_policy = "public"

    async def __call__(self) -> None:
        return None


def basic_auth_key(authorization: str | None) -> str | None:
    """The API key in ``Authorization: Basic base64(user:password)``, as LRS clients send.

    The key is the password, or the user name when the password is empty (clients
    differ in where they put a single secret). None for any other header.
    """
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


class LrsClientGuard:
    """The guard of the xAPI endpoint: an API key with ``events:write``, sent the way
    LRS clients authenticate (``Basic`` with the key as password, or ``Bearer``)."""

    access_policy = f"API key with scope {Scope.EVENTS_WRITE.value} (Basic or Bearer)"

    async def __call__(self, request: Request, authenticator: AuthenticatorDep) -> ApiKey:
        authorization = request.headers.get("authorization")
        presented = basic_auth_key(authorization) or apikeys.bearer_or_header_key(
            authorization, request.headers.get("x-api-key")
        )
        if presented is None:
            raise NotAuthenticatedError(
                "send the API key as `Authorization: Basic base64(<any name>:lsk_...)` "
                "or `Authorization: Bearer lsk_...`",
                errors=[FieldProblem("header.Authorization", "missing API key")],
            )
        key = await authenticator.authenticate(presented)
        if key is None:
            raise NotAuthenticatedError(
                "the API key is malformed, unknown or revoked",
                errors=[FieldProblem("header.Authorization", "invalid API key")],
            )
        return await KeyScopeGuard(Scope.EVENTS_WRITE)(key)


EventWriter = Annotated[ApiKey, Depends(KeyScopeGuard(Scope.EVENTS_WRITE))]
LrsClient = Annotated[ApiKey, Depends(LrsClientGuard())]
Public = Depends(PublicRoute())
