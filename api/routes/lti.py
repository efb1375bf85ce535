"""LTI 1.3 Advantage, Learnstream as the tool (api/services/lti/; docs/integrations.md).

Platform-facing routes are public (the platform's signed messages are the credential);
registering platforms is for the tenant's admins; grade publishing and roster sync for
the class's teachers and admins.
"""

from __future__ import annotations

import html
import json
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api.deps import (
    AdminUser,
    LimitedByIp,
    Now,
    PoolDep,
    Public,
    RedisDep,
    SettingsDep,
    TeacherOrAdmin,
)
from api.exceptions import InvalidInputError, NotAuthenticatedError
from api.schemas.lti import PlatformCreate, PlatformPublic, PublishGrades
from api.services import classes, oidc, skills
from api.services.lti import keys, launch, platforms, services
from api.services.principals import Role
from learnstream import redis_keys

router = APIRouter(tags=["lti"])
_DEEP_LINKING_TTL_S = 1800
_PAGE_CSP = "default-src 'none'; style-src 'self'; form-action {targets}; frame-ancestors 'none'"


def _public(p: platforms.Platform, settings: SettingsDep) -> PlatformPublic:
    base = settings.public_base_url.rstrip("/")
    return PlatformPublic(
        platform_id=p.platform_id,
        issuer=p.issuer,
        client_id=p.client_id,
        auth_login_url=p.auth_login_url,
        auth_token_url=p.auth_token_url,
        jwks_url=p.jwks_url,
        deployment_ids=list(p.deployment_ids),
        tool_login_url=base + launch.LOGIN_PATH,
        tool_launch_url=base + launch.LAUNCH_PATH,
        tool_jwks_url=base + "/v1/lti/jwks",
    )


# The platform may initiate by GET or by a form POST (LTI 1.3 core, 5.1.1): one handler,
# two operations with their own ids.
@router.post(
    launch.LOGIN_PATH,
    summary="OIDC third-party login initiation, form POST (from the platform)",
    operation_id="lti_login_initiation_post",
    dependencies=[Public, LimitedByIp],
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
)
@router.get(
    launch.LOGIN_PATH,
    summary="OIDC third-party login initiation (from the platform)",
    operation_id="lti_login_initiation_get",
    dependencies=[Public, LimitedByIp],
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
)
async def login_initiation(
    request: Request, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> RedirectResponse:
    fields: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        fields.update((k, v) for k, v in (await request.form()).items() if isinstance(v, str))
    for required in ("iss", "login_hint", "target_link_uri"):
        if not fields.get(required):
            raise InvalidInputError(f"{required} is required", field=required, reason="missing")
    try:
        url = await launch.login_redirect(
            pool,
            redis,
            settings,
            issuer=fields["iss"],
            login_hint=fields["login_hint"],
            target_link_uri=fields["target_link_uri"],
            client_id=fields.get("client_id"),
            lti_message_hint=fields.get("lti_message_hint"),
        )
    except launch.LaunchRefused as refused:
        raise NotAuthenticatedError(
            refused.reason, field="iss", reason="unknown platform"
        ) from refused
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND)


@router.post(
    launch.LAUNCH_PATH,
    summary="The launch (id_token posted by the platform)",
    dependencies=[Public, LimitedByIp],
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
)
async def lti_launch(
    id_token: Annotated[str, Form(max_length=20000)],
    state: Annotated[str, Form(max_length=200)],
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """A resource link lands on the dashboard signed in; deep linking opens the picker."""
    try:
        validated = await launch.validate(pool, redis, settings, id_token=id_token, state=state)
    except launch.LaunchRefused as refused:
        raise NotAuthenticatedError(
            f"LTI launch refused: {refused.reason}", field="body.id_token", reason=refused.reason
        ) from refused
    user_id, _class_id = await launch.provision(pool, settings, validated)
    if validated.message_type == launch.DEEP_LINKING_REQUEST:
        session = secrets.token_urlsafe(32)
        key = redis_keys.redis_key(settings.redis_namespace, "lti-dl", session)
        kept = {
            "tenant_id": validated.platform.tenant_id,
            "platform_id": validated.platform.platform_id,
        }
        await redis.set(
            key, json.dumps({**kept, "claims": validated.claims}), ex=_DEEP_LINKING_TTL_S
        )
        return RedirectResponse(f"/v1/lti/deep-linking?session={session}", status_code=302)
    code = await oidc.issue_sign_in_code(
        redis, settings, tenant_id=validated.platform.tenant_id, user_id=user_id
    )
    view = "teacher" if Role.TEACHER in validated.roles else "learner"
    return RedirectResponse(f"/dashboard?view={view}#action=oidc&code={code}", status_code=302)


@router.get("/v1/lti/jwks", summary="The tool's public keys", dependencies=[Public])
async def tool_jwks(pool: PoolDep, settings: SettingsDep, now: Now) -> JSONResponse:
    return JSONResponse(await keys.jwks(pool, settings, now=now))


async def _deep_linking_session(redis: RedisDep, settings: SettingsDep, session: str) -> Any:
    raw = await redis.get(redis_keys.redis_key(settings.redis_namespace, "lti-dl", session))
    if raw is None:
        raise NotAuthenticatedError(
            "this deep linking session expired; open it again from the course",
            field="session",
            reason="expired",
        )
    return json.loads(raw)


@router.get(
    "/v1/lti/deep-linking",
    summary="The deep linking picker: skills to place in the course",
    dependencies=[Public, LimitedByIp],
    response_class=HTMLResponse,
)
async def deep_linking_picker(
    session: Annotated[str, Query(max_length=100)],
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> HTMLResponse:
    found = await _deep_linking_session(redis, settings, session)
    listed = await skills.list_skills(pool, tenant_id=found["tenant_id"])
    boxes = "".join(
        f'<label><input type="checkbox" name="skill_id" value="{html.escape(s.skill_id)}"> '
        f"{html.escape(s.name)}</label><br>"
        for s in listed
    )
    page = (
        "<!DOCTYPE html><html><head><title>Add Learnstream skills</title></head><body>"
        "<h1>Add skills to this course</h1>"
        f'<form method="post" action="/v1/lti/deep-linking">'
        f'<input type="hidden" name="session" value="{html.escape(session)}">{boxes}'
        '<button type="submit">Add to course</button></form></body></html>'
    )
    return HTMLResponse(
        page, headers={"Content-Security-Policy": _PAGE_CSP.format(targets="'self'")}
    )


@router.post(
    "/v1/lti/deep-linking",
    summary="Send the picked skills back to the platform",
    dependencies=[Public, LimitedByIp],
    response_class=HTMLResponse,
)
async def deep_linking_response(
    session: Annotated[str, Form(max_length=100)],
    skill_id: Annotated[list[str], Form(max_length=200)],
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """A page whose button posts the signed LtiDeepLinkingResponse to the platform."""
    found = await _deep_linking_session(redis, settings, session)
    await redis.delete(redis_keys.redis_key(settings.redis_namespace, "lti-dl", session))
    names = {
        s.skill_id: s.name for s in await skills.list_skills(pool, tenant_id=found["tenant_id"])
    }
    picked = [(s, names[s]) for s in skill_id if s in names]
    platform = await platforms.get(
        pool, tenant_id=found["tenant_id"], platform_id=found["platform_id"]
    )
    url, token = await services.deep_linking_response(
        pool, settings, platform, request_claims=found["claims"], skills=picked
    )
    target = urlsplit(url)
    page = (
        "<!DOCTYPE html><html><head><title>Back to the course</title></head><body>"
        f"<p>{len(picked)} skills picked.</p>"
        f'<form method="post" action="{html.escape(url)}">'
        f'<input type="hidden" name="JWT" value="{html.escape(token)}">'
        '<button type="submit">Return to the course</button></form></body></html>'
    )
    origin = f"{target.scheme}://{target.netloc}"
    return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP.format(targets=origin)})


@router.get("/v1/tenants/me/lti-platforms", summary="Registered LMS platforms (admin)")
async def list_platforms(
    admin: AdminUser, pool: PoolDep, settings: SettingsDep
) -> list[PlatformPublic]:
    return [
        _public(p, settings)
        for p in await platforms.list_platforms(pool, tenant_id=admin.tenant_id)
    ]


@router.post(
    "/v1/tenants/me/lti-platforms",
    status_code=status.HTTP_201_CREATED,
    summary="Register an LMS platform (admin)",
)
async def register_platform(
    body: PlatformCreate, admin: AdminUser, pool: PoolDep, settings: SettingsDep
) -> PlatformPublic:
    platform = platforms.Platform(
        tenant_id=admin.tenant_id,
        **body.model_dump(exclude={"deployment_ids"}),
        deployment_ids=tuple(body.deployment_ids),
    )
    await platforms.register(pool, platform)
    return _public(platform, settings)


@router.delete(
    "/v1/tenants/me/lti-platforms/{platform_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an LMS platform (admin)",
)
async def remove_platform(platform_id: str, admin: AdminUser, pool: PoolDep) -> None:
    await platforms.remove(pool, tenant_id=admin.tenant_id, platform_id=platform_id)


@router.post(
    "/v1/lti/classes/{class_id}/grades",
    summary="Publish the class's mastery of a skill to the LMS gradebook (AGS)",
)
async def publish_grades(
    class_id: str, body: PublishGrades, staff: TeacherOrAdmin, pool: PoolDep, settings: SettingsDep
) -> dict[str, int]:
    await classes.require_managed_class(pool, staff, class_id=class_id)
    posted = await services.publish_mastery(
        pool, settings, tenant_id=staff.tenant_id, class_id=class_id, skill_id=body.skill_id
    )
    return {"scores_posted": posted}


@router.post(
    "/v1/lti/classes/{class_id}/roster-sync",
    summary="Sync the class roster from the LMS (NRPS)",
)
async def sync_roster(
    class_id: str, staff: TeacherOrAdmin, pool: PoolDep, settings: SettingsDep
) -> dict[str, int]:
    await classes.require_managed_class(pool, staff, class_id=class_id)
    members = await services.sync_roster(
        pool, settings, tenant_id=staff.tenant_id, class_id=class_id
    )
    return {"active_members": members}
