"""Single sign-on with OpenID Connect: each tenant configures its own identity providers.

The flow (authorization code with PKCE, OpenID Connect Core 1.0 §3.1):

1. :func:`start` makes ``state``, ``nonce`` and a PKCE ``code_verifier``, keeps them in
   Redis under the state for :data:`LOGIN_TTL_S`, and answers the provider's
   authorization URL (from its discovery document) to redirect the browser to.
2. The provider redirects back to ``/v1/auth/oidc/callback``; :func:`finish` takes the
   state once (GETDEL: a replayed callback finds nothing), trades the code at the token
   endpoint (client_secret_basic + code_verifier) and validates the ID token with
   joserfc: signature against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``iat``,
   ``nonce``, and ``azp`` when several audiences.
3. The identity (issuer, ``sub``) found in ``user_identities`` signs its account in. A
   new identity links to the tenant's account with the same e-mail address only when
   the provider says ``email_verified`` and the tenant allows it (``link_by_email``);
   otherwise it is refused: sign-in never creates accounts.
4. The browser gets a one-time sign-in code in the dashboard URL's fragment (never sent
   to a server); the page trades it at ``POST /v1/auth/oidc/exchange`` for tokens, or
   an MFA challenge when the account has TOTP enrolled.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from redis.asyncio import Redis

from api.exceptions import ConflictError, InvalidInputError, NotAuthenticatedError, NotFoundError
from api.services import audit, mfa, sessions
from learnstream import redis_keys
from learnstream.db import Queryable
from learnstream.settings import Settings

LOGIN_TTL_S = 600  # seconds a browser has to come back from the provider
SIGN_IN_CODE_TTL_S = 60  # seconds the page has to trade its one-time code
ID_TOKEN_LEEWAY_S = 60  # clock skew allowed on exp/iat (seconds)
ID_TOKEN_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
_HTTP_TIMEOUT_S = 10.0
_LOGIN_KIND = "oidc-login"
_CODE_KIND = "oidc-code"
CALLBACK_PATH = "/v1/auth/oidc/callback"


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    """One OpenID provider of a tenant (the client secret stays sealed in the row)."""

    tenant_id: str
    provider_id: str
    display_name: str
    issuer: str
    client_id: str
    link_by_email: bool


class SignInRefused(Exception):
    """Why a finished provider sign-in signs nobody in (shown on the dashboard page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _seal_label(tenant_id: str, provider_id: str) -> str:
    return f"idp:{tenant_id}:{provider_id}"


async def add_provider(
    db: Queryable,
    settings: Settings,
    *,
    provider: IdentityProvider,
    client_secret: str,
    actor_id: str,
) -> None:
    """Register ``provider`` for its tenant; 409 if the id is taken (audited)."""
    if not provider.issuer.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise InvalidInputError(
            "the issuer must be an https URL", field="body.issuer", reason="not https"
        )
    sealed = mfa.seal(
        client_secret,
        user_id=_seal_label(provider.tenant_id, provider.provider_id),
        ring=mfa.keyring(settings),
    )
    status: str = await db.execute(
        """
        INSERT INTO identity_providers (tenant_id, provider_id, display_name, issuer,
                                        client_id, client_secret, link_by_email)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
        """,
        provider.tenant_id,
        provider.provider_id,
        provider.display_name,
        provider.issuer.rstrip("/"),
        provider.client_id,
        sealed,
        provider.link_by_email,
    )
    if status == "INSERT 0 0":
        raise ConflictError(
            "an identity provider with this id exists", field="body.provider_id", reason="taken"
        )
    await audit.record(
        db,
        tenant_id=provider.tenant_id,
        actor=("user", actor_id),
        action=audit.Action.IDENTITY_PROVIDER_ADDED,
        outcome=audit.Outcome.SUCCESS,
        target_id=provider.provider_id,
        details={"issuer": provider.issuer, "link_by_email": provider.link_by_email},
    )


async def remove_provider(db: Queryable, *, tenant_id: str, provider_id: str) -> None:
    status: str = await db.execute(
        "DELETE FROM identity_providers WHERE tenant_id = $1 AND provider_id = $2",
        tenant_id,
        provider_id,
    )
    if status == "DELETE 0":
        raise NotFoundError("no such identity provider", field="path.provider_id")


async def list_providers(db: Queryable, *, tenant_id: str) -> list[IdentityProvider]:
    rows = await db.fetch(
        "SELECT tenant_id, provider_id, display_name, issuer, client_id, link_by_email "
        "FROM identity_providers WHERE tenant_id = $1 ORDER BY display_name",
        tenant_id,
    )
    return [IdentityProvider(**dict(r)) for r in rows]


async def _provider_row(db: Queryable, tenant_id: str, provider_id: str) -> Any:
    row = await db.fetchrow(
        "SELECT * FROM identity_providers WHERE tenant_id = $1 AND provider_id = $2",
        tenant_id,
        provider_id,
    )
    if row is None:
        raise NotFoundError("no such identity provider", field="query.provider_id")
    return row


async def _discover(issuer: str) -> dict[str, Any]:
    """The provider's discovery document; its ``issuer`` must be the configured one."""
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
        response = await client.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    if document.get("issuer") != issuer:
        raise SignInRefused(f"the provider's discovery names issuer {document.get('issuer')!r}")
    return document


def callback_url(settings: Settings) -> str:
    """The redirect URI to register at every provider."""
    return settings.public_base_url.rstrip("/") + CALLBACK_PATH


async def start(
    db: Queryable, redis: Redis, settings: Settings, *, tenant_id: str, provider_id: str
) -> str:
    """The authorization URL to send the browser to (state, nonce and PKCE kept in Redis)."""
    row = await _provider_row(db, tenant_id, provider_id)
    try:
        document = await _discover(row["issuer"])
    except (httpx.HTTPError, ValueError, SignInRefused) as exc:
        raise NotFoundError(
            f"the identity provider does not answer its discovery ({exc})",
            field="query.provider_id",
            reason="provider unavailable",
        ) from exc
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    login = {
        "tenant_id": tenant_id,
        "provider_id": provider_id,
        "nonce": nonce,
        "verifier": verifier,
    }
    key = redis_keys.redis_key(settings.redis_namespace, _LOGIN_KIND, state)
    await redis.set(key, json.dumps(login), ex=LOGIN_TTL_S)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": row["client_id"],
            "redirect_uri": callback_url(settings),
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{document['authorization_endpoint']}?{query}"


async def finish(
    db: Queryable, redis: Redis, settings: Settings, *, state: str, code: str, ip: str | None
) -> str:
    """Validate the provider's answer and link the identity; a one-time sign-in code.

    SignInRefused names why nobody is signed in (unknown or replayed state, a token
    that does not validate, no account to link).
    """
    key = redis_keys.redis_key(settings.redis_namespace, _LOGIN_KIND, state)
    raw = await redis.getdel(key)
    if raw is None:
        raise SignInRefused("this sign-in expired or was used already; start again")
    login = json.loads(raw)
    row = await _provider_row(db, login["tenant_id"], login["provider_id"])
    secret = mfa.open_sealed(
        row["client_secret"],
        user_id=_seal_label(row["tenant_id"], row["provider_id"]),
        ring=mfa.keyring(settings),
    ).secret
    try:
        document = await _discover(row["issuer"])
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
            answer = await client.post(
                document["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": callback_url(settings),
                    "code_verifier": login["verifier"],
                },
                auth=(row["client_id"], secret),
            )
            if answer.status_code != 200:
                raise SignInRefused(f"the provider refused the code ({answer.status_code})")
            tokens = answer.json()
            jwks = (await client.get(document["jwks_uri"])).json()
            claims = validate_id_token(
                tokens["id_token"],
                jwks,
                issuer=row["issuer"],
                client_id=row["client_id"],
                nonce=login["nonce"],
            )
            if "email" not in claims and document.get("userinfo_endpoint"):
                claims = await _with_userinfo(client, document["userinfo_endpoint"], tokens, claims)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise SignInRefused(f"the provider could not be reached ({type(exc).__name__})") from exc
    user_id = await _linked_user(db, row, claims, ip=ip)
    return await issue_sign_in_code(redis, settings, tenant_id=row["tenant_id"], user_id=user_id)


async def issue_sign_in_code(
    redis: Redis, settings: Settings, *, tenant_id: str, user_id: str
) -> str:
    """A one-time code that :func:`exchange` trades for ``user_id``'s tokens (also LTI's)."""
    sign_in_code = secrets.token_urlsafe(32)
    code_key = redis_keys.redis_key(settings.redis_namespace, _CODE_KIND, sign_in_code)
    await redis.set(
        code_key, json.dumps({"tenant_id": tenant_id, "user_id": user_id}), ex=SIGN_IN_CODE_TTL_S
    )
    return sign_in_code


async def _with_userinfo(
    client: httpx.AsyncClient, endpoint: str, tokens: dict[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """``claims`` with the e-mail claims of the UserInfo answer (OIDC Core §5.3: with the
    code flow, scope-requested claims come from there). Its ``sub`` must be the ID token's."""
    answer = await client.get(
        endpoint, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    answer.raise_for_status()
    info = answer.json()
    if info.get("sub") != claims["sub"]:
        raise SignInRefused("the provider's UserInfo names another subject than the ID token")
    return {**claims, **{k: info[k] for k in ("email", "email_verified") if k in info}}


def validate_id_token(
    id_token: str,
    jwks: Any,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of an ID token that passes OpenID Connect Core §3.1.3.7; SignInRefused if not."""
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=ID_TOKEN_ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            now=now if now is not None else int(time.time()),
            leeway=ID_TOKEN_LEEWAY_S,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise SignInRefused(f"the ID token does not validate ({exc})") from exc
    claims: dict[str, Any] = dict(token.claims)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SignInRefused("the ID token names several audiences and another azp")
    return claims


async def _linked_user(db: Queryable, row: Any, claims: dict[str, Any], *, ip: str | None) -> str:
    """The account of the identity; linked now by verified e-mail when the tenant allows it."""
    tenant_id, issuer, subject = row["tenant_id"], row["issuer"], str(claims["sub"])
    found = await db.fetchval(
        "SELECT u.id::text FROM user_identities i JOIN users u ON u.id = i.user_id "
        "WHERE i.provider = $1 AND i.subject = $2 AND u.tenant_id = $3",
        issuer,
        subject,
        tenant_id,
    )
    if found is not None:
        return str(found)
    email = claims.get("email")
    if not row["link_by_email"]:
        raise SignInRefused("no account is linked to this identity; ask your administrator")
    if not email or claims.get("email_verified") is not True:
        raise SignInRefused("the provider did not confirm the e-mail address; nothing to link")
    user_id = await db.fetchval(
        "SELECT id::text FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
        tenant_id,
        email,
    )
    if user_id is None:
        raise SignInRefused("no account has this e-mail address; ask your administrator")
    await db.execute(
        "INSERT INTO user_identities (user_id, provider, subject, email) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING",
        user_id,
        issuer,
        subject,
        email,
    )
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=("user", str(user_id)),
        action=audit.Action.IDENTITY_LINKED,
        outcome=audit.Outcome.SUCCESS,
        target_id=str(user_id),
        ip=ip,
        details={"issuer": issuer, "by": "verified email"},
    )
    return str(user_id)


async def exchange(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    sign_in_code: str,
    ip: str | None,
    now: datetime,
) -> sessions.TokenPair | sessions.MfaChallenge:
    """Tokens for a one-time sign-in code (or an MFA challenge); 401 if unknown or used."""
    key = redis_keys.redis_key(settings.redis_namespace, _CODE_KIND, sign_in_code)
    raw = await redis.getdel(key)
    if raw is None:
        raise NotAuthenticatedError(
            "this sign-in code expired or was used already",
            field="body.code",
            reason="invalid code",
        )
    found = json.loads(raw)
    return await sessions.sign_in_verified_identity(
        db, settings, tenant_id=found["tenant_id"], user_id=found["user_id"], ip=ip, now=now
    )
