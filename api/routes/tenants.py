"""The caller's tenant settings (admins): data retention."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, PoolDep
from api.schemas.tenants import (
    RetentionPublic,
)
from api.services import retention

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


@router.get("/me/retention", summary="Data retention of your tenant (admin)")
async def get_retention(admin: AdminUser, pool: PoolDep) -> RetentionPublic:
    return RetentionPublic(
        retention_days=await retention.get_retention_days(pool, tenant_id=admin.tenant_id)
    )


@router.put("/me/retention", summary="Set data retention of your tenant (admin, audited)")
async def put_retention(body: RetentionPublic, admin: AdminUser, pool: PoolDep) -> RetentionPublic:
    """Learners inactive longer are erased by ``python -m api.retention``."""
    days = await retention.set_retention_days(pool, admin, days=body.retention_days)
    return RetentionPublic(retention_days=days)
