"""Single sign-on with OpenID Connect (api/services/oidc.py; set-up in docs/integrations.md).

Browser routes (``/v1/auth/oidc/...``, public, limited per client address like the
other sign-in routes) and the admin routes that register a tenant's providers.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, status
from fastapi.responses import RedirectResponse

from api.deps import AdminUser, ClientIp, LimitedByIp, Now, PoolDep, Public, RedisDep, SettingsDep
from api.schemas.auth import MfaChallengePublic, TokenPairPublic
from api.schemas.oidc import (
    PROVIDER_ID_PATTERN,
    IdentityProviderCreate,
    IdentityProviderPublic,
    ProviderButton,
    SignInCode,
)
from api.services import oidc, sessions

router = APIRouter(tags=["single sign-on"])
TenantQuery = Annotated[str, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
ProviderQuery = Annotated[str, Query(pattern=PROVIDER_ID_PATTERN)]


@router.get(
    "/v1/auth/oidc/providers",
    summary="The sign-in buttons of a tenant",
    dependencies=[Public, LimitedByIp],
)
async def provider_buttons(tenant_id: TenantQuery, pool: PoolDep) -> list[ProviderButton]:
    return [
        ProviderButton(
            provider_id=p.provider_id,
            display_name=p.display_name,
            start_url="/v1/auth/oidc/start?"
            + urlencode({"tenant_id": tenant_id, "provider_id": p.provider_id}),
        )
        for p in await oidc.list_providers(pool, tenant_id=tenant_id)
    ]


@router.get(
    "/v1/auth/oidc/start",
    summary="Go to the identity provider's sign-in",
    dependencies=[Public, LimitedByIp],
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
)
async def start_sign_in(
    tenant_id: TenantQuery,
    provider_id: ProviderQuery,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> RedirectResponse:
    url = await oidc.start(pool, redis, settings, tenant_id=tenant_id, provider_id=provider_id)
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND)


@router.get(
    oidc.CALLBACK_PATH,
    summary="Where the identity provider sends the browser back",
    dependencies=[Public, LimitedByIp],
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
)
async def sign_in_callback(
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    ip: ClientIp,
    state: Annotated[str, Query(max_length=200)] = "",
    code: Annotated[str, Query(max_length=2000)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> RedirectResponse:
    """To the dashboard with a one-time code in the fragment, or the reason for refusal."""
    try:
        if error or not code:
            raise oidc.SignInRefused(f"the provider answered {error or 'no code'}")
        sign_in_code = await oidc.finish(pool, redis, settings, state=state, code=code, ip=ip)
    except oidc.SignInRefused as refused:
        target = f"/dashboard#action=oidc-error&reason={quote(refused.reason)}"
    else:
        target = f"/dashboard#action=oidc&code={sign_in_code}"
    return RedirectResponse(target, status_code=status.HTTP_302_FOUND)


@router.post(
    "/v1/auth/oidc/exchange",
    summary="Trade the one-time sign-in code for tokens",
    dependencies=[Public, LimitedByIp],
)
async def exchange_sign_in_code(
    body: SignInCode, pool: PoolDep, redis: RedisDep, settings: SettingsDep, ip: ClientIp, now: Now
) -> TokenPairPublic | MfaChallengePublic:
    outcome = await oidc.exchange(pool, redis, settings, sign_in_code=body.code, ip=ip, now=now)
    if isinstance(outcome, sessions.MfaChallenge):
        return MfaChallengePublic(mfa_token=outcome.mfa_token)
    return TokenPairPublic(
        access_token=outcome.access_token,
        refresh_token=outcome.refresh_token,
        expires_in=outcome.expires_in_s,
        mfa_verified=outcome.mfa_verified,
    )


def _public(p: oidc.IdentityProvider, settings: SettingsDep) -> IdentityProviderPublic:
    return IdentityProviderPublic(
        provider_id=p.provider_id,
        display_name=p.display_name,
        issuer=p.issuer,
        client_id=p.client_id,
        link_by_email=p.link_by_email,
        redirect_uri=oidc.callback_url(settings),
    )


@router.get("/v1/tenants/me/identity-providers", summary="Your tenant's OpenID providers (admin)")
async def list_identity_providers(
    admin: AdminUser, pool: PoolDep, settings: SettingsDep
) -> list[IdentityProviderPublic]:
    providers = await oidc.list_providers(pool, tenant_id=admin.tenant_id)
    return [_public(p, settings) for p in providers]


@router.post(
    "/v1/tenants/me/identity-providers",
    status_code=status.HTTP_201_CREATED,
    summary="Add an OpenID provider (admin, audited)",
)
async def add_identity_provider(
    body: IdentityProviderCreate, admin: AdminUser, pool: PoolDep, settings: SettingsDep
) -> IdentityProviderPublic:
    provider = oidc.IdentityProvider(
        tenant_id=admin.tenant_id,
        provider_id=body.provider_id,
        display_name=body.display_name,
        issuer=body.issuer.rstrip("/"),
        client_id=body.client_id,
        link_by_email=body.link_by_email,
    )
    await oidc.add_provider(
        pool,
        settings,
        provider=provider,
        client_secret=body.client_secret.get_secret_value(),
        actor_id=admin.subject_id,
    )
    return _public(provider, settings)


@router.delete(
    "/v1/tenants/me/identity-providers/{provider_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an OpenID provider (admin)",
)
async def remove_identity_provider(provider_id: str, admin: AdminUser, pool: PoolDep) -> None:
    await oidc.remove_provider(pool, tenant_id=admin.tenant_id, provider_id=provider_id)
