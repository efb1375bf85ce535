"""Learner read views: mastery per skill."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, PoolDep
from api.exceptions import NotFoundError
from api.services import access, mastery
from api.services.mastery import MasteryLabel

router = APIRouter(prefix="/v1/learners", tags=["learners"])

UserIdPath = Path(min_length=1, max_length=200, description="The learner's id in the tenant")


class SkillMasteryPublic(BaseModel):
    """One skill's BKT estimate with its rule-style label."""

    skill_id: str
    p_mastery: float = Field(ge=0, le=1, description="P(skill mastered), in [0, 1]")
    label: MasteryLabel = Field(description="not started / practising / familiar / ...")
    attempts: int = Field(ge=0)
    correct: int = Field(ge=0)
    last_attempt_at: datetime = Field(description="UTC time of the latest attempt counted")
    updated_at: datetime = Field(description="UTC time the estimate was last written")


class LearnerMasteryPublic(BaseModel):
    """Every skill the learner has evidence on, ordered by skill_id."""

    user_id: str
    skills: list[SkillMasteryPublic]


@router.get("/{user_id}/mastery", summary="Mastery per skill with labels")
async def get_mastery(
    principal: CurrentPrincipal,
    pool: PoolDep,
    user_id: str = UserIdPath,
) -> LearnerMasteryPublic:
    """The learner's per-skill mastery in the caller's tenant.

    404 when the tenant knows no such learner (neither an account nor any
    mastery row); an account without evidence yet gets an empty list.
    """
    await access.ensure_can_read_learner(pool, principal, user_id)
    if not await mastery.learner_known(pool, tenant_id=principal.tenant_id, user_id=user_id):
        raise NotFoundError(
            "no learner with this id in your tenant", field="path.user_id", reason="not found"
        )
    rows = await mastery.learner_mastery(pool, tenant_id=principal.tenant_id, user_id=user_id)
    return LearnerMasteryPublic(
        user_id=user_id,
        skills=[SkillMasteryPublic.model_validate(row, from_attributes=True) for row in rows],
    )
