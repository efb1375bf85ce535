"""LTI Advantage calls of the tool: Deep Linking responses, AGS scores, NRPS roster sync.

Service calls take an access token from the platform's token endpoint with the OAuth 2
client-credentials grant and a JWT client assertion signed by the tool's key (IMS
Security Framework §4.1, RFC 7523). Calls are retried on connection errors and 5xx
answers (:data:`ATTEMPTS` tries, doubling pauses from :data:`FIRST_PAUSE_S`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jwt

from api.exceptions import InvalidInputError, NotFoundError, ServiceDownError
from api.services.lti import keys
from api.services.lti.launch import (
    DEEP_LINKING_SETTINGS,
    DEPLOYMENT_ID,
    LTI,
    ROLE_MAP,
    ensure_user,
    identity_provider,
)
from api.services.lti.platforms import Platform, get
from api.services.principals import Role
from learnstream.db import Queryable
from learnstream.settings import Settings

AGS_LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
ATTEMPTS = 3
FIRST_PAUSE_S = 0.2
_HTTP_TIMEOUT_S = 10.0
_JWT_TTL_S = 300


async def _signed(db: Queryable, settings: Settings, claims: dict[str, Any]) -> str:
    key = await keys.signing_key(db, settings, now=datetime.now(UTC))
    return jwt.encode({"alg": "RS256", "kid": str(key.kid), "typ": "JWT"}, claims, key)


async def deep_linking_response(
    db: Queryable,
    settings: Settings,
    platform: Platform,
    *,
    request_claims: dict[str, Any],
    skills: Sequence[tuple[str, str]],
) -> tuple[str, str]:
    """(return URL, signed LtiDeepLinkingResponse JWT) placing one link per (skill id, name).

    Each content item is an ``ltiResourceLink`` to the tool's launch URL with the
    skill as a custom parameter and a line item (score maximum 1) for AGS.
    """
    dl = request_claims[DEEP_LINKING_SETTINGS]
    now = int(time.time())
    items = [
        {
            "type": "ltiResourceLink",
            "title": name,
            "url": settings.public_base_url.rstrip("/") + "/v1/lti/launch",
            "custom": {"skill_id": skill_id},
            "lineItem": {
                "scoreMaximum": 1,
                "label": f"Mastery: {name}",
                "resourceId": skill_id,
                "tag": "learnstream-mastery",
            },
        }
        for skill_id, name in skills
    ]
    claims = {
        "iss": platform.client_id,
        "aud": [platform.issuer],
        "iat": now,
        "exp": now + _JWT_TTL_S,
        "nonce": uuid.uuid4().hex,
        f"{LTI}message_type": "LtiDeepLinkingResponse",
        f"{LTI}version": "1.3.0",
        DEPLOYMENT_ID: request_claims[DEPLOYMENT_ID],
        "https://purl.imsglobal.org/spec/lti-dl/claim/content_items": items,
    }
    if "data" in dl:
        claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] = dl["data"]
    return str(dl["deep_link_return_url"]), await _signed(db, settings, claims)


async def access_token(
    db: Queryable,
    settings: Settings,
    platform: Platform,
    client: httpx.AsyncClient,
    scopes: list[str],
) -> str:
    """A bearer token for ``scopes`` from the platform (client credentials + JWT assertion)."""
    now = int(time.time())
    assertion = await _signed(
        db,
        settings,
        {
            "iss": platform.client_id,
            "sub": platform.client_id,
            "aud": platform.auth_token_url,
            "iat": now,
            "exp": now + _JWT_TTL_S,
            "jti": str(uuid.uuid4()),
        },
    )
    answer = await _call(
        client,
        "POST",
        platform.auth_token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": " ".join(scopes),
        },
    )
    token: str = answer.json()["access_token"]
    return token


async def _call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One platform call, retried on connection errors and 5xx; 503 when it keeps failing."""
    pause = FIRST_PAUSE_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}"
        else:
            if answer.status_code < 500:
                if answer.status_code >= 400:
                    raise InvalidInputError(
                        f"the platform refused {method} {url}: {answer.status_code} "
                        f"{answer.text[:200]}",
                        field="platform",
                        reason="refused",
                    )
                return answer
            failure = f"status {answer.status_code}"
        if attempt < ATTEMPTS:
            await asyncio.sleep(pause)
            pause *= 2
    raise ServiceDownError(f"the platform did not answer {method} {url} ({failure})")


async def _context(db: Queryable, *, tenant_id: str, class_id: str) -> Any:
    row = await db.fetchrow(
        "SELECT * FROM lti_contexts WHERE tenant_id = $1 AND class_id::text = $2",
        tenant_id,
        class_id,
    )
    if row is None:
        raise NotFoundError("this class was not made by an LTI launch", field="path.class_id")
    return row


async def publish_mastery(
    db: Queryable, settings: Settings, *, tenant_id: str, class_id: str, skill_id: str
) -> int:
    """Post each learner's mastery of ``skill_id`` (p in [0, 1]) to the course gradebook.

    The line item (resourceId = skill id) is created once and reused; each score carries
    the time it was computed. Returns how many scores were posted.
    """
    context = await _context(db, tenant_id=tenant_id, class_id=class_id)
    if not context["lineitems_url"]:
        raise InvalidInputError(
            "the platform granted no Assignment and Grade Services for this course",
            field="path.class_id",
            reason="no AGS",
        )
    platform = await get(db, tenant_id=tenant_id, platform_id=context["platform_id"])
    learners = await db.fetch(
        """
        SELECT i.subject, coalesce(m.p_mastery, 0) AS p
        FROM class_members cm
        JOIN user_identities i ON i.user_id = cm.user_id AND i.provider = $4
        JOIN users u ON u.id = cm.user_id
        LEFT JOIN skill_mastery m ON m.tenant_id = cm.tenant_id
             AND m.user_id = coalesce(u.learner_id, u.id::text) AND m.skill_id = $3
        WHERE cm.tenant_id = $1 AND cm.class_id::text = $2 AND cm.member_role = 'learner'
        ORDER BY i.subject
        """,
        tenant_id,
        class_id,
        skill_id,
        identity_provider(platform),
    )
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
        token = await access_token(
            db, settings, platform, client, [AGS_LINEITEM_SCOPE, AGS_SCORE_SCOPE]
        )
        auth = {"Authorization": f"Bearer {token}"}
        lineitem = await _line_item(db, client, auth, context, skill_id=skill_id)
        stamp = datetime.now(UTC).isoformat()
        for learner in learners:
            await _call(
                client,
                "POST",
                f"{lineitem.split('?')[0]}/scores",
                json={
                    "userId": learner["subject"],
                    "scoreGiven": round(float(learner["p"]), 4),
                    "scoreMaximum": 1,
                    "activityProgress": "Completed",
                    "gradingProgress": "FullyGraded",
                    "timestamp": stamp,
                    "comment": "Learnstream mastery estimate",
                },
                headers={**auth, "Content-Type": "application/vnd.ims.lis.v1.score+json"},
            )
    return len(learners)


async def _line_item(
    db: Queryable, client: httpx.AsyncClient, auth: dict[str, str], context: Any, *, skill_id: str
) -> str:
    """The line item URL of (course, skill): stored, else found by resource_id, else made."""
    stored: str | None = await db.fetchval(
        "SELECT lineitem_url FROM lti_line_items WHERE tenant_id = $1 AND platform_id = $2 "
        "AND context_id = $3 AND skill_id = $4",
        context["tenant_id"],
        context["platform_id"],
        context["context_id"],
        skill_id,
    )
    if stored:
        return stored
    container = "application/vnd.ims.lis.v2.lineitemcontainer+json"
    listed = await _call(
        client,
        "GET",
        context["lineitems_url"],
        params={"resource_id": skill_id},
        headers={**auth, "Accept": container},
    )
    found = [i["id"] for i in listed.json() if i.get("resourceId") == skill_id]
    if found:
        url = str(found[0])
    else:
        made = await _call(
            client,
            "POST",
            context["lineitems_url"],
            json={
                "scoreMaximum": 1,
                "label": f"Mastery: {skill_id}",
                "resourceId": skill_id,
                "tag": "learnstream-mastery",
            },
            headers={**auth, "Content-Type": "application/vnd.ims.lis.v2.lineitem+json"},
        )
        url = str(made.json()["id"])
    await db.execute(
        "INSERT INTO lti_line_items (tenant_id, platform_id, context_id, skill_id, lineitem_url) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        context["tenant_id"],
        context["platform_id"],
        context["context_id"],
        skill_id,
        url,
    )
    return url


async def sync_roster(db: Queryable, settings: Settings, *, tenant_id: str, class_id: str) -> int:
    """Provision every active member of the course (NRPS) into the class; members the
    platform no longer lists as active leave the class. Returns the active members."""
    context = await _context(db, tenant_id=tenant_id, class_id=class_id)
    if not context["memberships_url"]:
        raise InvalidInputError(
            "the platform granted no Names and Role Provisioning for this course",
            field="path.class_id",
            reason="no NRPS",
        )
    platform = await get(db, tenant_id=tenant_id, platform_id=context["platform_id"])
    members: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
        token = await access_token(db, settings, platform, client, [NRPS_SCOPE])
        url: str | None = context["memberships_url"]
        while url:  # pages linked by Link: <...>; rel="next"
            page = await _call(
                client,
                "GET",
                url,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/vnd.ims.lti-nrps.v2.membershipcontainer+json",
                },
            )
            members += page.json()["members"]
            url = page.links.get("next", {}).get("url")
    active: dict[str, str] = {}
    for member in members:
        if member.get("status", "Active") != "Active":
            continue
        roles = frozenset(ROLE_MAP[r] for r in member.get("roles", []) if r in ROLE_MAP)
        roles = roles or frozenset({Role.LEARNER})
        user_id = await ensure_user(
            db,
            settings,
            platform,
            subject=str(member["user_id"]),
            email=member.get("email"),
            name=str(member.get("name") or ""),
            roles=roles,
        )
        active[user_id] = "teacher" if Role.TEACHER in roles else "learner"
    await db.executemany(
        "INSERT INTO class_members (tenant_id, class_id, user_id, member_role) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [(tenant_id, class_id, user_id, role) for user_id, role in active.items()],
    )
    await db.execute(
        "DELETE FROM class_members WHERE tenant_id = $1 AND class_id::text = $2 "
        "AND NOT (user_id::text = ANY($3::text[]))",
        tenant_id,
        class_id,
        list(active),
    )
    return len(active)
