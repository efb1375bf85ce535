"""API keys of the tenant's client apps (admin): create (shown once), list, revoke.

A key holds the scopes named at creation (default: events:write only, the narrowest);
no scope lets a key act on accounts.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminUser, ClientIp, PoolDep
from api.exceptions import NotFoundError
from api.schemas.api_keys import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyPublic,
)
from api.services import audit
from learnstream import apikeys

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a key (admin)")
async def create_key(
    body: ApiKeyCreate, admin: AdminUser, pool: PoolDep, ip: ClientIp
) -> ApiKeyIssued:
    issued = await apikeys.create_api_key(
        pool, tenant_id=admin.tenant_id, app_name=body.app_name, scopes=body.scopes
    )
    await audit.record(
        pool,
        tenant_id=admin.tenant_id,
        actor=("user", admin.subject_id),
        action=audit.Action.API_KEY_CREATED,
        outcome=audit.Outcome.SUCCESS,
        target_id=issued.key_id,
        ip=ip,
        details={"app_name": body.app_name, "scopes": sorted(issued.scopes)},
    )
    return ApiKeyIssued(
        key_id=issued.key_id,
        app_name=issued.app_name,
        scopes=sorted(issued.scopes),
        created_at=issued.created_at,
        revoked_at=None,
        api_key=issued.plaintext,
    )


@router.get("", summary="Keys of the tenant (admin)")
async def list_keys(admin: AdminUser, pool: PoolDep) -> list[ApiKeyPublic]:
    keys = await apikeys.list_api_keys(pool, tenant_id=admin.tenant_id)
    return [
        ApiKeyPublic(
            key_id=key.key_id,
            app_name=key.app_name,
            scopes=sorted(key.scopes),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )
        for key in keys
    ]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke (admin)")
async def revoke_key(key_id: str, admin: AdminUser, pool: PoolDep, ip: ClientIp) -> None:
    revoked = await apikeys.revoke_api_key(pool, key_id=key_id, tenant_id=admin.tenant_id)
    if not revoked:
        raise NotFoundError(
            "no live key with this id in this tenant", field="path.key_id", reason="not found"
        )
    await audit.record(
        pool,
        tenant_id=admin.tenant_id,
        actor=("user", admin.subject_id),
        action=audit.Action.API_KEY_REVOKED,
        outcome=audit.Outcome.SUCCESS,
        target_id=key_id,
        ip=ip,
    )
