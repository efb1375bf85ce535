"""The learner id an account's data is filed under (admin): see api.services.learner_ids."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, PoolDep
from api.schemas.learner_ids import (
    LearnerIdPublic,
    LearnerIdUpdate,
)
from api.services import learner_ids

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/learner-id", summary="An account's learner id (admin)")
async def get_learner_id(user_id: str, admin: AdminUser, pool: PoolDep) -> LearnerIdPublic:
    found = await learner_ids.require_learner_id(pool, tenant_id=admin.tenant_id, user_id=user_id)
    return LearnerIdPublic(user_id=user_id, learner_id=found)


@router.put("/{user_id}/learner-id", summary="Set the id an account's events carry (admin)")
async def set_learner_id(
    user_id: str, body: LearnerIdUpdate, admin: AdminUser, pool: PoolDep
) -> LearnerIdPublic:
    """409 when another account of the tenant already has this learner id. Moves no data:
    views stay filed under the ids the events carried."""
    effective = await learner_ids.set_learner_id(
        pool,
        tenant_id=admin.tenant_id,
        user_id=user_id,
        learner_id=body.learner_id,
        admin_id=admin.subject_id,
    )
    return LearnerIdPublic(user_id=user_id, learner_id=effective)
