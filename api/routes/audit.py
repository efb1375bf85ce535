"""The tenant's security audit log, newest first (admins)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, PoolDep
from api.pagination import Cursor, Limit, Page, decode_cursor, id_key, next_cursor
from api.schemas.audit import (
    AuditEntryPublic,
)
from api.services import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="Security events of the tenant (admin)")
async def list_events(
    admin: AdminUser, pool: PoolDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[AuditEntryPublic]:
    entries = await audit.recent(
        pool,
        tenant_id=admin.tenant_id,
        limit=limit,
        before_id=decode_cursor(cursor, id_key),
    )
    return Page[AuditEntryPublic](
        items=[AuditEntryPublic.model_validate(e, from_attributes=True) for e in entries],
        next_cursor=next_cursor([str(e.id) for e in entries], limit),
    )
