"""LTI 1.3 launches: third-party login initiation, ID token validation, provisioning.

IMS Security Framework 1.0 §5.1.1 (OIDC third-party initiated login, implicit flow with
``form_post``) and LTI Core 1.3 §5 (required message claims). A launch is refused
(:class:`LaunchRefused`, with the reason) unless:

* ``state`` is one this tool issued at login initiation and not used before;
* the ID token's signature verifies against the platform's JWKS (``kid``; an unknown
  key id refetches the set once: the platform rotated);
* ``iss`` is the registered issuer, ``aud`` holds the tool's client id, ``azp`` is it
  when present or when several audiences, ``exp``/``iat`` hold (60 s leeway);
* ``nonce`` is the one sent with this state, and seen for the first time;
* ``message_type`` is LtiResourceLinkRequest or LtiDeepLinkingRequest, ``version``
  1.3.0, ``deployment_id`` one the tenant registered, ``sub`` present, and the
  message's own required claims (resource_link.id; deep_linking_settings).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from redis.asyncio import Redis

from api.services import accounts
from api.services.lti.platforms import JWKS_CACHE, Platform, find, get
from api.services.principals import Role
from learnstream import redis_keys
from learnstream.db import Queryable
from learnstream.settings import Settings

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPE, VERSION, DEPLOYMENT_ID = f"{LTI}message_type", f"{LTI}version", f"{LTI}deployment_id"
ROLES, CONTEXT, RESOURCE_LINK = f"{LTI}roles", f"{LTI}context", f"{LTI}resource_link"
DEEP_LINKING_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_SERVICE = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
RESOURCE_LINK_REQUEST, DEEP_LINKING_REQUEST = "LtiResourceLinkRequest", "LtiDeepLinkingRequest"
LAUNCH_PATH, LOGIN_PATH = "/v1/lti/launch", "/v1/lti/login"
STATE_TTL_S = 600  # seconds between login initiation and launch
NONCE_TTL_S = 3600  # seconds a used nonce is remembered (longer than any ID token lives)
LEEWAY_S = 60

# LIS roles (LTI Core 1.3 Appendix A) -> Learnstream roles. Never admin: an LMS cannot
# make someone an admin here (admins need MFA and are made by admins).
_LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
ROLE_MAP = {
    f"{_LIS}membership#Instructor": Role.TEACHER,
    f"{_LIS}membership/Instructor#TeachingAssistant": Role.TEACHER,
    f"{_LIS}membership#ContentDeveloper": Role.TEACHER,
    f"{_LIS}membership#Administrator": Role.TEACHER,
    f"{_LIS}institution/person#Instructor": Role.TEACHER,
    f"{_LIS}institution/person#Faculty": Role.TEACHER,
    f"{_LIS}membership#Learner": Role.LEARNER,
    f"{_LIS}institution/person#Student": Role.LEARNER,
    f"{_LIS}institution/person#Learner": Role.LEARNER,
}


class LaunchRefused(Exception):
    """Why a login initiation or launch is refused (answered 400/401 with the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def launch_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + LAUNCH_PATH


async def login_redirect(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    issuer: str,
    login_hint: str,
    target_link_uri: str,
    client_id: str | None,
    lti_message_hint: str | None,
) -> str:
    """The platform's authorization URL for this login initiation (state, nonce kept)."""
    platform = await find(db, issuer=issuer, client_id=client_id)
    if platform is None:
        raise LaunchRefused(f"no platform {issuer!r} is registered with this client id")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    key = redis_keys.redis_key(settings.redis_namespace, "lti-state", state)
    login = {"tenant_id": platform.tenant_id, "platform_id": platform.platform_id, "nonce": nonce}
    await redis.set(key, json.dumps(login), ex=STATE_TTL_S)
    query = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": launch_url(settings),
        "login_hint": login_hint,
        "state": state,
        "nonce": nonce,
    }
    if lti_message_hint:
        query["lti_message_hint"] = lti_message_hint
    return f"{platform.auth_login_url}?{urlencode(query)}"


@dataclass(frozen=True, slots=True)
class Launch:
    """A launch that passed every check."""

    platform: Platform
    claims: dict[str, Any]

    @property
    def message_type(self) -> str:
        return str(self.claims[MESSAGE_TYPE])

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(ROLE_MAP[r] for r in self.claims.get(ROLES, []) if r in ROLE_MAP)


async def validate(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    id_token: str,
    state: str,
    now: int | None = None,
) -> Launch:
    """The launch of ``id_token`` posted with ``state``; LaunchRefused naming the failed check."""
    raw = await redis.getdel(redis_keys.redis_key(settings.redis_namespace, "lti-state", state))
    if raw is None:
        raise LaunchRefused("unknown, expired or used state; launch again from the course")
    login = json.loads(raw)
    platform = await get(db, tenant_id=login["tenant_id"], platform_id=login["platform_id"])
    try:
        kid = jws.extract_compact(id_token.encode()).headers().get("kid")
        keys = await JWKS_CACHE.key_set(platform.jwks_url, kid=kid)
        token = jwt.decode(id_token, keys, algorithms=["RS256"])
    except (JoseError, ValueError) as exc:
        raise LaunchRefused(f"the id_token signature does not verify ({exc})") from exc
    except httpx.HTTPError as exc:
        raise LaunchRefused(f"the platform's JWKS could not be fetched ({exc})") from exc
    claims: dict[str, Any] = dict(token.claims)
    _check_claims(claims, platform, nonce=login["nonce"], now=now or int(time.time()))
    nonce_key = redis_keys.redis_key(settings.redis_namespace, "lti-nonce", claims["nonce"])
    if not await redis.set(nonce_key, "1", nx=True, ex=NONCE_TTL_S):
        raise LaunchRefused("replayed nonce")
    return Launch(platform, claims)


def _check_claims(claims: dict[str, Any], platform: Platform, *, nonce: str, now: int) -> None:
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY_S,
        iss={"essential": True, "value": platform.issuer},
        aud={"essential": True, "value": platform.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise LaunchRefused(f"the id_token's claims do not hold ({exc})") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != platform.client_id:
        raise LaunchRefused("azp is not this tool's client id")
    if claims.get("nonce") != nonce:
        raise LaunchRefused("replayed nonce: not the one sent with this state")
    if claims.get(VERSION) != "1.3.0":
        raise LaunchRefused(f"LTI version {claims.get(VERSION)!r}; this tool speaks 1.3.0")
    if claims.get(DEPLOYMENT_ID) not in platform.deployment_ids:
        raise LaunchRefused(f"unknown deployment {claims.get(DEPLOYMENT_ID)!r}")
    message_type = claims.get(MESSAGE_TYPE)
    if message_type == RESOURCE_LINK_REQUEST:
        if not (claims.get(RESOURCE_LINK) or {}).get("id"):
            raise LaunchRefused("a resource link launch without resource_link.id")
    elif message_type == DEEP_LINKING_REQUEST:
        if not (claims.get(DEEP_LINKING_SETTINGS) or {}).get("deep_link_return_url"):
            raise LaunchRefused("a deep linking request without deep_link_return_url")
    else:
        raise LaunchRefused(f"message type {message_type!r} is not one this tool takes")
    if not isinstance(claims.get(ROLES), list):
        raise LaunchRefused("the roles claim is missing")


def identity_provider(platform: Platform) -> str:
    """The ``user_identities.provider`` of a platform's users (``sub`` is unique per issuer)."""
    return f"lti:{platform.issuer}"


async def provision(db: Queryable, settings: Settings, launch: Launch) -> tuple[str, str | None]:
    """The account of the launching user (made on first launch, no password) and the class
    of the launch's course (made on first launch); (user id, class id or None)."""
    platform, claims = launch.platform, launch.claims
    roles = launch.roles or frozenset({Role.LEARNER})
    user_id = await ensure_user(
        db,
        settings,
        platform,
        subject=str(claims["sub"]),
        email=claims.get("email"),
        name=str(claims.get("name") or ""),
        roles=roles,
    )
    context = claims.get(CONTEXT) or {}
    if not context.get("id"):
        return user_id, None
    class_id = await ensure_class(
        db,
        platform,
        context_id=str(context["id"]),
        title=str(context.get("title") or context.get("label") or context["id"]),
        lineitems_url=(claims.get(AGS_ENDPOINT) or {}).get("lineitems"),
        memberships_url=(claims.get(NRPS_SERVICE) or {}).get("context_memberships_url"),
    )
    member_role = "teacher" if Role.TEACHER in roles else "learner"
    await db.execute(
        "INSERT INTO class_members (tenant_id, class_id, user_id, member_role) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        platform.tenant_id,
        class_id,
        user_id,
        member_role,
    )
    return user_id, class_id


async def ensure_user(
    db: Queryable,
    settings: Settings,
    platform: Platform,
    *,
    subject: str,
    email: Any,
    name: str,
    roles: frozenset[Role],
) -> str:
    """The account linked to (platform, subject); made (no password) if there is none.

    An LMS user never takes over an existing Learnstream account by e-mail: a taken
    address gets a placeholder. Mapped roles are added, never removed.
    """
    provider = identity_provider(platform)
    found = await db.fetchval(
        "SELECT u.id::text FROM user_identities i JOIN users u ON u.id = i.user_id "
        "WHERE i.provider = $1 AND i.subject = $2 AND u.tenant_id = $3",
        provider,
        subject,
        platform.tenant_id,
    )
    if found is None:
        placeholder = (
            f"lti-{hashlib.sha256(f'{provider}|{subject}'.encode()).hexdigest()[:20]}@lti.invalid"
        )
        address = str(email) if isinstance(email, str) and "@" in email else placeholder
        taken = await db.fetchval(
            "SELECT 1 FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
            platform.tenant_id,
            address,
        )
        user = await accounts.create_user(
            db,
            settings,
            tenant_id=platform.tenant_id,
            email_address=placeholder if taken else address,
            password=None,
            display_name=name[:200],
            roles=roles,
            email_verified=True,
            now=_utc_now(),
        )
        await db.execute(
            "INSERT INTO user_identities (user_id, provider, subject, email) "
            "VALUES ($1, $2, $3, $4)",
            user.id,
            provider,
            subject,
            address,
        )
        return user.id
    await db.executemany(
        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(found, r.value) for r in sorted(roles)],
    )
    return str(found)


async def ensure_class(
    db: asyncpg.Pool,
    platform: Platform,
    *,
    context_id: str,
    title: str,
    lineitems_url: str | None,
    memberships_url: str | None,
) -> str:
    """The class of an LMS course (made on first launch); service URLs kept up to date."""
    row = await db.fetchrow(
        "UPDATE lti_contexts SET title = $4, lineitems_url = coalesce($5, lineitems_url), "
        "memberships_url = coalesce($6, memberships_url) "
        "WHERE tenant_id = $1 AND platform_id = $2 AND context_id = $3 RETURNING class_id::text",
        platform.tenant_id,
        platform.platform_id,
        context_id,
        title[:200],
        lineitems_url,
        memberships_url,
    )
    if row is not None:
        return str(row["class_id"])
    class_id = str(uuid.uuid4())
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO classes (tenant_id, class_id, name) VALUES ($1, $2, $3)",
            platform.tenant_id,
            class_id,
            title[:200],
        )
        await conn.execute(
            "INSERT INTO lti_contexts (tenant_id, platform_id, context_id, class_id, title, "
            "lineitems_url, memberships_url) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            platform.tenant_id,
            platform.platform_id,
            context_id,
            class_id,
            title[:200],
            lineitems_url,
            memberships_url,
        )
    return class_id


def _utc_now() -> datetime:
    return datetime.now(UTC)
